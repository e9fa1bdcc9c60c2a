"""`fluxlora-operator`: parse the settings, then run the kopf operator."""

import logging
from collections.abc import Sequence
from typing import Any

import kopf

from fluxlora_kube.client import Kube, load_api_client
from fluxlora_operator.events import EventPoster
from fluxlora_operator.handlers import HANDLER_THREADS, register
from fluxlora_operator.metrics import Metrics
from fluxlora_operator.peering import PeeringGate, replica_identity, replica_priority
from fluxlora_operator.reconciler import Reconciler
from fluxlora_operator.settings import OperatorSettings, load_settings


def main(argv: Sequence[str] | None = None) -> int:
    settings = load_settings(argv)
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    metrics = Metrics()
    if settings.metrics_port:
        metrics.serve(settings.metrics_port)
    # One connection per handler thread, and some for the resync, the Event poster and the
    # progress endpoint.
    kube = Kube(load_api_client(connections=HANDLER_THREADS + 8))
    reconciler = Reconciler(kube, settings, metrics, EventPoster(kube))
    registry = kopf.OperatorRegistry()
    priority = replica_priority(settings)
    gate = PeeringGate(kube, settings, replica_identity(), priority)
    register(registry, reconciler, settings, priority, gate)
    # A registry of our own starts without kopf's default login: use the same credentials as
    # the client (in-cluster service account, else the kubeconfig).
    kopf.on.login(registry=registry)(kopf.login_via_client)
    kopf.run(registry=registry, **operator_options(settings))
    return 0


def operator_options(settings: OperatorSettings) -> dict[str, Any]:
    """kopf's run options for these settings: watched namespaces, peering, liveness."""
    liveness = f"http://0.0.0.0:{settings.health_port}/healthz" if settings.health_port else None
    return {
        "clusterwide": settings.all_namespaces,
        "namespaces": settings.namespaces,
        "standalone": settings.peering is None,
        "peering_name": settings.peering,
        "liveness_endpoint": liveness,
    }


if __name__ == "__main__":
    raise SystemExit(main())
