"""Fixtures of the real-control-plane tests."""

import asyncio
import json
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass

import pytest

from fluxlora_api import resource
from fluxlora_gateway.keys import new_key
from fluxlora_kube.client import ApiError, Kube
from fluxlora_kube.paths import path
from fluxlora_localcluster.control_plane import ControlPlane
from fluxlora_localcluster.gateway_client import GatewayClient
from fluxlora_localcluster.images import ensure_images
from fluxlora_localcluster.minio import S3Server, free_port, running_minio
from fluxlora_localcluster.node import Node, running_node
from fluxlora_localcluster.node_network import ensure_host_address
from fluxlora_localcluster.operator import embedded_operator, settings_from
from fluxlora_localcluster.processes import stop
from fluxlora_localcluster.training_site import (
    GATEWAY_SPEC_DEFAULTS,
    MODEL_PATH,
    create_namespace,
    model_cache_claim,
    operator_environment,
    store_credentials,
    submit,
)
from fluxlora_localcluster.waiting import eventually
from fluxlora_operator import naming

# The real node is tainted: only the pods of the tests that mean to run there tolerate it, so
# that the operator tests' pods (test_operator.py) stay Pending as in a cluster without a free
# GPU, whatever ran earlier on the same control plane.
REAL_NODE_TAINT = "fluxlora.dev/real-node"
# A run a test interrupts (suspends, evicts, preempts, deletes) once it has trained a while: long
# enough that the interruption lands mid-training, though the tiny model takes ~10 ms a step.
# With progress reported every second (the site's), a test that waits for step 100 sees it by
# about step 200, and the interruption has landed some 50 steps later.
INTERRUPTED_RUN_STEPS = 1000
REAL_NODE_TOLERATION = {"key": REAL_NODE_TAINT, "operator": "Exists", "effect": "NoSchedule"}
# The gateway's per-key rate limit in the tests (requests a second, and a burst).
RATE_LIMIT, RATE_BURST = 5, 30


@pytest.fixture(scope="session")
def images() -> tuple[str, ...]:
    """The project's images in the cluster's registry (`make test` has built and pushed them:
    this finds them)."""
    return ensure_images()


@pytest.fixture(scope="session")
def real_node(
    control_plane: ControlPlane, images: tuple[str, ...], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Node]:
    """A real node (containerd, kubelet, kube-proxy) with both images and one GPU."""
    with running_node(
        control_plane,
        tmp_path_factory.mktemp("real-node"),
        name="gpu-node-2",
        images=images,
        taints=(f"{REAL_NODE_TAINT}=true:NoSchedule",),
    ) as node:
        yield node


@pytest.fixture(scope="session")
def host_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """MinIO at the host address, where a real node's pods reach it."""
    with running_minio(tmp_path_factory.mktemp("host-minio") / "data", ensure_host_address()) as s3:
        yield s3


@pytest.fixture
def gateway(
    request, control_plane, cluster_admin, namespace, host_s3, tmp_path
) -> Iterator[GatewayClient]:
    """The gateway; a test may pass extra flags by indirect parametrization."""
    port = free_port()
    uploads = f"s3://uploads-{uuid.uuid4().hex[:8]}/uploads"
    host_s3.client().create_bucket(Bucket=uploads.removeprefix("s3://").split("/")[0])
    environment = {
        "PATH": "/usr/bin:/bin",
        "KUBECONFIG": str(control_plane.kubeconfig),
        **host_s3.environment(),  # for streaming outputs
    }
    command = [
        sys.executable, "-m", "fluxlora_gateway.main", "serve",
        "--host", "127.0.0.1", "--port", str(port),
        "--key-namespace", namespace, "--reload-seconds", "0.5",
        "--spec-defaults", json.dumps(GATEWAY_SPEC_DEFAULTS),
        "--rate-limit", str(RATE_LIMIT), "--rate-burst", str(RATE_BURST),
        "--uploads-prefix", uploads,
        *getattr(request, "param", ()),
    ]  # fmt: skip
    log = tmp_path / "gateway.log"
    with log.open("wb") as output:
        process = subprocess.Popen(command, env=environment, stdout=output, stderr=output)
    gateway = GatewayClient(f"http://127.0.0.1:{port}", cluster_admin, namespace, uploads)
    try:
        if not gateway.ready(lambda: process.poll() is None):
            raise AssertionError(f"the gateway did not start:\n{log.read_text()}")
        yield gateway
    finally:
        stop(process)
    logged = log.read_text()
    assert "Bearer" not in logged and "flk_" not in logged  # no keys logged
    # Nor the capabilities in URLs: upload tickets, webhook URLs (their receivers' tokens).
    assert not re.search(r"/api/v3/media/uploads/[A-Za-z0-9_-]{16,}", logged)
    assert "webhook=" not in logged


@pytest.fixture
def two_tenants(gateway, cluster_admin, namespace) -> Iterator[tuple[str, str, str]]:
    """Two keys: one for `namespace`, one for a second namespace; and that namespace."""
    other = f"{namespace}-b"
    create_namespace(cluster_admin, other)
    mine, theirs = new_key(), new_key()
    gateway.set_keys(a=(mine, namespace), b=(theirs, other))
    yield mine, theirs, other
    cluster_admin.request("DELETE", path("Namespace", name=other))


