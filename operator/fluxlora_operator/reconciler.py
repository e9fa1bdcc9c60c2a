"""Reconciles one LoRATrainingJob: starts its trainer Job and mirrors the Job into the status.

Every step reads the resource (or, in a resync, a snapshot guarded by its resourceVersion) and
is idempotent, so a restart at any point converges: a child that exists is adopted, never made
twice. Kopf stays out of this module (the handlers wrap it), so it runs the same against any API
server.
"""

import logging
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

from fluxlora_api import resource
from fluxlora_api.outputs import snapshot_outputs, snapshot_steps, standard_outputs
from fluxlora_api.status import (
    ConditionType,
    Reason,
    failure_status,
    initial_status,
    is_finished,
    phase_of,
    status_fields,
)
from fluxlora_kube.client import ApiError, ForeignObjectError, Kube
from fluxlora_operator import naming
from fluxlora_operator.clock import format_time, parse_time, utcnow
from fluxlora_operator.coalesce import Coalescer
from fluxlora_operator.events import Event
from fluxlora_operator.metrics import Metrics
from fluxlora_operator.mirror.conditions import ConditionChange, find_condition
from fluxlora_operator.mirror.observe import job_finished, observe
from fluxlora_operator.mirror.status_plan import apply_conditions, plan_status_update
from fluxlora_operator.settings import OperatorSettings
from fluxlora_operator.snapshot import Snapshot, StaleSnapshot
from fluxlora_operator.start.custom_resource import InvalidSpec, TrainingJobRef, parse_spec
from fluxlora_operator.start.run_settings import resolve_output_folder
from fluxlora_operator.start.trainer_job import build_job
from fluxlora_operator.watch_cache import WatchCache

logger = logging.getLogger(__name__)

PostEvent = Callable[[dict[str, Any], Event], None]
POD_CREATION_GRACE_SECONDS = 5.0


class RetryLater(Exception):
    """Nothing is wrong with the resource, but the cluster is not ready for it yet: the next
    resync round tries again."""


