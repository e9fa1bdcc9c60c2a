"""Operator settings: flags over environment over defaults, errors that name the setting."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fluxlora_operator.settings import ENV_PREFIX, OperatorSettings, load_settings


@pytest.fixture(autouse=True)
def no_operator_environment(monkeypatch):
    """Each test sets exactly the variables it means (the machine's own do not leak in)."""
    for name in OperatorSettings.model_fields:
        monkeypatch.delenv(ENV_PREFIX + name.upper(), raising=False)
    return monkeypatch


def environment(monkeypatch, variables: dict[str, str]) -> None:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)


def test_defaults_watch_all_namespaces_with_the_nvidia_gpu_resource():
    settings = load_settings([])
    assert settings == OperatorSettings()
    assert settings.all_namespaces
    assert settings.gpu_resource == "nvidia.com/gpu"


def test_a_flag_wins_over_the_environment(monkeypatch):
    environment(
        monkeypatch,
        {"FLUXLORA_TRAINER_IMAGE": "from-env:1", "FLUXLORA_GPU_RESOURCE": "amd.com/gpu"},
    )
    settings = load_settings(["--trainer-image", "from-flag:1"])
    assert settings.trainer_image == "from-flag:1"
    assert settings.gpu_resource == "amd.com/gpu"


@pytest.mark.parametrize(
    ("flag", "value", "field", "expected"),
    [
        ("--namespaces", "a, b", "namespaces", ["a", "b"]),
        ("--namespaces", '["a"]', "namespaces", ["a"]),
        ("--node-selector", "pool=gpu,zone=a", "node_selector", {"pool": "gpu", "zone": "a"}),
        ("--node-selector", '{"pool": "gpu"}', "node_selector", {"pool": "gpu"}),
        ("--metrics-port", "9100", "metrics_port", 9100),
        ("--queue-name", "", "queue_name", None),
        ("--resync-seconds", "2.5", "resync_seconds", 2.5),
    ],
)
def test_values_are_parsed_by_type(flag, value, field, expected):
    assert getattr(load_settings([flag, value]), field) == expected


@pytest.mark.parametrize(
    ("variable", "value", "field", "expected"),
    [
        ("FLUXLORA_NAMESPACES", "a, b", "namespaces", ["a", "b"]),
        ("FLUXLORA_NODE_SELECTOR", "pool=gpu", "node_selector", {"pool": "gpu"}),
        ("FLUXLORA_QUEUE_NAME", "", "queue_name", None),  # empty: unset
        ("FLUXLORA_GPUS", "2", "gpus", 2),
    ],
)
def test_variables_are_parsed_as_flags_are(monkeypatch, variable, value, field, expected):
    environment(monkeypatch, {variable: value})
    assert getattr(load_settings([]), field) == expected


def test_tolerations_are_json(monkeypatch):
    environment(
        monkeypatch, {"FLUXLORA_TOLERATIONS": '[{"key": "nvidia.com/gpu", "operator": "Exists"}]'}
    )
    settings = load_settings([])
    assert settings.tolerations[0].key == "nvidia.com/gpu"


@pytest.mark.parametrize(
    ("argv", "environ", "named"),
    [
        (["--node-selector", "pool"], {}, "--node-selector"),
        ([], {"FLUXLORA_NODE_SELECTOR": "pool"}, "FLUXLORA_NODE_SELECTOR"),
        (["--metrics-port", "eighty"], {}, "--metrics-port: Input should be a valid integer"),
        ([], {"FLUXLORA_GPUS": "some"}, "FLUXLORA_GPUS: Input should be a valid integer"),
        ([], {"FLUXLORA_GPUS": "9"}, "FLUXLORA_GPUS: Input should be less than or equal to 8"),
        ([], {"FLUXLORA_DATASET_LIMITS": '{"max_files": 0}'}, "FLUXLORA_DATASET_LIMITS.max_files"),
        ([], {"FLUXLORA_DATASET_LIMITS": "{not json"}, "FLUXLORA_DATASET_LIMITS: "),
        (["--dataset-limits", "{not json"], {}, "--dataset-limits: "),
    ],
)
def test_a_bad_value_stops_the_operator_naming_the_setting(monkeypatch, argv, environ, named):
    environment(monkeypatch, environ)
    with pytest.raises(SystemExit) as stop:
        load_settings(argv)
    assert named in str(stop.value)


def test_the_installed_command_documents_every_setting():
    command = shutil.which("fluxlora-operator") or str(
        Path(sys.executable).parent / "fluxlora-operator"
    )
    result = subprocess.run(
        [command, "--help"], capture_output=True, text=True, timeout=60, check=True
    )
    for name in OperatorSettings.model_fields:
        assert "--" + name.replace("_", "-") in result.stdout
