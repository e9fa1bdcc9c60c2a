"""The contract between the operator and the trainer container.

Operator -> trainer: a TrainingConfig as JSON in the CONFIG_ENV variable (or a file for local
runs), the dataset limits as FLUXLORA_* variables (see limits.py), and where to report
progress.
Trainer -> operator: a TrainingResult as JSON in the termination message (output file names,
not URLs, so it always fits), progress reports to the operator's progress endpoint, and the exit
code: 0 done, BAD_INPUT never retried, anything else retryable.
"""

import json
from enum import IntEnum

from pydantic import Field, ValidationError

from fluxlora_api.base import ApiModel
from fluxlora_api.spec import TrainingParameters
from fluxlora_api.status import Progress, Timings

CONFIG_ENV = "FLUXLORA_TRAINING_CONFIG"
# Progress: the trainer POSTs a ProgressReport (JSON) to PROGRESS_URL_ENV with its pod-bound
# service-account token for PROGRESS_AUDIENCE as Bearer. That token is useless against the API
# server (wrong audience), so the trainer holds no Kubernetes rights at all.
PROGRESS_URL_ENV = "FLUXLORA_PROGRESS_URL"
PROGRESS_PATH = "/progress"
PROGRESS_AUDIENCE = "fluxlora.dev/progress"
PROGRESS_TOKEN_DIR = "/var/run/secrets/fluxlora.dev/progress"
PROGRESS_TOKEN_FILE = "token"
# Seconds between a trainer's progress reports (the operator's progress-seconds, given to the
# trainer in PROGRESS_SECONDS_ENV): the default, and the least, which is what the operator's
# endpoint accepts from one pod (a report a second).
PROGRESS_SECONDS_ENV = "FLUXLORA_PROGRESS_SECONDS"
PROGRESS_SECONDS_DEFAULT = 5.0
PROGRESS_SECONDS_MIN = 1.0
PROGRESS_SECONDS_MAX = 300.0  # the chart's values.schema.json says the same
TERMINATION_MESSAGE_PATH = "/dev/termination-log"
# Kubernetes truncates termination messages to 4096 bytes.
TERMINATION_MESSAGE_LIMIT = 4096


class SnapshotReport(ApiModel):
    """A snapshot (spec.saveEverySteps, spec.sampleEverySteps) whose files the trainer has
    stored."""

    step: int = Field(ge=1)
    """The step it was saved at (the operator knows its file names from it)."""
    loss: float | None = Field(None, allow_inf_nan=False)
    """The smoothed training loss at that step."""
    samples: int = Field(0, ge=0, le=8)
    """How many sample images it stored (the first that many prompts'; 0 when rendering
    failed or the step only saves)."""


class ProgressReport(Progress):
    """What a trainer pod POSTs to the progress endpoint: its progress, and now and then a
    snapshot it has stored."""

    snapshot: SnapshotReport | None = None


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
    """Names of the uploaded files in the run's output folder, the LoRA first (the operator
    turns them into URLs and drops anything that is not a plain file name)."""
    timings: Timings = Field(default_factory=Timings)
    error: str = ""
    """Human-readable reason when the run failed."""
    has_nsfw_contents: list[bool] | None = None

    def to_termination_message(self) -> str:
        """JSON that always fits TERMINATION_MESSAGE_LIMIT (Kubernetes cuts longer messages,
        which would leave invalid JSON): a long error loses its middle."""
        wire = self.to_wire()

        def encoded(kept: int) -> str:
            if kept < len(self.error):
                head, tail = self.error[: kept // 2], self.error[len(self.error) - kept // 2 :]
                wire["error"] = f"{head} ... {tail}"
            else:
                wire["error"] = self.error
            return json.dumps(wire, separators=(",", ":"))

        low, high = 0, len(self.error)  # the most error characters that fit: binary search
        while low < high:
            middle = (low + high + 1) // 2
            if len(encoded(middle).encode()) <= TERMINATION_MESSAGE_LIMIT:
                low = middle
            else:
                high = middle - 1
        return encoded(low)


def parse_termination_message(message: str | None) -> TrainingResult | None:
    """The trainer's result, or None when the message is not one (a log tail, say)."""
    if not message:
        return None
    try:
        return TrainingResult.model_validate_json(message.strip())
    except ValidationError:
        return None
