"""From an observation to the status patch and Events: sticky ends, no going back, no noise."""

from fluxlora_api.contract import TrainingResult
from fluxlora_api.status import Phase, Timings
from fluxlora_operator.mirror.conditions import ConditionChange
from fluxlora_operator.mirror.observe import Observation
from fluxlora_operator.mirror.status_plan import plan_status_update

NOW = "2026-11-24T10:05:00Z"
LATER = "2026-11-24T10:09:00Z"
RUNNING = ConditionChange("Running", "True", "TrainerRunning", "pod p on node n")


def plan(status, observation, now=NOW):
    return plan_status_update(status, observation, now, 1)


def test_starting_to_run_moves_to_processing_with_one_event():
    update = plan(
        {"phase": "created"}, Observation(Phase.PROCESSING, (RUNNING,), start_time=NOW, attempts=1)
    )
    assert update.patch["phase"] == "processing"
    assert update.patch["startTime"] == NOW
    assert update.patch["attempts"] == 1
    assert [
        (c["type"], c["status"], c["lastTransitionTime"]) for c in update.patch["conditions"]
    ] == [("Running", "True", NOW)]
    assert [(e.type, e.reason) for e in update.events] == [("Normal", "TrainerRunning")]


def test_the_same_observation_twice_writes_nothing_the_second_time():
    observation = Observation(Phase.PROCESSING, (RUNNING,), start_time=NOW, attempts=1)
    first = plan({"phase": "created"}, observation)
    status = {"phase": "created", **first.patch}
    second = plan(status, observation, now=LATER)
    assert second.patch == {} and second.events == ()


def test_a_changed_message_keeps_the_transition_time():
    status = {
        "phase": "created",
        "conditions": [
            {
                "type": "Scheduled",
                "status": "False",
                "reason": "Unschedulable",
                "message": "0/1 nodes",
                "lastTransitionTime": NOW,
                "observedGeneration": 1,
            }
        ],
    }
    change = ConditionChange("Scheduled", "False", "Unschedulable", "0/2 nodes", warning=True)
    update = plan(status, Observation(Phase.CREATED, (change,)), now=LATER)
    (scheduled,) = update.patch["conditions"]
    assert scheduled["message"] == "0/2 nodes" and scheduled["lastTransitionTime"] == NOW
    assert [(e.type, e.message) for e in update.events] == [("Warning", "0/2 nodes")]


def test_processing_never_falls_back_to_created():
    waiting = ConditionChange("Scheduled", "False", "Unschedulable", "no GPU", warning=True)
    update = plan({"phase": "processing"}, Observation(Phase.CREATED, (waiting,)))
    assert "phase" not in update.patch
    assert update.patch["conditions"][0]["reason"] == "Unschedulable"


def test_terminal_phases_are_sticky():
    for phase in ("completed", "failed"):
        update = plan({"phase": phase}, Observation(Phase.PROCESSING, (RUNNING,)))
        assert update.patch == {} and update.events == () and not update.delete_job


def test_completion_writes_outputs_timings_and_one_flag_per_output():
    result = TrainingResult(outputs=["s3://o/a", "s3://o/b"], timings=Timings(inference=42))
    done = ConditionChange("Completed", "True", "TrainingSucceeded", "2 outputs")
    update = plan(
        {"phase": "processing"},
        Observation(Phase.COMPLETED, (done,), result=result, completion_time=LATER),
    )
    patch = update.patch
    assert patch["phase"] == "completed"
    assert patch["outputs"] == ["s3://o/a", "s3://o/b"]
    assert patch["hasNsfwContents"] == [False, False]
    assert patch["timings"] == {"inference": 42}
    assert patch["error"] == "" and patch["completionTime"] == LATER


def test_failure_writes_the_error_and_asks_to_delete_a_stuck_job():
    failed = ConditionChange("Failed", "True", "ImagePullFailed", "cannot pull", warning=True)
    update = plan(
        {"phase": "created"},
        Observation(Phase.FAILED, (failed,), error="cannot pull", delete_job=True),
    )
    assert update.patch["phase"] == "failed"
    assert update.patch["error"] == "cannot pull"
    assert update.patch["completionTime"] == NOW
    assert update.delete_job
    assert [(e.type, e.reason) for e in update.events] == [("Warning", "ImagePullFailed")]


def test_attempts_never_go_down():
    update = plan({"phase": "processing", "attempts": 3}, Observation(Phase.PROCESSING, attempts=2))
    assert "attempts" not in update.patch


def test_a_new_pod_is_a_new_attempt_even_when_the_old_one_is_gone():
    first = plan(
        {"phase": "created"}, Observation(Phase.PROCESSING, (RUNNING,), attempts=1, pod_name="p-1")
    )
    assert (first.patch["attempts"], first.patch["trainerPod"]) == (1, "p-1")
    status = {"phase": "processing", **first.patch}
    # the evicted p-1 was deleted; only its replacement is listed
    second = plan(status, Observation(Phase.PROCESSING, (RUNNING,), attempts=1, pod_name="p-2"))
    assert (second.patch["attempts"], second.patch["trainerPod"]) == (2, "p-2")
    again = plan(
        {**status, **second.patch},
        Observation(Phase.PROCESSING, (RUNNING,), attempts=1, pod_name="p-2"),
    )
    assert "attempts" not in again.patch and "trainerPod" not in again.patch
