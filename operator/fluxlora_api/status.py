"""What the cluster reports back: the hosted API's result in Kubernetes form."""

from enum import StrEnum
from typing import Literal

from pydantic import Field

from fluxlora_api.base import ApiModel

DATE_TIME = {"format": "date-time"}


class Phase(StrEnum):
    """The hosted API's four task states."""

    CREATED = "created"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"

    @property
    def terminal(self) -> bool:
        return self in (Phase.COMPLETED, Phase.FAILED)


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
    """Estimated seconds until training ends."""
    updated_at: str | None = Field(None, json_schema_extra=DATE_TIME)
    """When the trainer last reported (the operator's clock)."""


class Condition(ApiModel):
    """A metav1.Condition: one aspect of the resource's state."""

    type: str = Field(max_length=316)
    """Condition type (JobCreated, Queued, Scheduled, Running, Completed, Failed)."""
    status: Literal["True", "False", "Unknown"]
    """Whether the condition holds."""
    reason: str = Field(max_length=1024, pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$")
    """One CamelCase word saying why."""
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
