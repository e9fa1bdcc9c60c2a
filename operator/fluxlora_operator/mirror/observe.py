"""Reads a trainer Job and its pods into an Observation: the phase, conditions and results they
show. Pure: the handlers fetch the objects, this decides what they mean."""

from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypedDict

from fluxlora_api.contract import ExitCode, TrainingResult, parse_termination_message
from fluxlora_api.outputs import resolve_output
from fluxlora_api.status import ConditionType, Phase, Reason
from fluxlora_operator import naming
from fluxlora_operator.clock import parse_time
from fluxlora_operator.mirror.conditions import ConditionChange

# Waiting reasons after which a pod never starts without outside help.
START_FAILURES = {
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "ErrImageNeverPull",
    "CreateContainerConfigError",
    "CreateContainerError",
}
# These fail at once: waiting longer cannot fix them.
IMMEDIATE_START_FAILURES = {"InvalidImageName", "ErrImageNeverPull"}
IMAGE_FAILURES = {"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"}
ERROR_TAIL_CHARS = 1500
TRAINER_EXITED = ConditionChange(
    ConditionType.RUNNING, "False", Reason.FINISHED, "the trainer exited"
)


@dataclass(frozen=True)
class Observation:
    phase: Phase
    conditions: tuple[ConditionChange, ...] = ()
    error: str = ""
    result: TrainingResult | None = None
    start_time: str | None = None
    completion_time: str | None = None
    attempts: int = 0
    pod_name: str | None = None  # the newest trainer pod
    # Outputs the trainer reported outside the run's own folder: dropped, and named in an Event.
    rejected_outputs: tuple[str, ...] = ()
    # The pod can never start (bad image, missing Secret): Kubernetes would retry it forever,
    # holding a GPU, so the operator deletes the Job once it has recorded the failure.
    delete_job: bool = False


class _PodFacts(TypedDict):
    """What every Observation says about the pods, whatever the phase."""

    start_time: str | None
    attempts: int
    pod_name: str | None  # the newest trainer pod


def _true_condition(obj: dict[str, Any], type_: str) -> dict[str, Any] | None:
    conditions: list[dict[str, Any]] = obj.get("status", {}).get("conditions") or []
    for condition in conditions:
        if condition.get("type") == type_ and condition.get("status") == "True":
            return condition
    return None


def job_finished(job: dict[str, Any]) -> bool:
    """Whether the Job controller has said how the run ended (Complete or Failed)."""
    return any(_true_condition(job, type_) for type_ in ("Complete", "Failed"))


def _trainer_status(pod: dict[str, Any]) -> dict[str, Any]:
    statuses: list[dict[str, Any]] = pod.get("status", {}).get("containerStatuses") or []
    for status in statuses:
        if status.get("name") == naming.TRAINER_CONTAINER:
            return status
    return {}


def _terminated(pod: dict[str, Any] | None) -> dict[str, Any]:
    """The trainer container's terminated state ({} while it has not ended)."""
    return _trainer_status(pod or {}).get("state", {}).get("terminated") or {}


def _newest_first(pods: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(
        pods,
        key=lambda pod: (
            pod["metadata"].get("creationTimestamp") or "",
            pod["metadata"].get("name", ""),
        ),
        reverse=True,
    )


def _first_start(pods: list[dict[str, Any]]) -> str | None:
    starts = []
    for pod in pods:
        state = _trainer_status(pod).get("state", {})
        started = (state.get("running") or state.get("terminated") or {}).get("startedAt")
        if started:
            starts.append(started)
    return min(starts, key=parse_time) if starts else None


def pod_error(pod: dict[str, Any]) -> str:
    """Why one trainer pod failed, in the trainer's words where it left any."""
    terminated = _terminated(pod)
    message = (terminated.get("message") or "").strip()
    result = parse_termination_message(message)
    if result is not None and result.error:
        return result.error
    if terminated.get("reason") == "OOMKilled":
        return (
            "the trainer ran out of memory (OOMKilled); lower resolution or batchSize, or raise "
            "the operator's memory limit"
        )
    if message and result is None:
        # FallbackToLogsOnError: the tail of the log stands in for a message.
        return message[-ERROR_TAIL_CHARS:]
    if terminated:
        code, why = terminated.get("exitCode"), terminated.get("reason", "Error")
        return f"the trainer exited with code {code} ({why})"
    disruption = _true_condition(pod, "DisruptionTarget")
    if disruption:
        return disruption.get("message") or "the trainer pod was disrupted"
    return pod.get("status", {}).get("message") or "the trainer pod failed"


def _exit_code(pod: dict[str, Any]) -> int | None:
    return _terminated(pod).get("exitCode")


def _failure(
    job: dict[str, Any], condition: dict[str, Any], pods: list[dict[str, Any]]
) -> tuple[str, str]:
    """(reason, error) for a failed Job: the trainer's own words where it left any."""
    reason = condition.get("reason") or Reason.JOB_FAILED
    failed = [pod for pod in pods if pod.get("status", {}).get("phase") == "Failed"]
    bad_input = [pod for pod in failed if _exit_code(pod) == ExitCode.BAD_INPUT]
    last_error = pod_error(failed[0]) if failed else ""
    if reason == "PodFailurePolicy" and bad_input:
        return Reason.BAD_INPUT, pod_error(bad_input[0])
    if reason == Reason.DEADLINE_EXCEEDED:
        deadline = job.get("spec", {}).get("activeDeadlineSeconds")
        return reason, f"training did not finish within activeDeadlineSeconds ({deadline} s)"
    if reason == Reason.BACKOFF_LIMIT_EXCEEDED:
        count = job.get("status", {}).get("failed") or len(failed)
        return reason, f"the trainer failed {count} time(s); last error: {last_error or 'unknown'}"
    return reason, last_error or condition.get("message") or "the trainer Job failed"


def _succeeded(pods: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The pod whose trainer exited 0, if any. The run is done (its outputs stored) as soon as
    the kubelet reports that exit: the pod's phase says so a second later (the kubelet's next
    relist) and the Job's Complete condition another second after that (the Job controller
    batches pod updates). One pod, one container, restartPolicy Never: the Job completes."""
    for pod in pods:
        if pod.get("status", {}).get("phase") == "Succeeded" or _exit_code(pod) == 0:
            return pod
    return None


def _ended_on_bad_input(pods: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The pod whose trainer exited with the bad-input code, not disrupted: the Job's pod
    failure policy fails the Job for it, two seconds after the kubelet reports the exit (as
    for a success, see _succeeded)."""
    for pod in pods:
        if _exit_code(pod) == ExitCode.BAD_INPUT and not _true_condition(pod, "DisruptionTarget"):
            return pod
    return None


