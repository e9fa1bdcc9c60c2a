"""Fixtures of the real-control-plane tests."""

import shutil
import uuid
from collections.abc import Iterator

import pytest

from fluxlora_operator.kube import Kube
from tests.support.binaries import CACHE
from tests.support.control_plane import ControlPlane
from tests.support.node_agent import NodeAgent


@pytest.fixture
def node(control_plane: ControlPlane, cluster_admin: Kube) -> Iterator[NodeAgent]:
    """A node with one GPU whose pods run as local processes, for the length of a test."""
    # Outside /tmp: the pods get their own /tmp, which would hide the agent's folders.
    workdir = CACHE / "node-agent" / uuid.uuid4().hex[:8]
    agent = NodeAgent(
        cluster_admin, "gpu-node-1", workdir, control_plane.server, control_plane.ca_file
    )
    agent.start()
    yield agent
    agent.stop()
    shutil.rmtree(workdir, ignore_errors=True)
