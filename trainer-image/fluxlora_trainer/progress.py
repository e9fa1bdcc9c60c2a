"""Progress: a progress line in the log, and status.progress patched on the trainer's own
LoRATrainingJob (through the pod's service account, which may patch nothing else) at most every
few seconds. A failed patch is logged and training goes on."""

import json
import logging
import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import urllib3

from fluxlora_api import resource
from fluxlora_api.contract import RESOURCE_NAME_ENV, RESOURCE_NAMESPACE_ENV
from fluxlora_trainer.train_loop import StepReport

logger = logging.getLogger(__name__)

SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
PATCH_INTERVAL_SECONDS = 5.0
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
        "updatedAt": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


@dataclass
class StatusTarget:
    """The own resource's status endpoint and the credentials to patch it."""

    url: str
    token_file: Path
    ca_file: Path

    @classmethod
    def from_environment(cls) -> "StatusTarget | None":
        namespace = os.environ.get(RESOURCE_NAMESPACE_ENV)
        name = os.environ.get(RESOURCE_NAME_ENV)
        host = os.environ.get("KUBERNETES_SERVICE_HOST")
        port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
        if not (namespace and name and host and (SERVICE_ACCOUNT / "token").is_file()):
            return None  # a local run: nothing to patch
        if ":" in host:
            host = f"[{host}]"
        path = (
            f"/apis/{resource.API_VERSION}/namespaces/{namespace}/{resource.PLURAL}/{name}/status"
        )
        return cls(
            f"https://{host}:{port}{path}", SERVICE_ACCOUNT / "token", SERVICE_ACCOUNT / "ca.crt"
        )


class ProgressReporter:
    def __init__(self, target: StatusTarget | None) -> None:
        self.target = target
        self.last_patch = 0.0
        self.last_log = 0.0
        self.pool = (
            urllib3.PoolManager(ca_certs=str(target.ca_file), timeout=5.0, retries=False)
            if target
            else None
        )

    def __call__(self, report: StepReport) -> None:
        now = time.monotonic()
        final = report.step == report.total_steps
        if final or now - self.last_log >= LOG_INTERVAL_SECONDS:
            self.last_log = now
            logger.info("%s", progress_line(report))
        if self.target and (final or now - self.last_patch >= PATCH_INTERVAL_SECONDS):
            self.last_patch = now
            self.patch({"progress": progress_status(report)})

    def patch(self, status: dict) -> None:
        try:
            token = self.target.token_file.read_text().strip()  # rotated by the kubelet
            response = self.pool.request(
                "PATCH",
                self.target.url,
                body=json.dumps({"status": status}).encode(),
                headers={
                    "Authorization": f"Bearer {token}",
                    "Content-Type": "application/merge-patch+json",
                },
            )
            if response.status >= 300:
                logger.warning("progress not recorded: HTTP %s", response.status)
        except Exception as error:  # progress is a courtesy: training never fails for it
            logger.warning("progress not recorded: %s", error)
