"""Fixtures of the real-control-plane tests."""

import shutil
from collections.abc import Iterator

import pytest

from fluxlora_operator.kube import Kube
from tests.support.control_plane import ControlPlane
from tests.support.images import ensure_images
from tests.support.minio import S3Server, running_minio
from tests.support.node import Node, running_node
from tests.support.node_agent import NodeAgent
from tests.support.node_network import ensure_host_address


@pytest.fixture
def node(
    control_plane: ControlPlane, cluster_admin: Kube, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[NodeAgent]:
    """A node with one GPU whose pods run as local processes, for the length of a test. Its
    folders are under /tmp, where the pods' own /tmp volume covers them (the agent copes)."""
    workdir = tmp_path_factory.mktemp("node")
    agent = NodeAgent(
        cluster_admin, "gpu-node-1", workdir, control_plane.server, control_plane.ca_file
    )
    agent.start()
    yield agent
    agent.stop()
    shutil.rmtree(workdir, ignore_errors=True)


# Until every end-to-end test runs on the real node, it is tainted: only pods that tolerate the
# taint go there, and the stand-in node's tests see no difference.
REAL_NODE_TAINT = "fluxlora.dev/real-node"
REAL_NODE_TOLERATION = {"key": REAL_NODE_TAINT, "operator": "Exists", "effect": "NoSchedule"}


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
