"""What a trainer Job and its pods mean for the resource (table-driven)."""

from datetime import datetime

import pytest

from fluxlora_api.contract import ExitCode
from fluxlora_api.status import Phase
from fluxlora_operator.mirror.observe import observe
from tests.objects import job, job_condition, pod, result_message, running, terminated

NOW = datetime.fromisoformat("2026-11-24T10:02:00+00:00")
GRACE = 300
FOLDER = "s3://o/loras/team-a/portrait-1234"


def look(job_obj, pods, now=NOW):
    return observe(job_obj, pods, now, GRACE, FOLDER)


def condition(observation, type_):
    return next((c for c in observation.conditions if c.type == type_), None)


def test_a_job_without_pods_is_created():
    seen = look(job(), [])
    assert seen.phase == Phase.CREATED and seen.attempts == 0


def test_a_suspended_kueue_job_is_queued_and_stays_created():
    seen = look(job(suspend=True, queue="gpu-queue"), [])
    assert seen.phase == Phase.CREATED
    queued = condition(seen, "Queued")
    assert (queued.status, queued.reason) == ("True", "WaitingForAdmission")
    assert "gpu-queue" in queued.message


def test_an_admitted_kueue_job_says_so():
    seen = look(job(queue="gpu-queue"), [pod(state=running())])
    assert condition(seen, "Queued").status == "False"
    assert seen.phase == Phase.PROCESSING


def test_an_unschedulable_pod_keeps_created_and_says_why():
    why = "0/3 nodes are available: 3 Insufficient nvidia.com/gpu."
    unschedulable = {
        "type": "PodScheduled",
        "status": "False",
        "reason": "Unschedulable",
        "message": why,
    }
    seen = look(job(), [pod(node=None, conditions=[unschedulable])])
    assert seen.phase == Phase.CREATED
    scheduled = condition(seen, "Scheduled")
    assert (scheduled.status, scheduled.reason, scheduled.message) == (
        "False",
        "Unschedulable",
        why,
    )
    assert scheduled.warning


def test_a_running_trainer_is_processing():
    seen = look(job(), [pod(phase="Running", state=running("2026-11-24T10:01:00Z"))])
    assert seen.phase == Phase.PROCESSING
    assert seen.start_time == "2026-11-24T10:01:00Z"
    assert condition(seen, "Running").status == "True"


@pytest.mark.parametrize(
    ("reason", "age_seconds", "fails"),
    [
        ("ImagePullBackOff", 60, False),
        ("ImagePullBackOff", 301, True),
        ("ErrImagePull", 301, True),
        ("InvalidImageName", 1, True),
        ("CreateContainerConfigError", 60, False),
        ("CreateContainerConfigError", 400, True),
        ("ContainerCreating", 4000, False),
    ],
)
def test_a_pod_that_cannot_start_fails_after_the_grace_period(reason, age_seconds, fails):
    state = {"waiting": {"reason": reason, "message": "details from the kubelet"}}
    now = datetime.fromisoformat("2026-11-24T10:00:00+00:00").timestamp() + age_seconds
    seen = look(job(), [pod(state=state)], datetime.fromtimestamp(now).astimezone())
    assert (seen.phase == Phase.FAILED) is fails
    assert seen.delete_job is fails
    if fails:
        assert reason in seen.error and "details from the kubelet" in seen.error


def test_completion_reports_the_trainers_outputs_and_timings():
    message = result_message(outputs=["lora.safetensors"], timings={"inference": 1800000})
    done = pod(phase="Succeeded", state=terminated(0, message, reason="Completed"))
    seen = look(job(conditions=[job_condition("Complete")], succeeded=1), [done])
    assert seen.phase == Phase.COMPLETED
    assert seen.result.outputs == [f"{FOLDER}/lora.safetensors"]
    assert seen.rejected_outputs == ()
    assert seen.result.timings.inference == 1800000
    assert seen.completion_time == "2026-11-24T11:00:00Z"
    assert condition(seen, "Completed").status == "True"


def test_a_trainer_that_exited_0_is_completed_before_the_job_says_so():
    # The kubelet reports the exit a second before the pod's phase, two before the Job's
    # Complete condition: the run is done, its outputs stored.
    message = result_message(outputs=["lora.safetensors"], timings={"inference": 1800000})
    done = pod(phase="Running", state=terminated(0, message, reason="Completed"))
    seen = look(job(), [done])
    assert seen.phase == Phase.COMPLETED
    assert seen.result.outputs == [f"{FOLDER}/lora.safetensors"]
    assert seen.completion_time == "2026-11-24T10:31:00Z"  # the trainer's exit
    assert condition(seen, "Completed").status == "True"


def test_a_trainer_that_exited_on_bad_input_has_failed_before_the_job_says_so():
    message = result_message(error="photos.zip: no usable image (3 files skipped)")
    bad = pod(phase="Running", state=terminated(ExitCode.BAD_INPUT, message))
    seen = look(job(), [bad])
    assert seen.phase == Phase.FAILED
    assert seen.error == "photos.zip: no usable image (3 files skipped)"
    assert condition(seen, "Failed").reason == "BadInput"
    assert seen.completion_time == "2026-11-24T10:31:00Z"
    # Any other exit, or one in a pod being evicted, is the Job controller's to judge (its pod
    # failure policy retries it).
    disruption = {"type": "DisruptionTarget", "status": "True", "reason": "EvictionByEvictionAPI"}
    for ended in (
        pod(phase="Running", state=terminated(1, result_message(error="CUDA error"))),
        pod(phase="Running", state=terminated(137, reason="OOMKilled")),
        pod(phase="Running", state=terminated(ExitCode.BAD_INPUT), conditions=[disruption]),
    ):
        assert not look(job(), [ended]).phase.terminal


