"""The trainer's imports run without cyclic garbage collection, and what they made is frozen
out of later collections; the collector is left as it was found."""

import gc

import pytest

from fluxlora_trainer.collector import paused_collector


@pytest.fixture
def collector():
    enabled = gc.isenabled()
    yield
    gc.unfreeze()
    (gc.enable if enabled else gc.disable)()


def test_nothing_is_collected_inside_and_what_the_block_made_is_frozen(collector):
    gc.enable()
    collections = []
    gc.callbacks.append(lambda phase, info: phase == "start" and collections.append(info))
    try:
        with paused_collector():
            assert not gc.isenabled()
            made = [[index] for index in range(50_000)]  # enough to trigger collections
        assert collections == []
        assert gc.isenabled()
        assert gc.get_freeze_count() >= len(made)
    finally:
        gc.callbacks.pop()


def test_a_collector_that_was_off_stays_off(collector):
    gc.disable()
    with paused_collector():
        pass
    assert not gc.isenabled()
