"""Fixtures of the real-control-plane tests."""

import shutil
from collections.abc import Iterator

import pytest

from fluxlora_operator.kube import Kube
from tests.support.control_plane import ControlPlane
from tests.support.node_agent import NodeAgent


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
