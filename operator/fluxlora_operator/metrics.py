"""Prometheus metrics of the operator: resources by phase, transitions, handler errors, and
each unfinished or finished run's own series (step, loss, ETA, throughput, phase), labelled by
namespace and name and removed when its resource goes, so no series goes stale."""

import threading
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from fluxlora_api.status import Phase


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.resources = Gauge(
            "fluxlora_loratrainingjobs",
            "LoRATrainingJobs seen by this operator, by phase",
            ["phase"],
            registry=self.registry,
        )
        self.transitions = Counter(
            "fluxlora_phase_transitions",
            "Phase changes written by this operator, by the phase entered",
            ["phase"],
            registry=self.registry,
        )
        self.jobs_created = Counter(
            "fluxlora_trainer_jobs_created", "Trainer Jobs created", registry=self.registry
        )
        self.handler_errors = Counter(
            "fluxlora_handler_errors",
            "Handler runs that raised, by handler",
            ["handler"],
            registry=self.registry,
        )
        run = ["namespace", "name"]
        self.run_step = Gauge(
            "fluxlora_run_step", "Steps a run has trained", run, registry=self.registry
        )
        self.run_total_steps = Gauge(
            "fluxlora_run_total_steps", "Steps a run trains in all", run, registry=self.registry
        )
        self.run_loss = Gauge(
            "fluxlora_run_loss", "A run's smoothed training loss", run, registry=self.registry
        )
        self.run_eta = Gauge(
            "fluxlora_run_eta_seconds", "Seconds until a run's training ends", run,
            registry=self.registry,
        )  # fmt: skip
        self.run_samples_per_second = Gauge(
            "fluxlora_run_samples_per_second",
            "Images a run trains on per second, over all its GPUs",
            run,
            registry=self.registry,
        )
        self.run_phase = Gauge(
            "fluxlora_run_phase", "1 for the phase a run is in", [*run, "phase"],
            registry=self.registry,
        )  # fmt: skip
        self._run_series: dict[tuple[str, str], list[tuple[Gauge, tuple[str, ...]]]] = {}
        self._phases: dict[str, str] = {}
        self._lock = threading.Lock()
        for phase in Phase:
            self.resources.labels(phase.value).set(0)

    def observe_phase(self, uid: str, phase: str | None) -> None:
        """Record the phase of one resource (None: deleted, or not yet given one)."""
        with self._lock:
            previous = self._phases.pop(uid, None)
            if previous is not None:
                self.resources.labels(previous).dec()
            if phase is not None:
                self._phases[uid] = phase
                self.resources.labels(phase).inc()

    def observe_run(self, namespace: str, name: str, body: dict[str, Any] | None) -> None:
        """One run's series from its resource (None: deleted, its series removed)."""
        key = (namespace, name)
        with self._lock:
            for gauge, labels in self._run_series.pop(key, []):
                gauge.remove(*labels)
            if body is None:
                return
            status, spec = body.get("status") or {}, body.get("spec") or {}
            progress = status.get("progress") or {}
            values: list[tuple[Gauge, tuple[str, ...], float | None]] = [
                (self.run_step, key, progress.get("step")),
                (self.run_total_steps, key, progress.get("totalSteps") or spec.get("steps")),
                (self.run_loss, key, progress.get("loss")),
                (self.run_eta, key, progress.get("etaSeconds")),
                (self.run_samples_per_second, key, _samples_per_second(spec, progress)),
            ]
            if status.get("phase"):
                values.append((self.run_phase, (*key, status["phase"]), 1))
            series = []
            for gauge, labels, value in values:
                if value is not None:
                    gauge.labels(*labels).set(value)
                    series.append((gauge, labels))
            self._run_series[key] = series

    def serve(self, port: int) -> None:
        start_http_server(port, registry=self.registry)


def _samples_per_second(spec: dict[str, Any], progress: dict[str, Any]) -> float | None:
    """Images per second, from the trainer's ETA: steps left over seconds left, times the
    images a step trains on (batchSize on each GPU)."""
    left, eta = (
        (progress.get("totalSteps") or 0) - (progress.get("step") or 0),
        progress.get("etaSeconds"),
    )
    if not eta or left <= 0:
        return None
    return left / eta * (spec.get("batchSize") or 1) * (spec.get("gpus") or 1)
