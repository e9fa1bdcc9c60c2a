"""With replicas sharing a kopf peering object, exactly one acts: the highest live priority."""

from datetime import UTC, datetime, timedelta

from fluxlora_operator.peering import is_active, replica_priority
from fluxlora_operator.settings import OperatorSettings

NOW = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)


def peer(priority: int, seen_ago: float = 5, lifetime: int = 60) -> dict:
    seen = (NOW - timedelta(seconds=seen_ago)).isoformat()
    return {"priority": priority, "lifetime": lifetime, "lastseen": seen}


def test_the_highest_live_priority_acts_and_the_others_wait():
    peers = {"a": peer(100), "b": peer(200)}
    assert is_active(peers, "b", 200, NOW)
    assert not is_active(peers, "a", 100, NOW)


def test_equal_priorities_pause_both_as_kopf_does():
    peers = {"a": peer(100), "b": peer(100)}
    assert not is_active(peers, "a", 100, NOW) and not is_active(peers, "b", 100, NOW)


def test_a_dead_peer_hands_over():
    peers = {"a": peer(100), "b": peer(200, seen_ago=61)}
    assert is_active(peers, "a", 100, NOW)


def test_replicas_get_distinct_priorities_unless_one_is_set():
    settings = OperatorSettings(peering="flux-lora-operator")
    assert len({replica_priority(settings) for _ in range(20)}) > 1
    fixed = settings.model_copy(update={"peering_priority": 7})
    assert replica_priority(fixed) == 7
