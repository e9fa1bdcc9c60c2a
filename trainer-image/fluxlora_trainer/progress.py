"""Progress: a progress line in the log, and a report to the operator's progress endpoint at
most every few seconds, which the operator writes to status.progress (the trainer itself holds
no Kubernetes rights). Reports are sent off the training thread, so a slow endpoint never slows
a step; a failed report is logged and training goes on."""

import json
import logging
import os
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import urllib3

from fluxlora_api.contract import (
    PROGRESS_PATH,
    PROGRESS_TOKEN_DIR,
    PROGRESS_TOKEN_FILE,
    PROGRESS_URL_ENV,
)
from fluxlora_trainer.train_loop import StepReport

logger = logging.getLogger(__name__)

REPORT_INTERVAL_SECONDS = 5.0
LOG_INTERVAL_SECONDS = 10.0
BAR_WIDTH = 30


def progress_line(report: StepReport) -> str:
    done = int(BAR_WIDTH * report.step / report.total_steps)
    bar = "#" * done + "-" * (BAR_WIDTH - done)
    eta = int(report.eta_seconds)
    return (
        f"[{bar}] step {report.step}/{report.total_steps} loss {report.smoothed_loss:.4f} "
        f"eta {eta // 3600}:{eta // 60 % 60:02d}:{eta % 60:02d}"
    )


def progress_status(report: StepReport) -> dict:
    return {
        "step": report.step,
        "totalSteps": report.total_steps,
        "loss": round(report.smoothed_loss, 6),
        "etaSeconds": int(report.eta_seconds),
    }


@dataclass
class ProgressTarget:
    """The operator's progress endpoint and the pod-bound token that proves who reports."""

    url: str
    token_file: Path

    @classmethod
    def from_environment(cls) -> "ProgressTarget | None":
        url = os.environ.get(PROGRESS_URL_ENV)
        token_file = Path(PROGRESS_TOKEN_DIR) / PROGRESS_TOKEN_FILE
        if not url or not token_file.is_file():
            return None  # a local run, or an operator without the endpoint: log only
        return cls(url.rstrip("/") + PROGRESS_PATH, token_file)


class ProgressReporter:
    def __init__(self, target: ProgressTarget | None) -> None:
        self.target = target
        self.last_report = 0.0
        self.last_log = 0.0
        self.pool = urllib3.PoolManager(timeout=5.0, retries=False) if target else None
        self.sender = ThreadPoolExecutor(max_workers=1, thread_name_prefix="progress")
        self.in_flight: Future | None = None

    def __call__(self, report: StepReport) -> None:
        now = time.monotonic()
        final = report.step == report.total_steps
        if final or now - self.last_log >= LOG_INTERVAL_SECONDS:
            self.last_log = now
            logger.info("%s", progress_line(report))
        if self.target and (final or now - self.last_report >= REPORT_INTERVAL_SECONDS):
            busy = self.in_flight is not None and not self.in_flight.done()
            if busy and not final:
                return  # the endpoint is slow: this step's report is left out, not queued
            self.last_report = now
            try:
                token = self.target.token_file.read_text().strip()  # rotated by the kubelet
            except OSError as error:
                logger.warning("progress not recorded: %s", error)
                return
            self.in_flight = self.sender.submit(self.send, progress_status(report), token)

    def close(self) -> None:
        """Wait for the last report (the final step's) to be sent."""
        if self.in_flight is not None:
            self.in_flight.result()

    def send(self, progress: dict, token: str) -> None:
        try:
            response = self.pool.request(
                "POST",
                self.target.url,
                body=json.dumps(progress).encode(),
                headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            )
            if response.status >= 300:
                logger.warning("progress not recorded: HTTP %s", response.status)
        except Exception as error:  # progress is a courtesy: training never fails for it
            logger.warning("progress not recorded: %s", error)
