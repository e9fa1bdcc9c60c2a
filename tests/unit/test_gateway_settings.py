"""The gateway's settings: flags over FLUXLORA_GATEWAY_* variables over defaults; a bad value
stops it naming the flag or variable."""

import pytest

from fluxlora_gateway.main import ENV_PREFIX, GatewaySettings, load_gateway_settings


@pytest.fixture(autouse=True)
def no_gateway_environment(monkeypatch):
    for name in GatewaySettings.model_fields:
        monkeypatch.delenv(ENV_PREFIX + name.upper(), raising=False)


def test_a_flag_wins_over_the_environment_which_wins_over_the_default(monkeypatch):
    monkeypatch.setenv("FLUXLORA_GATEWAY_RATE_LIMIT", "3")
    monkeypatch.setenv("FLUXLORA_GATEWAY_PORT", "9000")
    settings = load_gateway_settings(["--port", "9100"])
    assert (settings.port, settings.rate_limit, settings.rate_burst) == (9100, 3.0, 20)


def test_spec_defaults_are_json_checked_against_the_spec(monkeypatch):
    monkeypatch.setenv("FLUXLORA_GATEWAY_SPEC_DEFAULTS", '{"baseModel": "/models/flux"}')
    assert load_gateway_settings([]).spec_defaults == {"baseModel": "/models/flux"}


@pytest.mark.parametrize(
    ("argv", "variables", "named"),
    [
        (["--port", "eighty"], {}, "--port: Input should be a valid integer"),
        ([], {"FLUXLORA_GATEWAY_RATE_BURST": "0"}, "FLUXLORA_GATEWAY_RATE_BURST: Input should be"),
        (["--spec-defaults", '{"steps": 600}'], {}, "--spec-defaults: Value error, spec defaults: "
         "steps is the caller's to choose"),
        ([], {"FLUXLORA_GATEWAY_SPEC_DEFAULTS": "{oops"}, "FLUXLORA_GATEWAY_SPEC_DEFAULTS: "),
    ],
)  # fmt: skip
def test_a_bad_value_stops_the_gateway_naming_it(monkeypatch, argv, variables, named):
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as stop:
        load_gateway_settings(argv)
    assert named in str(stop.value)
