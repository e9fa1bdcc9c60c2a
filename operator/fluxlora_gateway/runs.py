"""What the web page reads beyond the hosted objects: each run's progress, conditions, snapshots
and loss curve, as pure functions of the resource (app.py serves them with the same keys and
tenant isolation as the hosted endpoints)."""

import csv
import io
import math
from typing import Any
from urllib.parse import quote

from pydantic import Field

from fluxlora_api.outputs import LOSS_CSV_FILE, belongs_to_run
from fluxlora_api.prediction import (
    OUTPUT_PATH,
    HostedModel,
    created_at,
    output_file,
    own_outputs,
    prediction,
)
from fluxlora_api.status import Phase, phase_of

RUNS_PATH = "/api/v3/runs"
RUN_PATH = "/api/v3/predictions/{id}/run"
LOSS_PATH = "/api/v3/predictions/{id}/loss"
MAX_RUNS = 100
MAX_LOSS_CSV_BYTES = 4 * 1024 * 1024  # 4,000 steps take about 200 kB


class RunCondition(HostedModel):
    """One aspect of the run's state, as the operator observed it."""

    type: str
    status: str
    reason: str
    message: str = ""
    last_transition_time: str | None = None


class RunSnapshot(HostedModel):
    """What the run stored at one step while training."""

    step: int
    loss: float | None = None
    """The smoothed training loss at that step."""
    files: list[str] = Field(default_factory=list)
    """Download URLs of its LoRA: the diffusers format, then kohya's (ComfyUI)."""
    samples: list[str] = Field(default_factory=list)
    """Download URLs of its sample images, one per sample prompt in order."""


class RunSummary(HostedModel):
    """A run as the list shows it."""

    id: str
    """The task id."""
    name: str
    """The LoRATrainingJob's name."""
    status: Phase
    created_at: str
    steps: int
    """Steps the run trains."""
    lora_rank: int
    step: int = 0
    """Steps done so far."""
    loss: float | None = None
    """The smoothed loss at the last report."""
    eta_seconds: int | None = None
    """Seconds until training ends, at the last report."""
    suspended: bool = False
    error: str = ""


class RunDetails(RunSummary):
    """One run in full."""

    trigger_word: str | None = None
    learning_rate: float | None = None
    sample_prompts: list[str] = Field(default_factory=list)
    save_every_steps: int | None = None
    sample_every_steps: int | None = None
    sampling_seconds: float | None = None
    """Seconds spent rendering samples while training (not in the ETA)."""
    attempts: int = 0
    """Trainer pods so far (retries after preemption or failure included)."""
    started_at: str | None = None
    completed_at: str | None = None
    conditions: list[RunCondition] = Field(default_factory=list)
    snapshots: list[RunSnapshot] = Field(default_factory=list)
    """What was stored while training, oldest first."""
    outputs: list[str] = Field(default_factory=list)
    """Download URLs of the outputs, once completed, the LoRA first."""


class Runs(HostedModel):
    """The key's runs, newest first."""

    items: list[RunSummary]


class LossPoint(HostedModel):
    step: int
    loss: float
    smoothed_loss: float


class LossCurve(HostedModel):
    """The loss of every step stored so far (at each snapshot, and at the end)."""

    points: list[LossPoint]


def _download(resource: dict[str, Any], base_url: str, url: str) -> str:
    uid = resource["metadata"]["uid"]
    return base_url + OUTPUT_PATH.format(id=uid, file=quote(output_file(url)))


def _own(resource: dict[str, Any], url: Any) -> bool:
    meta = resource["metadata"]
    prefix = (resource.get("spec") or {}).get("output")
    return isinstance(url, str) and belongs_to_run(
        url, meta["namespace"], meta["name"], meta["uid"], prefix
    )


def _snapshots(resource: dict[str, Any]) -> list[dict[str, Any]]:
    """status.snapshots, each with only the files in the run's own folder."""
    found = []
    for item in (resource.get("status") or {}).get("snapshots") or []:
        if not isinstance(item, dict) or not isinstance(item.get("step"), int):
            continue
        found.append(
            {
                "step": item["step"],
                "loss": item.get("loss"),
                "files": [u for u in item.get("files") or [] if _own(resource, u)],
                "samples": [u for u in item.get("samples") or [] if _own(resource, u)],
            }
        )
    return found


