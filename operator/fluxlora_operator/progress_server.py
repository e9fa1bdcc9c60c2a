"""The progress endpoint: trainer pods report progress here, and nothing else reaches the status
from them (the design of Kubeflow Trainer's progress server).

A trainer pod runs untrusted data, so it holds no Kubernetes rights at all. It proves who it is
with its projected service-account token for PROGRESS_AUDIENCE: the API server's TokenReview
says which pod the token is bound to (pod name and uid); that pod must be the live trainer pod
of a LoRATrainingJob's own Job. Only then is its report, checked against the ProgressReport
model, written to that resource's status.progress (and a stored snapshot, named and placed by
the operator, to status.snapshots), at REPORTS_PER_SECOND per pod at most.
"""

import asyncio
import hashlib
import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from fluxlora_api import resource
from fluxlora_api.contract import (
    PROGRESS_AUDIENCE,
    PROGRESS_PATH,
    PROGRESS_SECONDS_MIN,
    ProgressReport,
    SnapshotReport,
)
from fluxlora_api.outputs import snapshot_files, snapshot_samples, snapshot_steps
from fluxlora_api.status import Progress, Snapshot
from fluxlora_kube.client import ApiError, Kube
from fluxlora_kube.paths import path
from fluxlora_operator import naming
from fluxlora_operator.clock import format_time, utcnow
from fluxlora_operator.rate_limit import RateLimiter
from fluxlora_operator.settings import OperatorSettings
from fluxlora_operator.start.custom_resource import TrainingJobRef, parse_spec
from fluxlora_operator.start.run_settings import resolve_output_folder

logger = logging.getLogger(__name__)

POD_NAME_EXTRA = "authentication.kubernetes.io/pod-name"
POD_UID_EXTRA = "authentication.kubernetes.io/pod-uid"
SERVICE_ACCOUNT_PREFIX = "system:serviceaccount:"
MAX_BODY_BYTES = 4096
REPORTS_PER_SECOND = 1.0 / PROGRESS_SECONDS_MIN
REPORT_BURST = 5
REVIEW_CACHE_SECONDS = 60.0
CACHE_ENTRIES = 4096


@dataclass(frozen=True)
class Reporter:
    """The pod a progress token is bound to."""

    namespace: str
    pod_name: str
    pod_uid: str


def reporter_of(review: dict[str, Any]) -> Reporter | None:
    """The pod behind an authenticated, pod-bound token for our audience; None otherwise."""
    status = review.get("status") or {}
    if not status.get("authenticated") or PROGRESS_AUDIENCE not in (status.get("audiences") or []):
        return None
    user = status.get("user") or {}
    username = user.get("username") or ""
    if not username.startswith(SERVICE_ACCOUNT_PREFIX):
        return None
    namespace = username.removeprefix(SERVICE_ACCOUNT_PREFIX).partition(":")[0]
    extra = user.get("extra") or {}
    pod_name = (extra.get(POD_NAME_EXTRA) or [""])[0]
    pod_uid = (extra.get(POD_UID_EXTRA) or [""])[0]
    if not (namespace and pod_name and pod_uid):
        return None  # not bound to a pod: a token anyone with `create token` could mint
    return Reporter(namespace, pod_name, pod_uid)


def training_job_of(pod: dict[str, Any], reporter: Reporter) -> tuple[str, str] | None:
    """(resource name, Job uid) when `pod` is the reporter's pod and a trainer pod of the
    operator's making: labelled for a resource and controlled by that resource's Job."""
    meta = pod.get("metadata") or {}
    if meta.get("uid") != reporter.pod_uid or meta.get("namespace") != reporter.namespace:
        return None  # the token's pod is gone and the name was reused
    labels = meta.get("labels") or {}
    name = labels.get(naming.LABEL_TRAINING_JOB)
    if not name or labels.get(naming.LABEL_MANAGED_BY) != naming.MANAGED_BY:
        return None
    for owner in meta.get("ownerReferences") or []:
        if (
            owner.get("controller") is True
            and owner.get("kind") == "Job"
            and owner.get("name") == naming.job_name(name)
        ):
            return name, owner.get("uid") or ""
    return None


class Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class _Cache(OrderedDict):
    """A small LRU map, shared by the threads that serve reports."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()

    def remember(self, key: Any, value: Any) -> None:
        with self._lock:
            self[key] = value
            self.move_to_end(key)
            while len(self) > CACHE_ENTRIES:
                self.popitem(last=False)


class ProgressServer:
    def __init__(self, kube: Kube, settings: OperatorSettings) -> None:
        self.kube, self.settings = kube, settings
        self._reviews = _Cache()  # token hash -> (Reporter | None, expiry)
        self._trainers = _Cache()  # pod uid -> (namespace, resource name)
        # A trainer reports every few seconds, and its last step at once: a burst is fine,
        # a flood is not.
        self._limiter = RateLimiter(REPORTS_PER_SECOND, REPORT_BURST)

    def _review(self, token: str) -> Reporter | None:
        key = hashlib.sha256(token.encode()).hexdigest()
        cached = self._reviews.get(key)
        if cached and cached[1] > time.monotonic():
            return cached[0]
        review = self.kube.request(
            "POST",
            path("TokenReview"),
            {
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "TokenReview",
                "spec": {"token": token, "audiences": [PROGRESS_AUDIENCE]},
            },
        )
        reporter = reporter_of(review)
        self._reviews.remember(key, (reporter, time.monotonic() + REVIEW_CACHE_SECONDS))
        return reporter

    def _training_job(self, reporter: Reporter) -> tuple[str, str]:
        known = self._trainers.get(reporter.pod_uid)
        if known:
            return known
        pod = self.kube.get("Pod", reporter.namespace, reporter.pod_name)
        found = training_job_of(pod or {}, reporter)
        if found is None:
            raise Refused(403, "the token's pod is not a trainer pod of this operator")
        name, job_uid = found
        body = self.kube.get(resource.KIND, reporter.namespace, name)
        job = self.kube.get("Job", reporter.namespace, naming.job_name(name))
        if body is None or job is None or job["metadata"]["uid"] != job_uid:
            raise Refused(403, "the pod's Job does not belong to a LoRATrainingJob")
        if not TrainingJobRef.of(body).owns(job):
            raise Refused(403, "the pod's Job does not belong to a LoRATrainingJob")
        self._trainers.remember(reporter.pod_uid, (reporter.namespace, name))
        return reporter.namespace, name

    def report(self, token: str, body: bytes) -> tuple[str, str]:
        """Write one report; returns the resource (namespace, name). Blocking: run in a
        thread."""
        try:
            reporter = self._review(token)
        except ApiError as error:
            logger.warning("progress: token review failed: %s", error)
            raise Refused(503, "the token could not be checked; try again") from None
        if reporter is None:
            raise Refused(401, f"not a pod-bound token for audience {PROGRESS_AUDIENCE}")
        wait = self._limiter.retry_after(reporter.pod_uid)
        if wait > 0:
            raise Refused(429, f"too many reports: retry in {wait:.1f} s")
        try:
            report = ProgressReport.model_validate_json(body)
        except ValidationError as error:
            problem = error.errors()[0]
            field = ".".join(str(part) for part in problem["loc"]) or "body"
            raise Refused(400, f"{field}: {problem['msg']}") from None
        namespace, name = self._training_job(reporter)
        progress = Progress.model_validate(report.model_dump(exclude={"snapshot"}))
        progress.updated_at = format_time(utcnow())
        patch: dict[str, Any] = {"progress": progress.to_wire()}
        if report.snapshot is not None:
            patch["snapshots"] = self._snapshots(namespace, name, report.snapshot)
        try:
            self.kube.patch_status(resource.KIND, namespace, name, patch)
        except ApiError as error:
            if error.status == 404:
                raise Refused(404, "the LoRATrainingJob is gone") from None
            raise
        return namespace, name

    def _snapshots(
        self, namespace: str, name: str, reported: SnapshotReport
    ) -> list[dict[str, Any]]:
        """status.snapshots with `reported` in it: its files named and placed by the operator
        (in the run's own folder), and only at a step the spec saves at."""
        body = self.kube.get(resource.KIND, namespace, name)
        if body is None:
            raise Refused(404, "the LoRATrainingJob is gone")
        spec = parse_spec(body.get("spec") or {})
        step = reported.step
        saves = step in snapshot_steps(spec.steps, spec.save_every_steps)
        samples = step in snapshot_steps(spec.steps, spec.sample_every_steps)
        if not (saves or samples):
            raise Refused(400, f"snapshot.step: the run saves no snapshot at {step}")
        prompts = len(spec.sample_prompts or []) if samples else 0
        if reported.samples > prompts:
            raise Refused(400, f"snapshot.samples: the run renders {prompts} at step {step}")
        folder = resolve_output_folder(spec, self.settings, TrainingJobRef.of(body))
        names = snapshot_files(step) if saves else []
        snapshot = Snapshot(
            step=step,
            loss=reported.loss,
            files=[f"{folder}/{file}" for file in names],
            samples=[f"{folder}/{file}" for file in snapshot_samples(step, reported.samples)],
        )
        known = {
            item["step"]: item
            for item in (body.get("status") or {}).get("snapshots") or []
            if isinstance(item, dict) and isinstance(item.get("step"), int)
        }
        known[snapshot.step] = snapshot.to_wire()
        return [known[step] for step in sorted(known)]


PROGRESS_SERVER = web.AppKey("progress_server", ProgressServer)


async def _post_progress(request: web.Request) -> web.Response:
    server = request.app[PROGRESS_SERVER]
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return web.json_response({"error": "missing Bearer token"}, status=401)
    if (request.content_length or 0) > MAX_BODY_BYTES:
        return web.json_response({"error": f"body over {MAX_BODY_BYTES} bytes"}, status=413)
    body = await request.content.read(MAX_BODY_BYTES + 1)
    if len(body) > MAX_BODY_BYTES:
        return web.json_response({"error": f"body over {MAX_BODY_BYTES} bytes"}, status=413)
    try:
        await asyncio.to_thread(server.report, token.strip(), body)
    except Refused as refused:
        return web.json_response({"error": str(refused)}, status=refused.status)
    except ApiError as error:
        logger.warning("progress: %s", error)
        return web.json_response({"error": "the API server refused; try again"}, status=503)
    return web.Response(status=204)


def build_progress_app(server: ProgressServer) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY_BYTES)
    app[PROGRESS_SERVER] = server
    app.router.add_post(PROGRESS_PATH, _post_progress)
    return app


async def serve_progress(kube: Kube, settings: OperatorSettings, port: int) -> web.AppRunner:
    """Start the endpoint on all addresses (trainer pods reach it through the operator's
    Service); the caller cleans the returned runner up."""
    runner = web.AppRunner(build_progress_app(ProgressServer(kube, settings)), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "0.0.0.0", port).start()
    logger.info("progress endpoint listening on port %d", port)
    return runner