def _completion(
    succeeded: dict[str, Any] | None,
    output_folder: str,
    standard_outputs: list[str],
    snapshot_outputs: list[str],
) -> tuple[TrainingResult, tuple[str, ...], str]:
    """The trainer's result from the pod that succeeded (its outputs as URLs in the run's own
    folder), what it reported elsewhere, and a message for the condition. With no such pod
    left (deleted with its Job before the operator saw it), the Job's Complete condition still
    proves the run uploaded its standard files."""
    terminated = _terminated(succeeded)
    result = parse_termination_message(terminated.get("message"))
    if result is None and not succeeded:
        result = TrainingResult(outputs=list(standard_outputs))
    result = result or TrainingResult()
    # The snapshots' files, which the trainer stored before it finished: named by the
    # operator, so the trainer's result stays small however many there are.
    result.outputs += [name for name in snapshot_outputs if name not in result.outputs]
    if (
        result.timings.inference == 0
        and terminated.get("startedAt")
        and terminated.get("finishedAt")
    ):
        elapsed = parse_time(terminated["finishedAt"]) - parse_time(terminated["startedAt"])
        result.timings.inference = int(elapsed.total_seconds() * 1000)
    resolved = [(item, resolve_output(output_folder, item)) for item in result.outputs]
    result.outputs = [url for _, url in resolved if url is not None]
    rejected = tuple(item for item, url in resolved if url is None)
    message = f"training finished with {len(result.outputs)} output(s)"
    if not result.outputs:
        message = "training finished but the trainer reported no outputs"
    return result, rejected, message


def observe(
    job: dict[str, Any],
    pods: list[dict[str, Any]],
    now: datetime,
    start_grace_seconds: float,
    output_folder: str,
    pod_creation_failure: str | None = None,
    standard_outputs: list[str] | None = None,
    snapshot_outputs: list[str] | None = None,
) -> Observation:
    """What the Job and its pods say about the training run; `output_folder` is the run's own
    folder, the only place its outputs may be; `pod_creation_failure` is why the Job controller
    could not create a pod (its FailedCreate Event), if it said so; `standard_outputs` are the
    files a completed run writes, listed when its pod is gone before its result was read;
    `snapshot_outputs` the snapshots' files, added to any completed run's outputs."""
    pods = _newest_first(pods)
    common: _PodFacts = {
        "start_time": _first_start(pods),
        "attempts": len(pods),
        "pod_name": pods[0]["metadata"]["name"] if pods else None,
    }
    queued = naming.KUEUE_QUEUE_LABEL in (job.get("metadata", {}).get("labels") or {})

    # How the run ended, as the Job says or as the kubelet has already reported it.
    complete = _true_condition(job, "Complete")
    failed = _true_condition(job, "Failed")
    succeeded = None if failed else _succeeded(pods)
    bad_input = None if complete or failed or succeeded else _ended_on_bad_input(pods)
    if complete or succeeded:
        result, rejected, message = _completion(
            succeeded, output_folder, standard_outputs or [], snapshot_outputs or []
        )
        return Observation(
            Phase.COMPLETED,
            (
                TRAINER_EXITED,
                ConditionChange(
                    ConditionType.COMPLETED, "True", Reason.TRAINING_SUCCEEDED, message
                ),
            ),
            result=result,
            rejected_outputs=rejected,
            completion_time=(complete or {}).get("lastTransitionTime")
            or _terminated(succeeded).get("finishedAt"),
            **common,
        )

    if failed or bad_input:
        if failed:
            reason, error = _failure(job, failed, pods)
            ended_at = failed.get("lastTransitionTime")
        else:
            reason, error = Reason.BAD_INPUT, pod_error(bad_input or {})
            ended_at = _terminated(bad_input).get("finishedAt")
        return Observation(
            Phase.FAILED,
            (
                TRAINER_EXITED,
                ConditionChange(ConditionType.FAILED, "True", reason, error, warning=True),
            ),
            error=error,
            completion_time=ended_at,
            **common,
        )

    if job.get("spec", {}).get("suspend"):
        queue = (job["metadata"].get("labels") or {}).get(naming.KUEUE_QUEUE_LABEL)
        where = f"Kueue queue {queue}" if queue else "the Job to be un-suspended"
        return Observation(
            Phase.CREATED,
            (
                ConditionChange(
                    ConditionType.QUEUED,
                    "True",
                    Reason.WAITING_FOR_ADMISSION,
                    f"waiting for {where}",
                ),
            ),
            **common,
        )
    admission = ConditionChange(ConditionType.QUEUED, "False", Reason.ADMITTED, "admitted by Kueue")
    admitted = (admission,) if queued else ()

    if not pods and pod_creation_failure:
        cannot_create = ConditionChange(
            ConditionType.SCHEDULED,
            "False",
            Reason.FAILED_CREATE,
            f"the Job cannot create the trainer pod: {pod_creation_failure}",
            warning=True,
        )
        return Observation(Phase.CREATED, (*admitted, cannot_create), **common)
    if not pods:
        return Observation(Phase.CREATED, admitted, **common)
    return _observe_pod(pods[0], now, start_grace_seconds, admitted, common)


