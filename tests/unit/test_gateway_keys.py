"""API keys: hashes in a Secret, one namespace each, found in constant time."""

import base64
import json

import pytest

from fluxlora_gateway.keys import (
    KeyStore,
    KeysUnavailable,
    Tenant,
    find_tenant,
    hash_key,
    new_key,
    parse_entries,
    secret_entry,
)
from fluxlora_kube.client import ApiError
from fluxlora_operator.rate_limit import RateLimiter


def secret_data(**entries: str) -> dict[str, str]:
    return {name: base64.b64encode(value.encode()).decode() for name, value in entries.items()}


def test_a_key_opens_exactly_its_namespace():
    alice, bob = new_key(), new_key()
    tenants = parse_entries(
        secret_data(alice=secret_entry(alice, "team-a"), bob=secret_entry(bob, "team-b"))
    )
    assert find_tenant(alice, tenants) == Tenant("alice", "team-a")
    assert find_tenant(bob, tenants) == Tenant("bob", "team-b")
    assert find_tenant(new_key(), tenants) is None
    assert find_tenant(alice[:-1], tenants) is None


def test_the_secret_holds_hashes_never_keys():
    key = new_key()
    entry = secret_entry(key, "team-a")
    assert key not in entry and hash_key(key) in entry
    assert len(key) > 40  # 32 random bytes


def test_a_malformed_entry_is_skipped_and_the_others_still_work():
    key = new_key()
    tenants = parse_entries(
        secret_data(
            broken="not json",
            short='{"sha256": "abc", "namespace": "x"}',
            good=secret_entry(key, "team-a"),
        )
    )
    assert list(tenants.values()) == [Tenant("good", "team-a")]


def test_the_key_command_prints_a_key_and_the_entry_holding_its_hash(capsys):
    from fluxlora_gateway.main import main

    assert main(["key", "team-a"]) == 0
    printed = capsys.readouterr().out.splitlines()
    key = printed[0].rsplit(" ", 1)[1]
    entry = json.loads(printed[2])
    assert entry == {"namespace": "team-a", "sha256": hash_key(key)}


class FlakyApi:
    """A key Secret read through an API server that may be down."""

    def __init__(self, data: dict[str, str]) -> None:
        self.data, self.down, self.reads = data, False, 0

    def get(self, kind: str, namespace: str, name: str) -> dict:
        self.reads += 1
        if self.down:
            raise ApiError(503, "Service Unavailable", "etcd is down")
        return {"data": self.data}


def test_a_failed_reload_keeps_the_last_good_keys_and_is_not_retried_per_request():
    key = new_key()
    api = FlakyApi(secret_data(team=secret_entry(key, "team-a")))
    store = KeyStore(api, "ops", "keys", reload_seconds=0)
    assert store.tenant(key) == Tenant("team", "team-a")
    api.down = True
    for _ in range(50):
        assert store.tenant(key) == Tenant("team", "team-a")
    assert api.reads == 2  # one failed read, then a pause before the next
    api.down = False
    store._next_read = 0  # the pause is over
    api.data = {}  # the key was revoked meanwhile
    assert store.tenant(key) is None


def test_before_any_successful_read_callers_are_told_to_retry():
    api = FlakyApi({})
    api.down = True
    with pytest.raises(KeysUnavailable):
        KeyStore(api, "ops", "keys", reload_seconds=5).tenant(new_key())


def test_each_key_gets_its_own_rate_limit():
    limiter = RateLimiter(rate=2, burst=3)
    assert [limiter.retry_after("a", now=100.0) for _ in range(3)] == [0, 0, 0]
    assert limiter.retry_after("a", now=100.0) == pytest.approx(0.5)
    assert limiter.retry_after("b", now=100.0) == 0  # another key is not slowed down
    assert limiter.retry_after("a", now=100.5) == 0  # one token back after 1/rate seconds
    assert RateLimiter(rate=0, burst=1).retry_after("a") == 0  # 0: unlimited
