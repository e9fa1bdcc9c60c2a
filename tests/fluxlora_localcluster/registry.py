"""The image registry of the tests' cluster: distribution's registry (built by binaries.py) at the
host address, where nodes reach it, with its storage kept in the cache. `make images` pushes the
project's images to it and nodes pull them from it, as in any cluster: both send only the layers
the other side lacks, so a change to our code moves megabytes, not the trainer's gigabytes.

Every registry started here serves the same storage (one per running node, and one while
images are pushed)."""

import json
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

import yaml

from fluxlora_localcluster.binaries import CACHE, ensure_registry
from fluxlora_localcluster.minio import free_port
from fluxlora_localcluster.node_network import ensure_host_address
from fluxlora_localcluster.processes import start, stop

STORAGE = CACHE / "registry"
MANIFEST_TYPES = (
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)
START_TIMEOUT_SECONDS = 30


def _config(address: str) -> dict:
    return {
        "version": 0.1,
        "log": {"level": "warn", "accesslog": {"disabled": True}},
        "storage": {"filesystem": {"rootdirectory": str(STORAGE / "data")}},
        "http": {"addr": address},
    }


@contextmanager
def running_registry(port: int | None = None) -> Iterator[str]:
    """A registry serving the project's image storage, on `port` or a free one; yields its
    host:port (plain HTTP)."""
    binary = ensure_registry()
    address = f"{ensure_host_address()}:{port or free_port()}"
    STORAGE.mkdir(parents=True, exist_ok=True)
    config = STORAGE / f"config-{address.replace(':', '-')}.yaml"
    config.write_text(yaml.safe_dump(_config(address)))
    process = start([str(binary), "serve", str(config)], STORAGE / "registry.log")
    try:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while True:
            try:
                urllib.request.urlopen(f"http://{address}/v2/", timeout=2).close()
                break
            except OSError as error:
                if process.poll() is not None or time.monotonic() > deadline:
                    log = STORAGE / "registry.log"
                    raise RuntimeError(f"the registry did not start; see {log}") from error
                time.sleep(0.1)
        yield address
    finally:
        stop(process)
        config.unlink(missing_ok=True)


def reference(address: str, name: str) -> str:
    """Where `name` (as the chart writes it: `flux-lora-operator:0.1.0`) is in the registry: the
    path a node asks its docker.io mirror for."""
    return f"{address}/library/{name.split('/')[-1]}"


def published_id(address: str, name: str) -> str | None:
    """The image id (its config's digest) that `name` has in the registry, if any."""
    repository, _, tag = reference(address, name).partition("/")[2].rpartition(":")
    request = urllib.request.Request(
        f"http://{address}/v2/{repository}/manifests/{tag}",
        headers={"Accept": ", ".join(MANIFEST_TYPES)},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            digest = json.loads(response.read())["config"]["digest"]
    except (OSError, KeyError, ValueError):
        return None
    return digest.removeprefix("sha256:")


def collect_garbage() -> None:
    """Delete what no tag references any more (each rebuild of an image leaves its earlier
    layers behind: gigabytes for the trainer), as distribution's `garbage-collect` does. Only
    while pushing is locked out (images.publish): a blob pushed but not yet tagged would look
    like garbage. Nodes pulling the current tags meanwhile lose nothing."""
    config = STORAGE / "garbage-collect.yaml"
    config.write_text(yaml.safe_dump(_config("127.0.0.1:0")))
    try:
        command = [str(ensure_registry()), "garbage-collect", "--delete-untagged", "--quiet"]
        subprocess.run([*command, str(config)], check=True, capture_output=True, timeout=600)
    finally:
        config.unlink(missing_ok=True)
