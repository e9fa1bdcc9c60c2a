"""A real MinIO server for the tests, on a free local port with its own data and credentials."""

import os
import random
import secrets
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import urllib3

from fluxlora_localcluster.binaries import ensure_minio
from fluxlora_localcluster.processes import ensure_running, start, stop

START_TIMEOUT_SECONDS = 60


@dataclass(frozen=True)
class S3Server:
    endpoint: str
    access_key: str
    secret_key: str

    def environment(self) -> dict[str, str]:
        """What the trainer's environment holds in a cluster (from the credentials Secret)."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_REGION": "us-east-1",
        }

    def client(self):
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name="us-east-1",
        )


# The tests' servers listen on ports from below Linux's ephemeral range (32768-60999), which
# outgoing connections draw from: a port found free there was once taken by a connection before
# the embedded operator's progress endpoint could bind it. Not NodePorts' range (30000-).
SERVER_PORTS = range(20000, 30000)
_choice = random.SystemRandom()  # whatever a test seeds, the workers choose apart
# Ports this process has handed out: a server's ports are all chosen before it binds any, so
# without this its second port could be its first (as a test or the demo runs, a few hundred).
_handed_out: set[int] = set()


def free_port() -> int:
    """A port no server listens on, on any address, chosen at random from SERVER_PORTS, and
    not handed out before by this process."""
    for _ in range(200):
        port = _choice.choice(SERVER_PORTS)
        if port in _handed_out:
            continue
        with socket.socket() as probe:
            try:
                probe.bind(("0.0.0.0", port))
            except OSError:
                continue
            _handed_out.add(port)
            return port
    raise RuntimeError(f"no free port in {SERVER_PORTS}")


@contextmanager
def running_minio(data_dir: Path, host: str = "127.0.0.1") -> Iterator[S3Server]:
    """MinIO on `host` (loopback; or the host address of node_network.py, for pods)."""
    binary = ensure_minio()
    port, console = free_port(), free_port()
    server = S3Server(f"http://{host}:{port}", "fluxlora-test", secrets.token_hex(16))
    log = data_dir.parent / "minio.log"
    environment = {
        **os.environ,
        "MINIO_ROOT_USER": server.access_key,
        "MINIO_ROOT_PASSWORD": server.secret_key,
        "MINIO_BROWSER": "off",
    }
    process = start(
        [
            str(binary),
            "server",
            str(data_dir),
            "--address",
            f"{host}:{port}",
            "--console-address",
            f"{host}:{console}",
            "--quiet",
        ],
        log,
        env=environment,
    )
    try:
        _wait_ready(server.endpoint, process, log)
        yield server
    finally:
        stop(process)


def _wait_ready(endpoint: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    pool = urllib3.PoolManager(retries=False, timeout=2)
    while time.monotonic() < deadline:
        ensure_running("minio", process, log)
        try:
            if pool.request("GET", f"{endpoint}/minio/health/ready").status == 200:
                return
        except urllib3.exceptions.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"minio did not become ready within {START_TIMEOUT_SECONDS}s")
