"""What the cluster reports back: the hosted API's result in Kubernetes form.

The status is the API's: its phases, condition types and reasons are defined here, with the
meanings `kubectl explain` shows, and the operator writes it only through these models (a
misspelled field fails here, where the API server would silently prune it).
"""

from collections.abc import Mapping
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import Field
from pydantic.config import JsonDict

from fluxlora_api.base import ApiModel

DATE_TIME: JsonDict = {"format": "date-time"}


class Phase(StrEnum):
    """The hosted API's four task states."""

    CREATED = "created"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"

    @property
    def terminal(self) -> bool:
        """Completed and failed are final: nothing changes the run's result afterwards."""
        return self in (Phase.COMPLETED, Phase.FAILED)


def phase_of(status: Mapping[str, Any] | None) -> Phase | None:
    """The phase a status shows; None before the operator wrote one (or for an unknown word)."""
    phase = (status or {}).get("phase")
    return Phase(phase) if phase in set(Phase) else None


def is_finished(status: Mapping[str, Any] | None) -> bool:
    """Whether the run has ended (completed or failed): the one terminal-phase check."""
    phase = phase_of(status)
    return phase is not None and phase.terminal


class ConditionType(StrEnum):
    """The condition types the operator writes, at most one of each."""

    JOB_CREATED = "JobCreated"
    QUEUED = "Queued"
    SCHEDULED = "Scheduled"
    RUNNING = "Running"
    COMPLETED = "Completed"
    FAILED = "Failed"
    SUSPENDED = "Suspended"


CONDITION_TYPE_MEANINGS = {
    ConditionType.JOB_CREATED: "the trainer Job exists (made or adopted by the operator)",
    ConditionType.QUEUED: "True while the Job waits for admission (Kueue, or suspended), "
    "False once admitted",
    ConditionType.SCHEDULED: "the trainer pod has a node; False says why it has none",
    ConditionType.RUNNING: "the trainer runs; False says why not (waiting, disrupted, retrying, "
    "exited)",
    ConditionType.COMPLETED: "training finished and the outputs are uploaded",
    ConditionType.FAILED: "the run failed; the message says why",
    ConditionType.SUSPENDED: "True since the run was suspended (spec.suspend): its Job and pod "
    "are gone, the GPU is free; False once resumed",
}


class Reason(StrEnum):
    """The operator's own condition and Event reasons. Reasons of the Job controller, the
    scheduler or the kubelet (BackoffLimitExceeded, ErrImagePull...) are passed on as they are."""

    JOB_CREATED = "JobCreated"
    JOB_ADOPTED = "JobAdopted"
    NAME_CONFLICT = "NameConflict"
    INVALID_SPEC = "InvalidSpec"
    JOB_REJECTED = "JobRejected"
    WAITING_FOR_ADMISSION = "WaitingForAdmission"
    ADMITTED = "Admitted"
    FAILED_CREATE = "FailedCreate"
    UNSCHEDULABLE = "Unschedulable"
    SCHEDULED = "Scheduled"
    TRAINER_RUNNING = "TrainerRunning"
    DISRUPTED = "Disrupted"
    RETRYING = "Retrying"
    FINISHED = "Finished"
    TRAINING_SUCCEEDED = "TrainingSucceeded"
    BAD_INPUT = "BadInput"
    DEADLINE_EXCEEDED = "DeadlineExceeded"
    BACKOFF_LIMIT_EXCEEDED = "BackoffLimitExceeded"
    JOB_FAILED = "JobFailed"
    IMAGE_PULL_FAILED = "ImagePullFailed"
    CONTAINER_START_FAILED = "ContainerStartFailed"
    OUTPUT_REJECTED = "OutputRejected"
    SUSPENDED = "Suspended"
    RESUMED = "Resumed"


