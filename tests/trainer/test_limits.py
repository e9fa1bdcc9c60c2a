"""The dataset limits as the trainer reads them from the environment the operator sets."""

import json

import pytest
from pydantic import ValidationError

from fluxlora_api.limits import DATASET_LIMITS_ENV, DatasetLimits


def given(monkeypatch, **limits) -> DatasetLimits:
    """The limits the trainer reads when the operator's setting is `limits` (camelCase)."""
    monkeypatch.setenv(DATASET_LIMITS_ENV, json.dumps(limits))
    return DatasetLimits.from_env()


def test_the_defaults_allow_no_private_network_and_bound_the_download_time(monkeypatch):
    monkeypatch.delenv(DATASET_LIMITS_ENV, raising=False)
    limits = DatasetLimits.from_env()
    assert limits.allowed_networks == []
    assert limits.download_deadline_seconds == 1800
    assert limits.max_caption_bytes == 64 * 1024
    assert limits.max_total_pixels == 4_000_000_000


@pytest.mark.parametrize(
    "value",
    [["10.0.0.0/8", "fd00::/8"], "10.0.0.0/8, fd00::/8", "10.0.0.0/8,fd00::/8,"],
)
def test_allowed_networks_come_as_a_list_or_separated_by_commas(monkeypatch, value):
    limits = given(monkeypatch, allowedNetworks=value)
    assert limits.allowed_networks == ["10.0.0.0/8", "fd00::/8"]


def test_a_single_address_is_a_network_of_one(monkeypatch):
    assert given(monkeypatch, allowedNetworks=["10.0.0.7"]).allowed_networks == ["10.0.0.7/32"]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("10.0.0.300/8", "'10.0.0.300/8' is not a network in CIDR notation"),
        ("intranet", "'intranet' is not a network in CIDR notation"),
        ("10.0.0.1/8", "'10.0.0.1/8' has bits set after the prefix; did you mean 10.0.0.0/8?"),
        ('["10.0.0.0/8"', "not a JSON list"),
    ],
)
def test_a_bad_network_is_refused_with_a_message_naming_the_field(monkeypatch, value, message):
    with pytest.raises(ValidationError) as error:
        given(monkeypatch, allowedNetworks=value)
    assert f"allowed_networks: {message}" in str(error.value)


def test_the_deadline_comes_from_the_environment(monkeypatch):
    assert given(monkeypatch, downloadDeadlineSeconds=2.5).download_deadline_seconds == 2.5


def test_what_the_operator_writes_is_what_the_trainer_reads(monkeypatch):
    limits = DatasetLimits(allowedNetworks=["10.0.0.0/8"], maxFiles=7)
    for name, value in limits.to_env().items():
        monkeypatch.setenv(name, value)
    assert DatasetLimits.from_env() == limits
