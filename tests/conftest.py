"""Fixtures shared by every test folder."""

from collections.abc import AsyncIterator, Iterator

import kmock
import pytest
import pytest_asyncio

from tests.handlers.emulator import ApiServerEmulator
from tests.support.minio import S3Server, running_minio


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
