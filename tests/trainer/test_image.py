"""The trainer image cannot be built here; it must at least agree with the package and the Job."""

from pathlib import Path

from fluxlora_operator.jobs import TRAINER_ARGS, TRAINER_COMMAND
from fluxlora_operator.settings import OperatorSettings

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = (ROOT / "trainer-image" / "Dockerfile").read_text()


def instruction(name: str) -> str:
    lines = [line for line in DOCKERFILE.splitlines() if line.startswith(name + " ")]
    return lines[-1][len(name) + 1 :]


def test_the_image_runs_the_trainer_command_the_job_runs():
    assert instruction("ENTRYPOINT") == f'["{TRAINER_COMMAND[0]}"]'
    assert instruction("CMD") == f'["{TRAINER_ARGS[0]}"]'
    scripts = (ROOT / "pyproject.toml").read_text()
    assert f'{TRAINER_COMMAND[0]} = "fluxlora_trainer.cli:main"' in scripts


def test_the_image_user_is_the_non_root_user_the_job_asks_for():
    uid = OperatorSettings().run_as_user
    assert instruction("USER") == f"{uid}:{uid}"
    assert uid != 0


def test_the_image_installs_the_trainer_extra_without_the_operator():
    assert '".[trainer]"' in DOCKERFILE and "operator]" not in DOCKERFILE
    assert "COPY operator/fluxlora_operator" not in DOCKERFILE  # no kopf code, no kopf


def test_every_constraint_is_a_pinned_version():
    for line in (ROOT / "trainer-image" / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            assert "==" in line, line
