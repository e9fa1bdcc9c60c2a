"""The status belongs to the API: the operator writes it only through the status model."""

import pydantic
import pytest

from fluxlora_api.crd import build_crd
from fluxlora_api.status import (
    ConditionType,
    Phase,
    Reason,
    failure_status,
    initial_status,
    is_finished,
    phase_of,
    status_fields,
)

CREATED = "2026-11-24T10:00:00Z"


def test_a_misspelled_or_out_of_range_field_fails_before_the_api_server_can_prune_it():
    assert status_fields(trainer_pod="p-1", attempts=2) == {"trainerPod": "p-1", "attempts": 2}
    with pytest.raises(pydantic.ValidationError, match="trainerPood"):
        status_fields(trainerPood="p-1")
    with pytest.raises(pydantic.ValidationError, match="attempts"):
        status_fields(attempts=-1)


def test_a_run_starts_as_a_created_prediction():
    status = initial_status("u-1", "black-forest-labs/FLUX.1-dev", CREATED, 3)
    assert status == {
        "phase": "created",
        "id": "u-1",
        "model": "black-forest-labs/FLUX.1-dev",
        "createdAt": "2026-11-24T10:00:00.000Z",
        "outputs": [],
        "hasNsfwContents": [],
        "error": "",
        "timings": {"inference": 0},
        "observedGeneration": 3,
    }


def test_a_failure_keeps_the_creation_time_it_has_and_adds_one_it_lacks():
    now = "2026-11-24T10:01:00Z"
    fresh = failure_status({}, "u-1", CREATED, "spec.output: no output destination", now)
    assert fresh == {
        "phase": "failed",
        "id": "u-1",
        "error": "spec.output: no output destination",
        "outputs": [],
        "hasNsfwContents": [],
        "completionTime": now,
        "createdAt": "2026-11-24T10:00:00.000Z",
    }
    started = failure_status({"createdAt": "x"}, "u-1", CREATED, "boom", now)
    assert "createdAt" not in started


@pytest.mark.parametrize(
    ("status", "finished"),
    [
        (None, False),
        ({}, False),
        ({"phase": "created"}, False),
        ({"phase": "processing"}, False),
        ({"phase": "completed"}, True),
        ({"phase": "failed"}, True),
        ({"phase": "Completed"}, False),  # not a phase: the run is not over
    ],
)
def test_one_check_says_whether_a_run_is_over(status, finished):
    assert is_finished(status) is finished
    phase = phase_of(status)
    assert (phase is not None and phase.terminal) is finished


def test_kubectl_explain_says_what_every_condition_type_and_reason_means():
    status = build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]
    condition = status["properties"]["conditions"]["items"]["properties"]
    for type_ in ConditionType:
        assert f"{type_.value}: " in condition["type"]["description"], type_
    for reason in Reason:
        assert f"{reason.value}: " in condition["reason"]["description"], reason
    assert set(status["properties"]["phase"]["enum"]) == {phase.value for phase in Phase}
