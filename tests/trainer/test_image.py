"""The images' Dockerfiles agree with the package, the Job and the lock files (the images
themselves are built and run on the real node: tests/cluster/test_node.py)."""

import re
import tomllib
from pathlib import Path

import pytest

from fluxlora_operator.settings import OperatorSettings
from fluxlora_operator.start.trainer_job import TRAINER_ARGS, TRAINER_COMMAND

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = (ROOT / "trainer-image" / "Dockerfile").read_text()


def instruction(name: str) -> str:
    lines = [line for line in DOCKERFILE.splitlines() if line.startswith(name + " ")]
    return lines[-1][len(name) + 1 :]


def test_the_image_runs_the_trainer_command_the_job_runs():
    assert instruction("ENTRYPOINT") == f'["{TRAINER_COMMAND[0]}"]'
    assert instruction("CMD") == f'["{TRAINER_ARGS[0]}"]'
    scripts = (ROOT / "pyproject.toml").read_text()
    assert f'{TRAINER_COMMAND[0]} = "fluxlora_trainer.cli:entry"' in scripts


def test_the_image_user_is_the_non_root_user_the_job_asks_for():
    uid = OperatorSettings().run_as_user
    assert instruction("USER") == f"{uid}:{uid}"
    assert uid != 0


def _pins(lock: Path) -> dict[str, str]:
    pins = {}
    for line in lock.read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"{lock.name}: {line} is not pinned"
            pins[re.sub(r"[-_.]+", "-", name).lower()] = version
    return pins


@pytest.mark.parametrize(
    ("extra", "lock"),
    [("operator", "operator/requirements.lock"), ("trainer", "trainer-image/requirements.lock")],
)
def test_each_lock_pins_every_requirement_of_its_extra(extra, lock):
    """A requirement added to pyproject.toml without `make lock` fails here."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = _pins(ROOT / lock)
    for requirement in project["dependencies"] + project["optional-dependencies"][extra]:
        name = re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0]
        assert re.sub(r"[-_.]+", "-", name).lower() in pins, f"{name} is not in {lock}"


def test_both_images_pin_the_same_version_of_what_they_share():
    operator = _pins(ROOT / "operator" / "requirements.lock")
    trainer = _pins(ROOT / "trainer-image" / "requirements.lock")
    assert {n: v for n, v in operator.items() if trainer.get(n, v) != v} == {}