REASON_MEANINGS = {
    Reason.JOB_CREATED: "the operator made the trainer Job",
    Reason.JOB_ADOPTED: "the operator found its trainer Job and took it over (after a restart)",
    Reason.NAME_CONFLICT: "a Job of the trainer Job's name belongs to something else",
    Reason.INVALID_SPEC: "the spec cannot be trained with the operator's settings",
    Reason.JOB_REJECTED: "the API server refused the trainer Job",
    Reason.WAITING_FOR_ADMISSION: "the Job is suspended until a queue admits it",
    Reason.ADMITTED: "Kueue admitted the Job",
    Reason.FAILED_CREATE: "the Job controller cannot create the trainer pod (quota, policy)",
    Reason.UNSCHEDULABLE: "no node can take the trainer pod yet",
    Reason.SCHEDULED: "the trainer pod is bound to a node",
    Reason.TRAINER_RUNNING: "the trainer container runs",
    Reason.DISRUPTED: "the pod was preempted or evicted; the Job starts a new one",
    Reason.RETRYING: "the trainer failed; the Job retries it",
    Reason.FINISHED: "the trainer exited",
    Reason.TRAINING_SUCCEEDED: "training finished and the outputs are uploaded",
    Reason.BAD_INPUT: "the dataset or parameters cannot be trained; retrying cannot help",
    Reason.DEADLINE_EXCEEDED: "training ran past activeDeadlineSeconds",
    Reason.BACKOFF_LIMIT_EXCEEDED: "the trainer failed more often than the Job allows",
    Reason.JOB_FAILED: "the Job failed for another reason (the message has it)",
    Reason.IMAGE_PULL_FAILED: "the trainer image cannot be pulled",
    Reason.CONTAINER_START_FAILED: "the trainer container cannot be created (a missing Secret)",
    Reason.OUTPUT_REJECTED: "(Event) an output outside the run's own folder was dropped",
    Reason.SUSPENDED: "spec.suspend is true: the trainer checkpoints its step and its Job goes",
    Reason.RESUMED: "spec.suspend is false again: a new Job resumes from the checkpoint",
}


def _meanings(table: Mapping[ConditionType, str] | Mapping[Reason, str]) -> str:
    return "; ".join(f"{key.value}: {meaning}" for key, meaning in table.items())


def hosted_created_at(creation_timestamp: str) -> str:
    """The hosted API's created_at form (2023-04-01T12:34:56.789Z) of a creationTimestamp."""
    moment = datetime.fromisoformat(creation_timestamp.replace("Z", "+00:00")).astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


class Timings(ApiModel):
    """Timing details, as in the hosted API."""

    inference: int = Field(0, ge=0)
    """Training time in milliseconds."""


class Progress(ApiModel):
    """Training progress, reported by the trainer pod while it trains (through the operator)."""

    step: int = Field(0, ge=0)
    """Steps done so far."""
    total_steps: int = Field(0, ge=0)
    """Steps the run will do."""
    loss: float | None = Field(None, allow_inf_nan=False)
    """Smoothed training loss at the last report."""
    eta_seconds: int | None = Field(None, ge=0)
    """Estimated seconds until training ends (sampling not included)."""
    sampling_seconds: float | None = Field(None, ge=0, allow_inf_nan=False)
    """Seconds spent so far rendering samples while training (spec.sampleEverySteps), apart
    from the training time."""
    updated_at: str | None = Field(None, json_schema_extra=DATE_TIME)
    """When the trainer last reported (the operator's clock)."""


class Snapshot(ApiModel):
    """What a run stored at one step while training: the LoRA (spec.saveEverySteps), sample
    images (spec.sampleEverySteps), or both."""

    step: int = Field(ge=1)
    """The step it was saved at."""
    loss: float | None = Field(None, allow_inf_nan=False)
    """The smoothed training loss at that step."""
    files: list[str] = Field(default_factory=list, max_length=8)
    """Its LoRA files: the diffusers format, then kohya's (ComfyUI); none at a step that only
    samples."""
    samples: list[str] = Field(default_factory=list, max_length=8)
    """Its sample images, one per sample prompt in order; none at a step that only saves, or
    when rendering failed (sampling never costs the run)."""


WebhookState = Literal["pending", "delivered", "failed"]


class WebhookDelivery(ApiModel):
    """How the webhook of the run's end went: the operator's record, so that a restart neither
    loses a delivery nor sends a delivered one again."""

    state: WebhookState = "pending"
    """pending (being tried), delivered (the receiver answered 2xx) or failed (a final answer,
    a refused address, or retries ran out)."""
    attempts: int = Field(0, ge=0)
    """POSTs made so far."""
    first_attempt_at: str | None = Field(None, json_schema_extra=DATE_TIME)
    """When the first POST was made (retries stop a set time after it)."""
    last_attempt_at: str | None = Field(None, json_schema_extra=DATE_TIME)
    """When the last POST was made."""
    last_error: str | None = Field(None, max_length=2048)
    """Why the last POST did not deliver."""
    delivered_at: str | None = Field(None, json_schema_extra=DATE_TIME)
    """When the receiver accepted it."""


