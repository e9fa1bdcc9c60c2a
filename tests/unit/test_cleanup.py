"""When a finished run may be deleted: its own ttlSecondsAfterFinished, else the operator's."""

from datetime import timedelta

import pytest

from fluxlora_operator.cleanup import seconds_until_due
from fluxlora_operator.clock import format_time, utcnow


def run(phase: str | None, ended_ago: float | None, ttl: int | None = None) -> dict:
    status = {"phase": phase} if phase else {}
    if ended_ago is not None:
        status["completionTime"] = format_time(utcnow() - timedelta(seconds=ended_ago))
    spec = {"data": "https://x/a.zip"} | (
        {"ttlSecondsAfterFinished": ttl} if ttl is not None else {}
    )
    return {"metadata": {"namespace": "team-a", "name": "p"}, "spec": spec, "status": status}


@pytest.mark.parametrize(
    ("phase", "ended_ago", "ttl", "default", "due_in"),
    [
        ("completed", 100, 60, None, -40),  # its own TTL: overdue
        ("failed", 10, 60, 5, 50),  # its own wins over the operator's
        ("completed", 10, None, 30, 20),  # the operator's default
        ("completed", 10, 0, 3600, -10),  # 0: at once
        ("completed", 10, None, None, None),  # no TTL anywhere: kept
        ("processing", None, 0, None, None),  # not finished
        (None, None, 0, 0, None),
    ],
)
def test_a_finished_run_is_due_its_ttl_after_it_ended(phase, ended_ago, ttl, default, due_in):
    # Made here, not at collection: the times are relative to now.
    due = seconds_until_due(run(phase, ended_ago, ttl), default)
    if due_in is None:
        assert due is None
    else:
        assert due == pytest.approx(due_in, abs=2)
