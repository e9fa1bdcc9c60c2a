"""Fixtures shared by every test folder."""

import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import kmock
import kubernetes
import pytest
import pytest_asyncio
import yaml

from fluxlora_api.crd import CRD_FILE
from fluxlora_operator.kube import Kube
from tests.handlers.emulator import ApiServerEmulator
from tests.support.control_plane import ControlPlane, running_control_plane
from tests.support.minio import S3Server, running_minio

ROOT = Path(__file__).resolve().parent.parent


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
    configuration = kubernetes.client.Configuration(host=control_plane.server)
    configuration.ssl_ca_cert = str(control_plane.ca_file)
    configuration.api_key = {"BearerToken": control_plane.admin_token}
    configuration.api_key_prefix = {"BearerToken": "Bearer"}
    kube = Kube(kubernetes.client.ApiClient(configuration))
    install_crd(kube)
    return kube


@pytest.fixture
def namespace(cluster_admin: Kube, request: pytest.FixtureRequest) -> Iterator[str]:
    """A namespace of its own for each test on the real control plane."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    cluster_admin.request(
        "POST",
        "/api/v1/namespaces",
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}},
    )
    yield name
    cluster_admin.request("DELETE", f"/api/v1/namespaces/{name}")


def install_crd(kube: Kube) -> None:
    crd = yaml.safe_load((ROOT / "crds" / CRD_FILE).read_text())
    url = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
    kube.request("POST", url, crd)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status = kube.request("GET", f"{url}/{crd['metadata']['name']}").get("status") or {}
        if any(
            c["type"] == "Established" and c["status"] == "True"
            for c in status.get("conditions") or []
        ):
            return
        time.sleep(0.2)
    raise RuntimeError("the CRD was not established")
