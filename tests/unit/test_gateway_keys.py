"""API keys: hashes in a Secret, one namespace each, found in constant time."""

import base64
import json

from fluxlora_gateway.keys import (
    Tenant,
    find_tenant,
    hash_key,
    new_key,
    parse_entries,
    secret_entry,
)


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
