"""The kopf handlers: a few lines each, calling the Reconciler.

- every watch event of a resource, trainer Job or trainer pod is kept in the watch cache;
- a LoRATrainingJob without a status gets its status and Job;
- any change to a trainer Job or pod re-mirrors the owning resource at once, from the cache;
- a slow loop re-mirrors unfinished resources (time-based failures, missed events), first
  soon after start-up (the resume);
- every resource event updates the phase gauge;
- trainer pods report progress to an endpoint served beside the handlers;
- a run that ended is offered to the webhook sender, which delivers its spec.webhook, and to
  the cleaner, which deletes it after its ttlSecondsAfterFinished.

Only event handlers: kopf's create/resume handlers would write their bookkeeping into every
resource (one more write, and one more watch event, per run).
"""

import asyncio
import functools
import logging
from collections.abc import Callable
from typing import Any

import kopf

from fluxlora_api import resource
from fluxlora_operator import naming
from fluxlora_operator.cleanup import FinishedRunCleaner
from fluxlora_operator.metrics import Metrics
from fluxlora_operator.progress_server import serve_progress
from fluxlora_operator.reconciler import Reconciler, RetryLater
from fluxlora_operator.settings import OperatorSettings
from fluxlora_operator.webhook_sender import WebhookSender

RESOURCE = (resource.GROUP, resource.VERSION, resource.PLURAL)
JOBS = ("batch", "v1", "jobs")
PODS = ("", "v1", "pods")
MANAGED = {naming.LABEL_MANAGED_BY: naming.MANAGED_BY}
# Threads for the handlers, which wait on the API server most of the time (measured at 1,000
# resources created at once: p99 creation -> Job 14.9 s with 16 threads, 9.2 s with 64).
HANDLER_THREADS = 64
# The first resync (the resume) waits this long for the watches to start.
RESUME_DELAY_SECONDS = 5

logger = logging.getLogger(__name__)


def _counted(name: str, metrics: Metrics) -> Callable:
    """Counts a handler's failures; kopf logs them, and the next event or resync tries again."""

    def decorate(handler: Callable) -> Callable:
        @functools.wraps(handler)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return handler(*args, **kwargs)
            except RetryLater as error:
                logger.info("%s; the next resync tries again", error)
                return None
            except Exception:
                metrics.handler_errors.labels(name).inc()
                raise

        return wrapper

    return decorate


def register(
    registry: kopf.OperatorRegistry,
    reconciler: Reconciler,
    operator_settings: OperatorSettings,
    priority: int = 0,
    active: Callable[[], bool] = lambda: True,
) -> None:
    """Register the operator's handlers on `registry`. (kopf passes its own `settings`.) With
    peering, `priority` is this replica's and `active` says whether it is the one that acts."""
    metrics = reconciler.metrics
    webhooks = WebhookSender(reconciler.kube, operator_settings, reconciler.post_event, active)
    cleaner = FinishedRunCleaner(reconciler.kube, operator_settings, active)

    @kopf.on.startup(registry=registry)
    def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        # Watch only our own Jobs and pods, filtered by the API server.
        settings.watching.label_selectors[JOBS] = naming.MANAGED_SELECTOR
        settings.watching.label_selectors[PODS] = naming.MANAGED_SELECTOR
        settings.watching.server_timeout = 300
        settings.watching.client_timeout = 330
        # Only our explicit events reach users; kopf's per-handler chatter stays in the log.
        settings.posting.level = logging.WARNING
        # Watching listed namespaces needs nothing cluster-wide: no CRD or namespace scanning,
        # which would need cluster-wide list/watch rights (and retries a minute without them).
        settings.scanning.disabled = not operator_settings.all_namespaces
        settings.peering.priority = priority
        settings.peering.lifetime = operator_settings.peering_lifetime_seconds
        settings.execution.max_workers = HANDLER_THREADS
        # kopf logs "Handler ... succeeded" at INFO for every watch event it hands us: thousands
        # of lines a minute under load, and CPU. Its warnings and errors still show; what a run
        # does is logged by the reconciler and posted as Events.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)

    @kopf.on.event(*RESOURCE, registry=registry)
    @_counted("resource_event", metrics)
    def resource_changed(
        type: str | None, event: dict[str, Any], namespace: str, name: str, uid: str, **_: Any
    ) -> None:
        deleted = type == "DELETED"
        reconciler.cache.record(event["object"], deleted)
        listed = None if deleted else reconciler.cache.resource(namespace, name)
        phase = ((listed or {}).get("status") or {}).get("phase")
        metrics.observe_phase(uid, phase)
        metrics.observe_run(namespace, name, listed)
        reconciler.track(namespace, name, phase, deleted=deleted)
        if deleted:
            reconciler.release(event["object"])
        if listed is not None and phase is None:
            reconciler.start(namespace, name, listed)
        elif listed is not None and reconciler.suspension_unrecorded(listed):
            reconciler.mirror_watched(namespace, name)  # suspended or resumed: act on it
        if listed is not None:
            webhooks.consider(listed)  # a run that ended: its webhook, if any, is due
            cleaner.consider(listed)  # and its deletion, with a ttlSecondsAfterFinished
        # Runs listed at start-up (or after a lost watch) are resumed by the first resync,
        # which lists everything at once instead of reading each.

    @kopf.on.event(*JOBS, labels=MANAGED, registry=registry)
    @kopf.on.event(*PODS, labels=MANAGED, registry=registry)
    @_counted("child_event", metrics)
    def child_changed(
        type: str | None, event: dict[str, Any], namespace: str, labels: dict[str, str], **_: Any
    ) -> None:
        reconciler.cache.record(event["object"], deleted=type == "DELETED")
        owner = labels.get(naming.LABEL_TRAINING_JOB)
        if owner and type is not None:  # a listing is the resync's to act on
            reconciler.mirror_watched(namespace, owner)

    @kopf.on.startup(registry=registry)
    def start_webhooks(**_: Any) -> None:
        webhooks.start()
        cleaner.start()

    @kopf.on.startup(registry=registry)
    async def start_resync(memo: kopf.Memo, **_: Any) -> None:
        memo["resync"] = asyncio.create_task(_resync_forever(reconciler, operator_settings, active))

    @kopf.on.startup(registry=registry)
    async def start_progress_endpoint(memo: kopf.Memo, **_: Any) -> None:
        if operator_settings.progress_port:
            memo["progress"] = await serve_progress(
                reconciler.kube, operator_settings, operator_settings.progress_port
            )

    @kopf.on.cleanup(registry=registry)
    def stop_webhooks(**_: Any) -> None:
        webhooks.stop()
        cleaner.stop()

    @kopf.on.cleanup(registry=registry)
    async def stop_resync(memo: kopf.Memo, **_: Any) -> None:
        task = memo.get("resync")
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        if memo.get("progress") is not None:
            await memo["progress"].cleanup()


async def _resync_forever(
    reconciler: Reconciler, settings: OperatorSettings, active: Callable[[], bool]
) -> None:
    """Re-mirror unfinished resources now and then: time-based failures (an image that never
    pulls) and events missed while disconnected. A kopf timer would do it too, but would put a
    finalizer on every resource, making deletion wait for a running operator. A standby
    replica (kopf paused it) skips its rounds. The first round, soon after start-up, resumes
    the runs that went on while no operator watched."""
    delay = min(settings.resync_seconds, RESUME_DELAY_SECONDS)
    while True:
        await asyncio.sleep(delay)
        delay = settings.resync_seconds
        if await asyncio.to_thread(active):
            await asyncio.to_thread(reconciler.resync)