class Condition(ApiModel):
    """A metav1.Condition: one aspect of the resource's state."""

    type: str = Field(
        max_length=316,
        description=f"Condition type. {_meanings(CONDITION_TYPE_MEANINGS)}.",
    )
    status: Literal["True", "False", "Unknown"]
    """Whether the condition holds."""
    reason: str = Field(
        max_length=1024,
        pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$",
        description="One CamelCase word saying why: the operator's own "
        f"({_meanings(REASON_MEANINGS)}), or the Job controller's, scheduler's or kubelet's "
        "(ErrImagePull, ImagePullBackOff, CreateContainerConfigError...), passed on.",
    )
    message: str = Field("", max_length=32768)
    """Human-readable details."""
    last_transition_time: str = Field(json_schema_extra=DATE_TIME)
    """When the status last changed."""
    observed_generation: int | None = Field(None, ge=0)
    """The resource generation the condition was computed for."""


class LoRATrainingJobStatus(ApiModel):
    """Observed state, written by the operator alone (progress as the trainer reports it)."""

    phase: Phase | None = None
    """created (accepted, waiting for a GPU or a queue), processing (the trainer runs),
    completed (outputs uploaded) or failed (see error)."""
    id: str | None = None
    """Task id, as in the hosted API: the resource's uid."""
    model: str | None = None
    """Base model the LoRA is trained on."""
    outputs: list[str] | None = None
    """URLs of the trained LoRA and its companion files (empty until completed)."""
    has_nsfw_contents: list[bool] | None = None
    """One flag per output, as in the hosted API (LoRA files are not images: always false)."""
    created_at: str | None = None
    """When the task was created, ISO 8601 with milliseconds (as in the hosted API)."""
    error: str | None = None
    """Why the training failed; empty otherwise."""
    timings: Timings | None = None
    """Training time; inference is in milliseconds (hosted API naming)."""
    progress: Progress | None = None
    """Live training progress reported by the trainer; the only thing the trainer can change."""
    job_name: str | None = None
    """Name of the batch/v1 Job that runs the trainer."""
    start_time: str | None = Field(None, json_schema_extra=DATE_TIME)
    """When the trainer container first started."""
    completion_time: str | None = Field(None, json_schema_extra=DATE_TIME)
    """When the resource reached completed or failed."""
    trainer_pod: str | None = None
    """The newest trainer pod (`kubectl logs` it to follow the training)."""
    attempts: int | None = Field(None, ge=0)
    """Trainer pods created so far (retries after preemption or failure included)."""
    conditions: list[Condition] | None = Field(
        None,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    """Latest observations of the resource's state, one per type."""
    observed_generation: int | None = Field(None, ge=0)
    """The generation the operator last acted on."""
    snapshots: list[Snapshot] | None = Field(
        None,
        max_length=100,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["step"]},
    )
    """The LoRAs and sample images stored so far while training (spec.saveEverySteps,
    spec.sampleEverySteps), oldest first, each as soon as its files are stored."""
    webhook: WebhookDelivery | None = None
    """The delivery of spec.webhook, once the run has ended."""


def status_fields(**fields: Any) -> dict[str, Any]:
    """A status patch with exactly these fields (snake_case here, camelCase on the wire),
    checked against the status model: a misspelled or out-of-range field fails here."""
    return LoRATrainingJobStatus.model_validate(fields).model_dump(
        mode="json", by_alias=True, include=set(fields)
    )


def initial_status(
    uid: str, model: str, creation_timestamp: str, generation: int | None
) -> dict[str, Any]:
    """The status a run starts with: the hosted API's prediction fields, phase `created`."""
    return status_fields(
        phase=Phase.CREATED,
        id=uid,
        model=model,
        created_at=hosted_created_at(creation_timestamp),
        outputs=[],
        has_nsfw_contents=[],
        error="",
        timings=Timings(),
        observed_generation=generation,
    )


def failure_status(
    status: Mapping[str, Any], uid: str, creation_timestamp: str, error: str, now: str
) -> dict[str, Any]:
    """The fields that end a run as failed with `error`, on top of `status` (it keeps its
    createdAt, or gets one)."""
    fields: dict[str, Any] = {
        "phase": Phase.FAILED,
        "id": uid,
        "error": error,
        "outputs": [],
        "has_nsfw_contents": [],
        "completion_time": now,
    }
    if not status.get("createdAt"):
        fields["created_at"] = hosted_created_at(creation_timestamp)
    return status_fields(**fields)


def condition(
    type_: ConditionType | str,
    status: str,
    reason: Reason | str,
    message: str,
    last_transition_time: str,
    observed_generation: int | None,
) -> dict[str, Any]:
    """One metav1.Condition in wire form."""
    return Condition(
        type=type_,
        status=status,  # checked by the model
        reason=reason,
        message=message,
        last_transition_time=last_transition_time,
        observed_generation=observed_generation,
    ).to_wire()
