"""The dataset limits as the trainer reads them from the environment the operator sets."""

import pytest
from pydantic import ValidationError

from fluxlora_api.limits import DatasetLimits


def test_the_defaults_allow_no_private_network_and_bound_the_download_time():
    limits = DatasetLimits.from_env({})
    assert limits.allowed_networks == []
    assert limits.download_deadline_seconds == 1800
    assert limits.max_caption_bytes == 64 * 1024
    assert limits.max_total_pixels == 4_000_000_000


@pytest.mark.parametrize(
    "value",
    ['["10.0.0.0/8", "fd00::/8"]', "10.0.0.0/8, fd00::/8", "10.0.0.0/8,fd00::/8,"],
)
def test_allowed_networks_come_as_a_json_list_or_separated_by_commas(value):
    limits = DatasetLimits.from_env({"FLUXLORA_ALLOWED_NETWORKS": value})
    assert limits.allowed_networks == ["10.0.0.0/8", "fd00::/8"]


def test_a_single_address_is_a_network_of_one():
    limits = DatasetLimits.from_env({"FLUXLORA_ALLOWED_NETWORKS": "10.0.0.7"})
    assert limits.allowed_networks == ["10.0.0.7/32"]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("10.0.0.300/8", "'10.0.0.300/8' is not a network in CIDR notation"),
        ("intranet", "'intranet' is not a network in CIDR notation"),
        ("10.0.0.1/8", "'10.0.0.1/8' has bits set after the prefix; did you mean 10.0.0.0/8?"),
        ('["10.0.0.0/8"', "not a JSON list"),
    ],
)
def test_a_bad_network_is_refused_with_a_message_naming_the_field(value, message):
    with pytest.raises(ValidationError) as error:
        DatasetLimits.from_env({"FLUXLORA_ALLOWED_NETWORKS": value})
    assert f"allowed_networks: {message}" in str(error.value)


def test_the_deadline_comes_from_the_environment():
    limits = DatasetLimits.from_env({"FLUXLORA_DOWNLOAD_DEADLINE_SECONDS": "2.5"})
    assert limits.download_deadline_seconds == 2.5