def own_snapshot_files(resource: dict[str, Any]) -> list[str]:
    """The storage URLs of the snapshots' files and sample images, in the run's own folder."""
    return [url for item in _snapshots(resource) for url in item["files"] + item["samples"]]


def run_folder_url(resource: dict[str, Any]) -> str | None:
    """The run's folder in storage, once it has stored a file there (None before)."""
    stored = own_outputs(resource) + own_snapshot_files(resource)
    return stored[0].rsplit("/", 1)[0] if stored else None


def loss_csv_url(resource: dict[str, Any]) -> str | None:
    folder = run_folder_url(resource)
    return f"{folder}/{LOSS_CSV_FILE}" if folder else None


def run_summary(resource: dict[str, Any]) -> RunSummary:
    spec, status = resource.get("spec") or {}, resource.get("status") or {}
    progress = status.get("progress") or {}
    return RunSummary(
        id=resource["metadata"]["uid"],
        name=resource["metadata"]["name"],
        status=phase_of(status) or Phase.CREATED,
        created_at=created_at(resource),
        steps=spec.get("steps") or 0,
        lora_rank=spec.get("loraRank") or 0,
        step=progress.get("step") or 0,
        loss=progress.get("loss"),
        eta_seconds=progress.get("etaSeconds"),
        suspended=bool(spec.get("suspend")),
        error=status.get("error") or "",
    )


def run_details(resource: dict[str, Any], base_url: str) -> RunDetails:
    spec, status = resource.get("spec") or {}, resource.get("status") or {}
    progress = status.get("progress") or {}
    return RunDetails(
        **run_summary(resource).model_dump(),
        trigger_word=spec.get("triggerWord"),
        learning_rate=spec.get("learningRate"),
        sample_prompts=spec.get("samplePrompts") or [],
        save_every_steps=spec.get("saveEverySteps"),
        sample_every_steps=spec.get("sampleEverySteps"),
        sampling_seconds=progress.get("samplingSeconds"),
        attempts=status.get("attempts") or 0,
        started_at=status.get("startTime"),
        completed_at=status.get("completionTime"),
        conditions=[
            RunCondition(
                type=c.get("type", ""),
                status=c.get("status", ""),
                reason=c.get("reason", ""),
                message=c.get("message") or "",
                last_transition_time=c.get("lastTransitionTime"),
            )
            for c in status.get("conditions") or []
            if isinstance(c, dict)
        ],
        snapshots=[
            RunSnapshot(
                step=item["step"],
                loss=item["loss"],
                files=[_download(resource, base_url, u) for u in item["files"]],
                samples=[_download(resource, base_url, u) for u in item["samples"]],
            )
            for item in _snapshots(resource)
        ],
        outputs=prediction(resource, base_url)["outputs"],
    )


def runs(resources: list[dict[str, Any]], status: Phase | None) -> Runs:
    """The newest MAX_RUNS runs, in `status` if given."""
    found = [run_summary(resource) for resource in resources]
    found = [run for run in found if status is None or run.status == status]
    found.sort(key=lambda run: (run.created_at, run.id), reverse=True)
    return Runs(items=found[:MAX_RUNS])


def parse_loss_csv(text: str) -> LossCurve:
    """The trainer's loss.csv (step, loss, smoothed_loss, elapsed_seconds); rows that are not
    numbers are skipped (the file is the trainer's, and the trainer runs untrusted data)."""
    points = []
    for row in csv.DictReader(io.StringIO(text)):
        try:
            step, loss, smoothed = int(row["step"]), float(row["loss"]), float(row["smoothed_loss"])
        except (KeyError, TypeError, ValueError):
            continue
        if math.isfinite(loss) and math.isfinite(smoothed):
            points.append(LossPoint(step=step, loss=loss, smoothed_loss=smoothed))
    return LossCurve(points=points)
