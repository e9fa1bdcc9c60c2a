"""Prometheus metrics of the operator: resources by phase, transitions, handler errors."""

import threading

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

    def serve(self, port: int) -> None:
        start_http_server(port, registry=self.registry)
