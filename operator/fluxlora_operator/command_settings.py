"""A command's settings (pydantic-settings) from its flags over its environment variables over
the defaults; a bad value stops the command with a message naming the flag or variable that
gave it. The operator and the gateway load theirs with it."""

import re
from collections.abc import Sequence
from typing import TypeVar

from pydantic import ValidationError
from pydantic_settings import BaseSettings, SettingsError

Settings = TypeVar("Settings", bound=BaseSettings)


def flag(field: str) -> str:
    return "--" + field.replace("_", "-")


def load_command_settings(settings: type[Settings], argv: Sequence[str], program: str) -> Settings:
    argv = list(argv)
    try:
        return settings(_cli_parse_args=argv)
    except ValidationError as error:
        problems = []
        for item in error.errors():
            name = str(item["loc"][0]) if item["loc"] else ""
            where = ".".join([_named(settings, name, argv), *map(str, item["loc"][1:])])
            problems.append(f"{program}: {where}: {item['msg']} (got {item['input']!r})")
        raise SystemExit("\n".join(problems)) from None
    except SettingsError as error:  # a value that does not even parse (bad JSON)
        field = re.search(r'field "(\w+)"', str(error))
        where = _named(settings, field.group(1), argv) if field else "settings"
        raise SystemExit(f"{program}: {where}: {error.__cause__ or error}") from None


def _named(settings: type[BaseSettings], field: str, argv: Sequence[str]) -> str:
    """The flag of `field` when the command line gave it, else its environment variable."""
    given = flag(field)
    if any(arg == given or arg.startswith(given + "=") for arg in argv):
        return given
    return str(settings.model_config.get("env_prefix", "")) + field.upper()
