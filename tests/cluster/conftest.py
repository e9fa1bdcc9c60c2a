"""Fixtures of the real-control-plane tests."""

from collections.abc import Iterator

import pytest

from fluxlora_localcluster.control_plane import ControlPlane
from fluxlora_localcluster.images import ensure_images
from fluxlora_localcluster.minio import S3Server, running_minio
from fluxlora_localcluster.node import Node, running_node
from fluxlora_localcluster.node_network import ensure_host_address

# The real node is tainted: only the pods of the tests that mean to run there tolerate it, so
# that the operator tests' pods (test_operator.py) stay Pending as in a cluster without a free
# GPU, whatever ran earlier on the same control plane.
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
