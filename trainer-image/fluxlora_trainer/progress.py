"""Progress: a progress line in the log, and a report to the operator's progress endpoint at
most every few seconds (the operator's progress-seconds), which the operator writes to
status.progress (the trainer itself holds no Kubernetes rights); a report also carries the
next stored snapshot (status.snapshots) until one is recorded. Reports are sent off the
training thread, so a slow endpoint never slows a step; a failed report is logged and training
goes on."""

import json
import logging
import os
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import urllib3

from fluxlora_api.contract import (
    PROGRESS_PATH,
    PROGRESS_SECONDS_DEFAULT,
    PROGRESS_SECONDS_ENV,
    PROGRESS_SECONDS_MIN,
    PROGRESS_TOKEN_DIR,
    PROGRESS_TOKEN_FILE,
    PROGRESS_URL_ENV,
)
from fluxlora_trainer.train_loop import StepReport

logger = logging.getLogger(__name__)

LOG_INTERVAL_SECONDS = 10.0
BAR_WIDTH = 30
SNAPSHOT_TRIES = 3


def progress_line(report: StepReport) -> str:
    done = int(BAR_WIDTH * report.step / report.total_steps)
    bar = "#" * done + "-" * (BAR_WIDTH - done)
    eta = int(report.eta_seconds)
    return (
        f"[{bar}] step {report.step}/{report.total_steps} loss {report.smoothed_loss:.4f} "
        f"eta {eta // 3600}:{eta // 60 % 60:02d}:{eta % 60:02d}"
    )


def progress_status(report: StepReport) -> dict:
    status = {
        "step": report.step,
        "totalSteps": report.total_steps,
        "loss": round(report.smoothed_loss, 6),
        "etaSeconds": int(report.eta_seconds),
    }
    if report.sampling_seconds:
        status["samplingSeconds"] = round(report.sampling_seconds, 1)
    return status


@dataclass
class ProgressTarget:
    """The operator's progress endpoint and the pod-bound token that proves who reports."""

    url: str
    token_file: Path
    interval: float = PROGRESS_SECONDS_DEFAULT  # seconds between reports

    @classmethod
    def from_environment(cls) -> "ProgressTarget | None":
        url = os.environ.get(PROGRESS_URL_ENV)
        token_file = Path(PROGRESS_TOKEN_DIR) / PROGRESS_TOKEN_FILE
        if not url or not token_file.is_file():
            return None  # a local run, or an operator without the endpoint: log only
        return cls(url.rstrip("/") + PROGRESS_PATH, token_file, report_interval())


def report_interval() -> float:
    """The operator's progress-seconds, never less than its endpoint accepts."""
    try:
        seconds = float(os.environ.get(PROGRESS_SECONDS_ENV, PROGRESS_SECONDS_DEFAULT))
    except ValueError:
        return PROGRESS_SECONDS_DEFAULT
    return seconds if seconds >= PROGRESS_SECONDS_MIN else PROGRESS_SECONDS_MIN


class ProgressReporter:
    def __init__(self, target: ProgressTarget | None) -> None:
        self.target = target
        self.last_report = 0.0
        self.last_log = 0.0
        self.pool = urllib3.PoolManager(timeout=5.0, retries=False) if target else None
        self.sender = ThreadPoolExecutor(max_workers=1, thread_name_prefix="progress")
        self.in_flight: Future | None = None
        self.last_progress: dict | None = None
        self.snapshots: list[dict] = []  # stored, not yet recorded; oldest first
        self.lock = threading.Lock()

    def __call__(self, report: StepReport) -> None:
        now = time.monotonic()
        final = report.step == report.total_steps
        if final or now - self.last_log >= LOG_INTERVAL_SECONDS:
            self.last_log = now
            logger.info("%s", progress_line(report))
        self.last_progress = progress_status(report)
        if self.target and (final or now - self.last_report >= self.target.interval):
            busy = self.in_flight is not None and not self.in_flight.done()
            if busy and not final:
                return  # the endpoint is slow: this step's report is left out, not queued
            self.last_report = now
            self._submit(self.last_progress)

    def snapshot(self, step: int, loss: float | None, samples: int = 0) -> None:
        """A snapshot's files are stored: recorded with the next report (from any thread)."""
        logger.info("snapshot of step %d stored", step)
        if self.target:
            rounded = None if loss is None else round(loss, 6)
            with self.lock:
                self.snapshots.append({"step": step, "loss": rounded, "samples": samples})
            self.last_report = 0.0  # the next step reports at once

    def flush(self) -> None:
        """Report the last step now, then the stored snapshots not yet recorded (a few tries
        each, a second apart: the endpoint limits reports per second)."""
        if self.in_flight is not None:
            self.in_flight.result()
        if not self.target or self.last_progress is None:
            return
        for attempt in range(1 + SNAPSHOT_TRIES * len(self.snapshots)):
            if attempt:
                if not self.snapshots:
                    break
                time.sleep(1.0)
            self._submit(self.last_progress)
            if self.in_flight is not None:
                self.in_flight.result()

    def close(self) -> None:
        """Wait for the last report (the final step's) to be sent, and record the snapshots
        still unrecorded."""
        if self.in_flight is not None:
            self.in_flight.result()
        if self.snapshots:
            self.flush()

    def _submit(self, progress: dict) -> None:
        try:
            token = self.target.token_file.read_text().strip()  # rotated by the kubelet
        except OSError as error:
            logger.warning("progress not recorded: %s", error)
            return
        with self.lock:
            snapshot = self.snapshots[0] if self.snapshots else None
        body = {**progress, "snapshot": snapshot} if snapshot else progress
        self.in_flight = self.sender.submit(self.send, body, token, snapshot)

    def send(self, progress: dict, token: str, snapshot: dict | None = None) -> None:
        try:
            response = self.pool.request(
                "POST",
                self.target.url,
                body=json.dumps(progress).encode(),
                headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            )
            if response.status >= 300:
                logger.warning("progress not recorded: HTTP %s", response.status)
            elif snapshot is not None:
                with self.lock:
                    self.snapshots.remove(snapshot)
        except Exception as error:  # progress is a courtesy: training never fails for it
            logger.warning("progress not recorded: %s", error)
