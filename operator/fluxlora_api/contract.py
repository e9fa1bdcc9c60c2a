"""The contract between the operator and the trainer container.

Operator -> trainer: a TrainingConfig as JSON in the CONFIG_ENV variable (or a file for local
runs), plus the resource's namespace/name so the trainer can patch status.progress.
Trainer -> operator: a TrainingResult as JSON in the termination message, and the exit code:
0 done, BAD_INPUT never retried, anything else retryable.
"""

import json
from enum import IntEnum

from pydantic import Field, ValidationError

from fluxlora_api.base import ApiModel
from fluxlora_api.spec import TrainingParameters
from fluxlora_api.status import Timings

CONFIG_ENV = "FLUXLORA_TRAINING_CONFIG"
RESOURCE_NAMESPACE_ENV = "FLUXLORA_RESOURCE_NAMESPACE"
RESOURCE_NAME_ENV = "FLUXLORA_RESOURCE_NAME"
TERMINATION_MESSAGE_PATH = "/dev/termination-log"
# Kubernetes truncates termination messages to 4096 bytes.
TERMINATION_MESSAGE_LIMIT = 4096


class ExitCode(IntEnum):
    SUCCESS = 0
    # Any code but these two is retried by the Job; the trainer uses this one.
    RETRYABLE = 1
    # sysexits.h EX_DATAERR: the input data was incorrect. The Job fails at once on it.
    BAD_INPUT = 65


class TrainingConfig(TrainingParameters):
    """One training run, as the trainer container receives it."""

    output: str = Field(max_length=2048)
    """Where this run's files go: s3://bucket/prefix or a directory (already per-resource)."""
    gpus: int = Field(1, ge=1, le=8)
    """GPUs visible to the trainer."""
    job_id: str | None = None
    """The task id (the resource's uid) recorded in the outputs' metadata."""


class TrainingResult(ApiModel):
    """What the trainer reports when it exits, read back by the operator."""

    # A newer trainer may report more; an older operator still reads what it knows.
    model_config = ApiModel.model_config | {"extra": "ignore"}

    outputs: list[str] = Field(default_factory=list)
    """URLs of the uploaded files, the LoRA first."""
    timings: Timings = Field(default_factory=Timings)
    error: str = ""
    """Human-readable reason when the run failed."""
    has_nsfw_contents: list[bool] | None = None

    def to_termination_message(self) -> str:
        return json.dumps(self.to_wire(), separators=(",", ":"))


def parse_termination_message(message: str | None) -> TrainingResult | None:
    """The trainer's result, or None when the message is not one (a log tail, say)."""
    if not message:
        return None
    try:
        return TrainingResult.model_validate_json(message.strip())
    except ValidationError:
        return None
