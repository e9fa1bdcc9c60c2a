"""The demo's reading of its operator's and gateway's pods (fluxlora_localcluster.pod_health)."""

import pytest

from fluxlora_localcluster.pod_health import describe, problem


def pod(phase: str, state: dict, restarts: int = 0) -> dict:
    return {
        "metadata": {"namespace": "fluxlora-system", "name": "fluxlora-abc"},
        "status": {
            "phase": phase,
            "containerStatuses": [{"name": "operator", "state": state, "restartCount": restarts}],
        },
    }


@pytest.mark.parametrize(
    "phase, state",
    [
        ("Pending", {"waiting": {"reason": "ContainerCreating"}}),
        ("Running", {"running": {"startedAt": "2026-12-02T00:00:00Z"}}),
    ],
)
def test_a_pod_that_starts_or_runs_has_no_problem(phase, state):
    assert problem(pod(phase, state)) is None
    assert problem({"metadata": {}, "status": {}}) is None  # not yet scheduled


@pytest.mark.parametrize(
    "phase, state, restarts, said",
    [
        ("Failed", {"terminated": {"exitCode": 1}}, 0, "Failed"),
        ("Running", {"terminated": {"reason": "Error"}}, 0, "exited (Error)"),
        ("Pending", {"waiting": {"reason": "CreateContainerConfigError"}}, 0, "CreateContainer"),
        ("Running", {"waiting": {"reason": "CrashLoopBackOff"}}, 3, "CrashLoopBackOff"),
        ("Running", {"running": {}}, 2, "restarted 2 times"),
    ],
)
def test_a_pod_that_stopped_or_cannot_start_says_how(phase, state, restarts, said):
    assert said in problem(pod(phase, state, restarts))


def test_the_description_has_the_state_the_termination_message_and_the_last_log_lines():
    stopped = pod(
        "Failed",
        {"terminated": {"reason": "Error", "exitCode": 2, "message": "bad FLUXLORA_GPUS\nexit"}},
    )
    text = describe(stopped, log_tail="starting\nerror: FLUXLORA_GPUS")
    assert text.splitlines() == [
        "pod fluxlora-system/fluxlora-abc: Failed",
        "  container operator: terminated (reason Error, exitCode 2)",
        "  message:",
        "    bad FLUXLORA_GPUS",
        "    exit",
        "  last log lines:",
        "    starting",
        "    error: FLUXLORA_GPUS",
    ]


def test_log_lines_that_are_the_termination_message_are_shown_once():
    stopped = pod("Failed", {"terminated": {"exitCode": 1, "message": "bad FLUXLORA_GPUS\n"}})
    assert describe(stopped, log_tail="bad FLUXLORA_GPUS").count("bad FLUXLORA_GPUS") == 1


def test_a_container_in_back_off_is_described_with_the_exit_that_put_it_there():
    crashing = pod("Running", {"waiting": {"reason": "CrashLoopBackOff"}}, restarts=2)
    crashing["status"]["containerStatuses"][0]["lastState"] = {
        "terminated": {"reason": "Error", "exitCode": 2, "message": "bad FLUXLORA_GPUS"}
    }
    assert describe(crashing).splitlines()[1:] == [
        "  container operator: waiting (reason CrashLoopBackOff)",
        "  container operator: last terminated (reason Error, exitCode 2)",
        "  message:",
        "    bad FLUXLORA_GPUS",
    ]