@dataclass
class Site:
    """A namespace ready to train in: credentials, model cache, a bucket, a running operator."""

    plane: ControlPlane
    kube: Kube
    namespace: str
    bucket: str
    s3: object
    operator: Callable[[], AbstractAsyncContextManager] = None  # runs the site's operator

    def submit(self, name: str, data_key: str, **spec) -> None:
        """A short run of the tiny model on a dataset in the site's bucket."""
        defaults = {"baseModel": MODEL_PATH, "steps": 500, "resolution": 256}
        data = f"s3://{self.bucket}/{data_key}"
        fields = {**defaults, "checkpointEverySteps": 0, "data": data, **spec}
        submit(self.kube, self.namespace, name, **fields)

    def logs(self, name: str) -> str:
        """What every pod of the resource's Job still on the node wrote, as `kubectl logs`
        reads it from the kubelet; a pod whose trainer never started (one the node refused at
        admission) wrote nothing."""
        selector = f"{naming.LABEL_TRAINING_JOB}={name}"
        written = []
        for pod in self.kube.list_objects("Pod", self.namespace, selector):
            started = [
                s for s in pod["status"].get("containerStatuses") or [] if s.get("containerID")
            ]
            if not started:
                continue
            pod_name = pod["metadata"]["name"]
            done = self.plane.kubectl("logs", "-n", self.namespace, pod_name, "--tail", "-1")
            assert done.returncode == 0, done.stderr
            written.append(done.stdout)
        return "".join(written)

    def suspend(self, name: str, suspended: bool = True) -> None:
        """`kubectl patch ltj NAME --type=merge -p '{"spec":{"suspend":...}}'`, as documented."""
        self.kube.request(
            "PATCH", path(resource.KIND, self.namespace, name), {"spec": {"suspend": suspended}},
            content_type="application/merge-patch+json",
        )  # fmt: skip

    def status(self, name: str) -> dict:
        return (self.kube.get(resource.KIND, self.namespace, name) or {}).get("status") or {}

    async def until(self, name: str, check: Callable[[dict], object], what: str, timeout: float):
        """eventually(check(status)); past `timeout`, the failure says why: the run's
        conditions, and every pod of the cluster (which one holds the node's GPU)."""
        try:
            return await eventually(lambda: check(self.status(name)), what, timeout)
        except AssertionError as error:
            conditions = [
                (c["type"], c["status"], c.get("reason"), c.get("message"))
                for c in self.status(name).get("conditions") or []
            ]
            pods = [
                f"{p['metadata']['namespace']}/{p['metadata']['name']} "
                f"{p['status'].get('phase')} on {p['spec'].get('nodeName')}"
                for p in self.kube.request("GET", path("Pod"))["items"]
            ]
            raise AssertionError(f"{error}\nconditions: {conditions}\npods: {pods}") from None

    async def final(self, name: str, timeout: float = 400) -> dict:
        """The run's status once it is `completed` or `failed`. Watched, not polled: a run with
        a short TTL can be deleted a moment after it ends, and the deletion's event still
        carries its last status."""
        return await asyncio.to_thread(self._watch_until_ended, name, timeout)

    def _watch_until_ended(self, name: str, timeout: float) -> dict:
        url = path(resource.KIND, self.namespace)
        selector = {"fieldSelector": f"metadata.name={name}"}
        deadline = time.monotonic() + timeout
        version = None
        while time.monotonic() < deadline:
            try:
                if version is None:
                    listing = self.kube.request("GET", url, query=selector)
                    changes = [("LISTED", run) for run in listing["items"]]
                    version = listing["metadata"]["resourceVersion"]
                else:
                    changes = self.kube.watch(url, {**selector, "resourceVersion": version})
                for _, run in changes:
                    version = run["metadata"]["resourceVersion"]
                    if (run.get("status") or {}).get("phase") in ("completed", "failed"):
                        return run["status"]
            except ApiError as error:  # 410: too old to resume from, list again
                if error.status != 410:
                    raise
                version = None
        raise AssertionError(f"not within {timeout}s: {name} ends ({self.status(name)})")


@pytest.fixture
def quiet_site(request, control_plane, cluster_admin, namespace, real_node, tiny_model, host_s3):
    """The site without a running operator (it runs here; its trainers on the real node); its
    settings can be changed per test with @pytest.mark.operator_env(NAME=value)."""
    bucket = f"e2e-{uuid.uuid4().hex[:8]}"
    s3 = host_s3.client()
    s3.create_bucket(Bucket=bucket)
    store_credentials(cluster_admin, namespace, host_s3)
    model_cache_claim(cluster_admin, real_node, namespace, tiny_model)
    marker = request.node.get_closest_marker("operator_env")
    environment = {
        **operator_environment(host_s3, bucket, (REAL_NODE_TOLERATION,)),
        **(marker.kwargs if marker else {}),
    }
    site = Site(control_plane, cluster_admin, namespace, bucket, s3)
    site.operator = lambda: embedded_operator(
        cluster_admin, control_plane.kopf_connection(), settings_from(environment)
    )
    return site


@pytest.fixture
async def site(quiet_site):
    async with quiet_site.operator():
        yield quiet_site