def _observe_pod(
    pod: dict[str, Any],
    now: datetime,
    start_grace_seconds: float,
    admitted: tuple[ConditionChange, ...],
    common: _PodFacts,
) -> Observation:
    name = pod["metadata"]["name"]
    node = pod.get("spec", {}).get("nodeName")
    state = _trainer_status(pod).get("state", {})
    ever_started = common["start_time"] is not None
    scheduled = ConditionChange(
        ConditionType.SCHEDULED, "True", Reason.SCHEDULED, f"pod {name} on node {node}"
    )

    if state.get("running"):
        running = ConditionChange(
            ConditionType.RUNNING, "True", Reason.TRAINER_RUNNING, f"pod {name} on node {node}"
        )
        return Observation(Phase.PROCESSING, (*admitted, scheduled, running), **common)

    waiting = state.get("waiting") or {}
    if waiting.get("reason") in START_FAILURES:
        reason = waiting["reason"]
        detail = f"trainer pod {name} cannot start: {reason}: {waiting.get('message', '')}".strip()
        age = (now - parse_time(pod["metadata"]["creationTimestamp"])).total_seconds()
        if reason in IMMEDIATE_START_FAILURES or age >= start_grace_seconds:
            failure = (
                Reason.IMAGE_PULL_FAILED
                if reason in IMAGE_FAILURES
                else Reason.CONTAINER_START_FAILED
            )
            return Observation(
                Phase.FAILED,
                (
                    *admitted,
                    scheduled,
                    ConditionChange(ConditionType.FAILED, "True", failure, detail, warning=True),
                ),
                error=detail,
                delete_job=True,
                **common,
            )
        starting = ConditionChange(ConditionType.RUNNING, "False", reason, detail, warning=True)
        return Observation(Phase.CREATED, (*admitted, scheduled, starting), **common)

    pod_phase = pod.get("status", {}).get("phase")
    if pod_phase == "Failed":
        phase = Phase.PROCESSING if ever_started else Phase.CREATED
        if _true_condition(pod, "DisruptionTarget"):
            retry = ConditionChange(
                ConditionType.RUNNING,
                "False",
                Reason.DISRUPTED,
                f"trainer pod {name} was preempted or evicted ({pod_error(pod)}); the Job "
                "starts a new pod without counting a failure",
                warning=True,
            )
        else:
            retry = ConditionChange(
                ConditionType.RUNNING,
                "False",
                Reason.RETRYING,
                f"trainer pod {name} failed ({pod_error(pod)}); the Job retries it",
                warning=True,
            )
        return Observation(phase, (*admitted, retry), **common)

    unschedulable = next(
        (
            c
            for c in pod.get("status", {}).get("conditions") or []
            if c.get("type") == "PodScheduled" and c.get("status") == "False"
        ),
        None,
    )
    if unschedulable:
        message = unschedulable.get("message") or "no node can run the trainer pod"
        reason = unschedulable.get("reason") or Reason.UNSCHEDULABLE
        waiting_for_node = ConditionChange(
            ConditionType.SCHEDULED, "False", reason, message, warning=True
        )
        return Observation(Phase.CREATED, (*admitted, waiting_for_node), **common)

    if node:
        return Observation(Phase.CREATED, (*admitted, scheduled), **common)
    return Observation(Phase.CREATED, admitted, **common)