def test_outputs_outside_the_runs_own_folder_are_dropped():
    """A hostile trainer (it runs untrusted data) must not point the tenant at other files."""
    foreign = [
        "s3://o/loras/team-b/other-5678/lora.safetensors",  # another tenant's run
        "../team-b/other-5678/lora.safetensors",
        "sub/lora.safetensors",
        "..",
        f"{FOLDER}/../other-5678/lora.safetensors",
        f"{FOLDER}-evil/lora.safetensors",
    ]
    own = ["lora.safetensors", f"{FOLDER}/config.json"]  # a name, or a URL in the folder
    message = result_message(outputs=[*own, *foreign])
    done = pod(phase="Succeeded", state=terminated(0, message, "Completed"))
    seen = look(job(conditions=[job_condition("Complete")]), [done])
    assert seen.result.outputs == [f"{FOLDER}/lora.safetensors", f"{FOLDER}/config.json"]
    assert seen.rejected_outputs == tuple(foreign)


def test_completion_without_a_timing_uses_the_container_run_time():
    done = pod(phase="Succeeded", state=terminated(0, result_message(outputs=["x"]), "Completed"))
    seen = look(job(conditions=[job_condition("Complete")]), [done])
    assert seen.result.timings.inference == 30 * 60 * 1000


def test_bad_input_fails_with_the_trainers_message():
    message = result_message(error="photos.zip: no usable image (3 files skipped)")
    bad = pod(phase="Failed", state=terminated(ExitCode.BAD_INPUT, message))
    failed = job_condition("Failed", "PodFailurePolicy", "Container trainer ... exit code 65")
    seen = look(job(conditions=[failed], failed=1), [bad])
    assert seen.phase == Phase.FAILED
    assert seen.error == "photos.zip: no usable image (3 files skipped)"
    assert condition(seen, "Failed").reason == "BadInput"
    assert not seen.delete_job


def test_exhausted_retries_fail_with_the_last_error():
    first = pod(
        "p-1",
        created="2026-11-24T10:00:00Z",
        phase="Failed",
        state=terminated(1, "Traceback\nCUDA error: illegal memory access"),
    )
    last = pod(
        "p-2",
        created="2026-11-24T10:10:00Z",
        phase="Failed",
        state=terminated(137, reason="OOMKilled"),
    )
    failed = job_condition(
        "Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit"
    )
    seen = look(job(conditions=[failed], failed=2), [first, last])
    assert seen.phase == Phase.FAILED
    assert seen.error.startswith(
        "the trainer failed 2 time(s); last error: the trainer ran out of memory"
    )
    assert seen.attempts == 2


def test_a_deadline_failure_names_the_deadline():
    failed = job_condition(
        "Failed", "DeadlineExceeded", "Job was active longer than specified deadline"
    )
    seen = look(job(conditions=[failed]), [pod(phase="Failed", state=terminated(143))])
    assert seen.error == "training did not finish within activeDeadlineSeconds (3600 s)"


def test_a_preempted_pod_is_a_retry_not_a_failure():
    disruption = {
        "type": "DisruptionTarget",
        "status": "True",
        "reason": "PreemptionByScheduler",
        "message": "Preempted by a higher-priority pod",
    }
    evicted = pod(phase="Failed", state=terminated(143, reason="Error"), conditions=[disruption])
    seen = look(job(), [evicted])
    assert seen.phase == Phase.PROCESSING  # it had started; a new pod continues from a checkpoint
    retry = condition(seen, "Running")
    assert (retry.status, retry.reason) == ("False", "Disrupted")


def test_a_replacement_pod_is_what_counts():
    old = pod("p-1", created="2026-11-24T10:00:00Z", phase="Failed", state=terminated(1, "boom"))
    new = pod(
        "p-2",
        created="2026-11-24T10:05:00Z",
        phase="Running",
        state=running("2026-11-24T10:05:30Z"),
    )
    seen = look(job(), [old, new])
    assert seen.phase == Phase.PROCESSING
    assert seen.attempts == 2
    assert seen.start_time == "2026-11-24T10:01:00Z"  # the first attempt's start


def test_a_job_that_cannot_create_its_pod_says_why():
    quota = 'pods "portrait-train-x" is forbidden: exceeded quota: gpu-pods, used: pods=1'
    seen = observe(job(), [], NOW, GRACE, FOLDER, pod_creation_failure=quota)
    assert seen.phase == Phase.CREATED
    scheduled = condition(seen, "Scheduled")
    assert (scheduled.status, scheduled.reason) == ("False", "FailedCreate")
    assert quota in scheduled.message and scheduled.warning


def test_a_completed_job_whose_pod_is_gone_lists_the_runs_standard_files():
    names = ["lora.safetensors", "lora_comfyui.safetensors", "config.json"]
    seen = observe(job(conditions=[job_condition("Complete")]), [], NOW, GRACE, FOLDER, None, names)
    assert seen.phase == Phase.COMPLETED
    assert seen.result.outputs == [f"{FOLDER}/{name}" for name in names]