class Reconciler:
    def __init__(
        self,
        kube: Kube,
        settings: OperatorSettings,
        metrics: Metrics,
        post_event: PostEvent,
        cache: WatchCache | None = None,
    ) -> None:
        self.kube = kube
        self.settings = settings
        self.metrics = metrics
        self.post_event = post_event
        self._locks: dict[tuple[str, str], threading.RLock] = {}
        self._locks_guard = threading.Lock()
        self._unfinished: set[tuple[str, str]] = set()
        self.cache = cache if cache is not None else WatchCache()
        self._coalescer = Coalescer()

    def _lock(self, namespace: str, name: str) -> threading.RLock:
        # Job, pod and resync events of one resource arrive on different threads; each
        # read-decide-write cycle must see the previous one's result.
        with self._locks_guard:
            return self._locks.setdefault((namespace, name), threading.RLock())

    def track(self, namespace: str, name: str, phase: str | None, deleted: bool = False) -> None:
        """Remember which resources are unfinished, for resync()."""
        key = (namespace, name)
        with self._locks_guard:
            if deleted or is_finished({"phase": phase}):
                self._unfinished.discard(key)
            else:
                self._unfinished.add(key)
            if deleted:
                self._locks.pop(key, None)

    def release(self, deleted: dict[str, Any]) -> None:
        """A deleted resource's trainer Job is deleted at once, not when Kubernetes' garbage
        collector gets to it: that can be many seconds behind on a busy cluster, and it does
        not see a new kind's objects until its next discovery (up to 30 s after the CRD is
        installed). The pod's SIGTERM then stops the trainer and frees the GPU; the collector
        stays the backstop where no operator runs. Only the Job this resource controls (a new
        resource of the same name may have made one already)."""
        ref = TrainingJobRef.of(deleted)
        job = self.cache.view(ref.namespace, ref.name).jobs.get(naming.job_name(ref.name))
        if job is None or job["metadata"].get("deletionTimestamp") or not ref.owns(job):
            return
        logger.info("%s/%s deleted: removing its trainer Job", ref.namespace, ref.name)
        self.kube.delete("Job", ref.namespace, job["metadata"]["name"], job["metadata"]["uid"])

    def resync(self) -> None:
        """Mirror every unfinished resource; one failing never stops the others. Each namespace
        costs four list calls per round, not three or four per resource: the resources, Jobs,
        pods and FailedCreate Events are listed once, and writes from that snapshot are made
        only if nobody changed the resource since (resourceVersion), else it is mirrored
        afresh. A resource whose start failed (it has no status) is started again."""
        with self._locks_guard:
            keys = sorted(self._unfinished)
        names_by_namespace: dict[str, list[str]] = {}
        for namespace, name in keys:
            names_by_namespace.setdefault(namespace, []).append(name)
        for namespace, names in names_by_namespace.items():
            try:
                snapshot = Snapshot.of(self.kube, namespace)
            except Exception:
                self.metrics.handler_errors.labels("resync").inc()
                logger.exception("resync of namespace %s failed; retrying next round", namespace)
                continue
            for name in names:
                try:
                    self.mirror(namespace, name, snapshot=snapshot, start_unstarted=True)
                except RetryLater as error:
                    logger.info("%s/%s waits: %s", namespace, name, error)
                except Exception:
                    self.metrics.handler_errors.labels("resync").inc()
                    logger.exception("resync of %s/%s failed; retrying next round", namespace, name)

    # --- starting -----------------------------------------------------------------------------

    def start(self, namespace: str, name: str, listed: dict[str, Any] | None = None) -> None:
        """Give a new (or resumed) resource its status and Job. `listed` is the resource as a
        watch event or a resync showed it: it saves a read, and what is decided from it is
        written only to that version of it (else decided again from a fresh read)."""
        with self._lock(namespace, name):
            try:
                created = self._start_once(namespace, name, listed)
            except StaleSnapshot:
                created = self._start_once(namespace, name, None)
        if created is False:
            # A Job found on resume may have run meanwhile; a new one has nothing to show yet
            # (its own watch events mirror it).
            self.mirror(namespace, name, may_start=False)

    def _start_once(self, namespace: str, name: str, listed: dict[str, Any] | None) -> bool | None:
        """Make or adopt the Job, then record it with the first status in one write: True if
        made, False if adopted, None if there is nothing to run."""
        body = listed if listed is not None else self.kube.get(resource.KIND, namespace, name)
        guarded = listed is not None
        if body is None or is_finished(body.get("status")):
            return None
        ref = TrainingJobRef.of(body)
        try:
            spec = parse_spec(body.get("spec") or {})
            job = build_job(ref, spec, self.settings)
        except InvalidSpec as error:
            self._fail(body, Reason.INVALID_SPEC, str(error), guarded)
            return None

        status = body.get("status") or {}
        first = {}
        if phase_of(status) is None:
            meta = body["metadata"]
            first = initial_status(
                ref.uid, spec.base_model, meta["creationTimestamp"], meta.get("generation")
            )
        if spec.suspend:  # made suspended: a status, and a Job only once resumed
            written = self._write(body, first, [], guarded) if first else body
            self._record_suspension(written or body, True, False)
            return None
        try:
            _, created = self.kube.create_or_adopt(job, ref.owns, f"{resource.KIND} {name}")
        except ForeignObjectError as error:
            conflict = ConditionChange(
                ConditionType.JOB_CREATED, "False", Reason.NAME_CONFLICT, str(error), warning=True
            )
            self._condition(body, conflict, first, guarded)
            raise RetryLater(str(error)) from None
        except ApiError as error:
            if error.status in (400, 422):
                message = f"the API server rejected the trainer Job: {error.message}"
                self._fail(body, Reason.JOB_REJECTED, message, guarded)
                return None
            raise

        job_name = job["metadata"]["name"]
        if created:
            self.metrics.jobs_created.inc()
            logger.info("%s/%s: created the trainer Job %s", namespace, name, job_name)
        recorded = find_condition(status.get("conditions") or [], ConditionType.JOB_CREATED)
        if created or recorded is None or recorded.get("status") != "True":
            # A Job found on resume that the status does not know yet was ours: adopt it.
            reason, verb = (
                (Reason.JOB_CREATED, "created") if created else (Reason.JOB_ADOPTED, "adopted")
            )
            change = ConditionChange(
                ConditionType.JOB_CREATED, "True", reason, f"trainer Job {job_name} {verb}"
            )
            self._condition(body, change, {**first, **status_fields(job_name=job_name)}, guarded)
        return created

    # --- mirroring ----------------------------------------------------------------------------

    def mirror(
        self,
        namespace: str,
        name: str,
        may_start: bool = True,
        snapshot: Snapshot | None = None,
        start_unstarted: bool = False,
    ) -> None:
        """Read the Job and its pods and write what they mean into the status; start the Job
        again if it vanished before the run ended (unless called from start() itself). The Job
        is released (its finalizer taken off) once how it ended is recorded. With a
        `snapshot` (a resync's listing, or the watch cache), nothing is read again unless the
        resource changed since. `start_unstarted` also starts a resource that has no status
        yet (a resync retrying a start that failed)."""
        listed = snapshot if snapshot is not None and name in snapshot.resources else None
        try:
            needs_start = self._mirror_once(namespace, name, listed, start_unstarted)
        except StaleSnapshot:
            listed = None
            needs_start = self._mirror_once(namespace, name, None, start_unstarted)
        if needs_start and may_start:
            self.start(namespace, name, listed.resources[name] if listed is not None else None)

    def mirror_watched(self, namespace: str, name: str) -> None:
        """Mirror from what the watches showed (no reads), once for any number of events that
        arrive while a mirror of the same resource runs. A Job whose resource the watch does
        not show (deleted, or not listed yet) is looked up, to be let go if its resource is
        gone."""

        def work() -> None:
            view = self.cache.view(namespace, name)
            if view.resources:
                self.mirror(namespace, name, snapshot=view)
            elif view.jobs:
                self.mirror(namespace, name, may_start=False)

        self._coalescer.run((namespace, name), work)

    def _mirror_once(
        self, namespace: str, name: str, snapshot: Snapshot | None, start_unstarted: bool
    ) -> bool:
        """One read-decide-write cycle; True when the Job must be made (again)."""
        job_name = naming.job_name(name)
        with self._lock(namespace, name):
            body: dict[str, Any] | None
            if snapshot is not None:
                body = snapshot.resources[name]
            else:
                body = self.kube.get(resource.KIND, namespace, name)
                if body is None:
                    self.cache.forget(namespace, name)
            phase = phase_of((body or {}).get("status"))
            if body is None or is_finished(body.get("status")):
                # Gone (the garbage collector deletes the Job) or recorded: let the Job go
                # (one a snapshot does not show is gone, or its own event comes).
                if snapshot is None or job_name in snapshot.jobs:
                    known = snapshot.jobs[job_name] if snapshot is not None else None
                    self.kube.remove_finalizer(
                        "Job", namespace, job_name, naming.RESULT_FINALIZER, known
                    )
                return False
            if phase is None:
                # Being started by its own event (and start() mirrors when done), unless that
                # failed: a resync starts what is still unstarted a round after its creation.
                return start_unstarted and _age_seconds(body) >= self.settings.resync_seconds
            ref = TrainingJobRef.of(body)
            if snapshot is not None:
                job = snapshot.jobs.get(job_name)
            else:
                job = self.kube.get("Job", namespace, job_name)
            suspended = bool((body.get("spec") or {}).get("suspend"))
            body = self._record_suspension(body, suspended, snapshot is not None)
            if job is None:
                if suspended:
                    return False  # resumed by a new Job when spec.suspend is false again
                if snapshot is not None:
                    raise StaleSnapshot  # listed before its Job was made, perhaps: look again
                logger.info("trainer Job of %s/%s is gone; creating it again", namespace, name)
                return True
            if not ref.owns(job):
                return False  # a predecessor's Job still being deleted; start() reports it
            if suspended and not job["metadata"].get("deletionTimestamp"):
                # Its pod gets SIGTERM: the trainer checkpoints the step it is on, then goes.
                logger.info("%s/%s suspended: removing its trainer Job", namespace, name)
                self.kube.delete("Job", namespace, job_name)
            pods = snapshot.pods_of(job) if snapshot is not None else self.kube.job_pods(job)
            if snapshot is not None and not pods and job_finished(job):
                # The pod holds the result; its watch (or listing) may lag the Job's.
                raise StaleSnapshot
            self._mirror_job(body, ref, job, pods, snapshot)
            return False

    def _mirror_job(
        self,
        body: dict[str, Any],
        ref: TrainingJobRef,
        job: dict[str, Any],
        pods: list[dict[str, Any]],
        snapshot: Snapshot | None,
    ) -> None:
        status = body.get("status") or {}
        now = utcnow()
        spec = parse_spec(body.get("spec") or {})
        # The Job controller's FailedCreate Events do not change the Job, so only a resync can
        # see them (listed once per namespace), for a Job without a pod for a while.
        failures = snapshot.pod_creation_failures if snapshot is not None else {}
        failure = (
            failures.get(job["metadata"]["uid"]) if not pods and _job_overdue(job, now) else None
        )
        snapshots = snapshot_steps(spec.steps, spec.save_every_steps)
        observation = observe(
            job,
            pods,
            now,
            self.settings.image_pull_grace_seconds,
            # Where this run's outputs must be: from the spec and settings, never the status.
            resolve_output_folder(spec, self.settings, ref),
            failure,
            standard_outputs(len(spec.sample_prompts or []), snapshots),
            snapshot_outputs(snapshots),
        )
        update = plan_status_update(
            status, observation, format_time(now), body["metadata"].get("generation")
        )
        if update.patch:
            self._write(body, update.patch, list(update.events), snapshot is not None)
        if update.delete_job:
            self.kube.delete("Job", ref.namespace, job["metadata"]["name"])
        ended = observation.phase.terminal
        deleted_mid_run = job["metadata"].get("deletionTimestamp") and not ended
        if ended or deleted_mid_run:  # recorded, or going anyway (and made again when gone)
            self.kube.remove_finalizer(
                "Job", ref.namespace, job["metadata"]["name"], naming.RESULT_FINALIZER, job
            )

    # --- writing ------------------------------------------------------------------------------

    def _write(
        self,
        body: dict[str, Any],
        patch: dict[str, Any],
        events: list[Event],
        from_snapshot: bool = False,
    ) -> dict[str, Any]:
        """Patch the status and return the resource as written; a write decided from a snapshot
        applies only to the resource as it was listed (StaleSnapshot otherwise, also when it
        is gone)."""
        meta = body["metadata"]
        before = phase_of(body.get("status"))
        version = meta.get("resourceVersion") if from_snapshot else None
        try:
            written = self.kube.patch_status(
                resource.KIND, meta["namespace"], meta["name"], patch, version
            )
        except ApiError as error:
            if version is not None and error.status in (404, 409):
                raise StaleSnapshot from None
            raise
        if written:
            self.cache.record(written)  # the next event's mirror starts from this version
        after = patch.get("phase")
        if after and (before is None or after != before.value):
            self.metrics.transitions.labels(after).inc()
        for event in events:
            try:
                self.post_event(body, event)
            except Exception:  # an Event is a courtesy; losing one must not stop the mirror
                logger.exception("could not post event %s", event.reason)
        return written or body

    def _condition(
        self,
        body: dict[str, Any],
        change: ConditionChange,
        extra: dict[str, Any] | None = None,
        from_snapshot: bool = False,
    ) -> dict[str, Any]:
        """Write `change` (and `extra`) unless the status says so already; the resource as it
        is now."""
        status = body.get("status") or {}
        now = format_time(utcnow())
        conditions, events = apply_conditions(
            status, (change,), now, body["metadata"].get("generation")
        )
        patch = dict(extra or {})
        if conditions is not None:
            patch["conditions"] = conditions
        if any(status.get(key) != value for key, value in patch.items()):
            return self._write(body, patch, events, from_snapshot)
        return body

    @staticmethod
    def suspension_unrecorded(body: dict[str, Any]) -> bool:
        """Whether spec.suspend changed since the status last said (a run to stop or go on)."""
        status = body.get("status") or {}
        if phase_of(status) is None or is_finished(status):
            return False
        recorded = find_condition(status.get("conditions") or [], ConditionType.SUSPENDED)
        was_suspended = recorded is not None and recorded.get("status") == "True"
        return bool((body.get("spec") or {}).get("suspend")) != was_suspended

    def _record_suspension(
        self, body: dict[str, Any], suspended: bool, guarded: bool
    ) -> dict[str, Any]:
        """The Suspended condition, as spec.suspend says (a run never suspended has none); the
        resource as it is now, for the rest of the cycle to write over."""
        recorded = find_condition(
            (body.get("status") or {}).get("conditions") or [], ConditionType.SUSPENDED
        )
        if suspended and (recorded is None or recorded.get("status") != "True"):
            message = "suspended: the trainer checkpoints its step; its Job and pod are removed"
            change = ConditionChange(ConditionType.SUSPENDED, "True", Reason.SUSPENDED, message)
            return self._condition(body, change, from_snapshot=guarded)
        if not suspended and recorded is not None and recorded.get("status") == "True":
            message = "resumed: a new trainer Job goes on from the checkpoint"
            change = ConditionChange(ConditionType.SUSPENDED, "False", Reason.RESUMED, message)
            return self._condition(body, change, from_snapshot=guarded)
        return body

    def _fail(
        self, body: dict[str, Any], reason: Reason, message: str, from_snapshot: bool = False
    ) -> None:
        """End the resource as failed before any Job ran (the spec or settings cannot work)."""
        status = body.get("status") or {}
        now = format_time(utcnow())
        change = ConditionChange(ConditionType.FAILED, "True", reason, message, warning=True)
        meta = body["metadata"]
        conditions, events = apply_conditions(status, (change,), now, meta.get("generation"))
        patch = failure_status(status, meta["uid"], meta["creationTimestamp"], message, now)
        patch["conditions"] = conditions or status.get("conditions") or []
        self._write(body, patch, events, from_snapshot)


def _age_seconds(obj: dict[str, Any], now: datetime | None = None) -> float:
    created = obj["metadata"].get("creationTimestamp")
    if not created:
        return float("inf")
    return ((now or utcnow()) - parse_time(created)).total_seconds()


def _job_overdue(job: dict[str, Any], now: datetime) -> bool:
    """Running (not suspended, neither complete nor failed) for POD_CREATION_GRACE_SECONDS."""
    if job["spec"].get("suspend") or not job["metadata"].get("creationTimestamp"):
        return False
    return _age_seconds(job, now) >= POD_CREATION_GRACE_SECONDS and not job_finished(job)
