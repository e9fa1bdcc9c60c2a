"""Fixtures shared by every test folder."""

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import kmock
import pytest
import pytest_asyncio

from fluxlora_kube.client import Kube
from fluxlora_localcluster.control_plane import ControlPlane, running_control_plane
from fluxlora_localcluster.emulator import ApiServerEmulator
from fluxlora_localcluster.minio import S3Server, running_minio
from fluxlora_localcluster.training_site import create_namespace, install_crd

ROOT = Path(__file__).resolve().parent.parent

# `make test` runs a worker per core and one more (pytest-xdist). torch's default of one thread
# per core would make the workers' training spin against each other (measured on 2 cores: the
# trainer tests took 415 s that way, 145 s with a thread each, 202 s in one process). Set before
# torch loads; the trainers the tests start inherit it.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest_asyncio.fixture
async def apiserver() -> AsyncIterator[ApiServerEmulator]:
    """A Kubernetes API (kmock's emulator with the API-server behaviour the tests need)."""
    emulator = ApiServerEmulator()
    async with emulator, kmock.Server(emulator):
        emulator.declare_resources()
        yield emulator


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """A real MinIO server, started once per test session."""
    with running_minio(tmp_path_factory.mktemp("minio") / "data") as server:
        yield server


@pytest.fixture
def s3_env(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> S3Server:
    """The trainer's environment as the operator sets it: endpoint and credentials."""
    for key, value in s3_server.environment().items():
        monkeypatch.setenv(key, value)
    return s3_server


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory):
    """A tiny FLUX pipeline in the diffusers layout, written by `fluxlora-trainer tiny-model`."""
    from fluxlora_trainer.cli import main

    directory = tmp_path_factory.mktemp("models") / "tiny-flux"
    assert main(["tiny-model", str(directory)]) == 0
    return directory


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """A real kube-apiserver, controller-manager and scheduler, started once per session."""
    with running_control_plane(tmp_path_factory.mktemp("control-plane")) as plane:
        yield plane


@pytest.fixture(scope="session")
def cluster_admin(control_plane: ControlPlane) -> Kube:
    """The admin's client of the real control plane, with the CRD installed."""
    kube = control_plane.admin()
    install_crd(kube)
    return kube


@pytest.fixture
def namespace(cluster_admin: Kube, request: pytest.FixtureRequest) -> Iterator[str]:
    """A namespace of its own for each test on the real control plane."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    create_namespace(cluster_admin, name)
    yield name
    cluster_admin.request("DELETE", f"/api/v1/namespaces/{name}")
