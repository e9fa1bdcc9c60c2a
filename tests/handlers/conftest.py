"""A Kubernetes API (kmock-based) and the operator's reconciler wired to it."""

import asyncio
from dataclasses import dataclass, field
from typing import Any

import kubernetes
import pytest

from fluxlora_api import resource
from fluxlora_kube.client import Kube
from fluxlora_kube.paths import path
from fluxlora_localcluster.emulator import ApiServerEmulator
from fluxlora_localcluster.training_site import submit
from fluxlora_operator import naming
from fluxlora_operator.events import Event
from fluxlora_operator.metrics import Metrics
from fluxlora_operator.reconciler import Reconciler
from fluxlora_operator.settings import OperatorSettings

NAMESPACE = "team-a"
SETTINGS = OperatorSettings(
    default_output="s3://loras", trainer_image="trainer:test", resync_seconds=1, progress_port=0
)


@dataclass
class Cluster:
    """What a user and the cluster's controllers do, over HTTP, as blocking calls in a thread."""

    kube: Kube
    reconciler: Reconciler
    events: list[tuple[str, Event]] = field(default_factory=list)

    async def call(self, fn, *args: Any) -> Any:
        return await asyncio.to_thread(fn, *args)

    async def apply(self, body: dict[str, Any]) -> dict[str, Any]:
        url = path(body["kind"], body["metadata"].get("namespace", NAMESPACE))
        return await self.call(self.kube.request, "POST", url, body)

    async def submit(
        self, name: str = "portrait", namespace: str = NAMESPACE, **spec: Any
    ) -> dict[str, Any]:
        return await asyncio.to_thread(submit, self.kube, namespace, name, **spec)

    async def get(self, kind: str, name: str) -> dict[str, Any] | None:
        return await self.call(self.kube.get, kind, NAMESPACE, name)

    async def status(self, name: str) -> dict[str, Any]:
        return (await self.get(resource.KIND, name) or {}).get("status") or {}

    async def jobs(self) -> list[dict[str, Any]]:
        return await self.call(self.kube.list_objects, "Job", NAMESPACE, naming.MANAGED_SELECTOR)

    async def patch(self, kind: str, name: str, patch: dict[str, Any]) -> None:
        await self.call(
            self.kube.request,
            "PATCH",
            path(kind, NAMESPACE, name),
            patch,
            None,
            "application/merge-patch+json",
        )

    async def delete(self, kind: str, name: str) -> None:
        await self.call(self.kube.delete, kind, NAMESPACE, name)

    async def start(self, name: str) -> None:
        await self.call(self.reconciler.start, NAMESPACE, name)

    async def mirror(self, name: str) -> None:
        await self.call(self.reconciler.mirror, NAMESPACE, name)


def make_cluster(apiserver: ApiServerEmulator, settings: OperatorSettings) -> Cluster:
    config = kubernetes.client.Configuration(host=str(apiserver.url).rstrip("/"))
    kube = Kube(kubernetes.client.ApiClient(config))
    cluster = Cluster(kube, None)  # type: ignore[arg-type]
    cluster.reconciler = Reconciler(
        kube,
        settings,
        Metrics(),
        lambda body, event: cluster.events.append((body["metadata"]["name"], event)),
    )
    return cluster


@pytest.fixture
def cluster(apiserver: ApiServerEmulator) -> Cluster:
    return make_cluster(apiserver, SETTINGS)
