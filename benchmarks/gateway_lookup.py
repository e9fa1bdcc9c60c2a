"""How fast the gateway finds a prediction by id in a large namespace, on the real local
control plane.

N LoRATrainingJobs are created in one namespace (no operator runs: only the lookups are
measured); then `fluxlora-gateway serve` answers `GET /api/v3/predictions/{id}/result` for ids
drawn at random. Reported: the result's latency (p50/p99/max), the gateway's peak RSS, and,
side by side in the same run, a listing of the namespace: what each lookup cost before the
gateway kept its index of ids.

    .venv/bin/python benchmarks/gateway_lookup.py --count 5000
"""

import argparse
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from fluxlora_api import resource
from fluxlora_gateway.keys import new_key
from fluxlora_kube.client import Kube
from fluxlora_kube.paths import path
from fluxlora_localcluster.control_plane import ControlPlane, running_control_plane
from fluxlora_localcluster.gateway_client import GatewayClient
from fluxlora_localcluster.minio import free_port
from fluxlora_localcluster.processes import stop
from fluxlora_localcluster.training_site import create_namespace, install_crd

LISTINGS = 10  # namespace listings timed, for the side-by-side row


def percentiles(samples: list[float]) -> dict[str, float]:
    """p50, p99 and max in milliseconds."""
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return {
        "p50_ms": round(statistics.median(ordered) * 1000, 1),
        "p99_ms": round(p99 * 1000, 1),
        "max_ms": round(ordered[-1] * 1000, 1),
    }


def _peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    raise RuntimeError("no VmHWM in /proc status")


def _create(kube: Kube, namespace: str, count: int) -> list[str]:
    """`count` resources; their uids."""

    def one(i: int) -> str:
        body = {
            "apiVersion": resource.API_VERSION,
            "kind": resource.KIND,
            "metadata": {"name": f"lora-{i:05d}"},
            "spec": {"data": "https://example.com/dataset.zip"},
        }
        return kube.request("POST", path(resource.KIND, namespace), body)["metadata"]["uid"]

    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(one, range(count)))


def measure(plane: ControlPlane, kube: Kube, count: int, lookups: int, workdir: Path) -> dict:
    """Create `count` resources in a new namespace of `plane` (the CRD installed) and time
    `lookups` results through a gateway; the report."""
    namespace, key_namespace = f"lookup-{random.randrange(16**6):06x}", "gateway-keys"
    create_namespace(kube, namespace)
    create_namespace(kube, key_namespace)
    print(f"creating {count} resources in {namespace} ...", flush=True)
    began = time.monotonic()
    uids = _create(kube, namespace, count)
    created_seconds = time.monotonic() - began

    listing = []
    for _ in range(LISTINGS):
        began = time.monotonic()
        kube.list_objects(resource.KIND, namespace, "")
        listing.append(time.monotonic() - began)

    port, log = free_port(), workdir / "gateway.log"
    command = [
        sys.executable, "-m", "fluxlora_gateway.main", "serve",
        "--host", "127.0.0.1", "--port", str(port), "--key-namespace", key_namespace,
        "--rate-limit", "0",
    ]  # fmt: skip
    environment = {"PATH": "/usr/bin:/bin", "KUBECONFIG": str(plane.kubeconfig)}
    with log.open("wb") as output:
        process = subprocess.Popen(command, env=environment, stdout=output, stderr=output)
    try:
        gateway = GatewayClient(f"http://127.0.0.1:{port}", kube, key_namespace)
        key = new_key()
        gateway.set_keys(team=(key, namespace))
        if not gateway.ready(lambda: process.poll() is None):
            raise RuntimeError(f"the gateway did not start:\n{log.read_text()}")
        # The first lookup in a namespace lists it once, for the index; timed on its own.
        began = time.monotonic()
        status, _ = gateway.call("GET", f"/api/v3/predictions/{uids[0]}/result", key)
        first = time.monotonic() - began
        if status != 200:
            raise RuntimeError(f"the first lookup answered {status}")
        print(f"timing {lookups} lookups ...", flush=True)
        latencies = []
        for uid in random.choices(uids, k=lookups):
            began = time.monotonic()
            status, answer = gateway.call("GET", f"/api/v3/predictions/{uid}/result", key)
            latencies.append(time.monotonic() - began)
            if status != 200 or answer["data"]["id"] != uid:
                raise RuntimeError(f"lookup of {uid} answered {status}: {answer}")
        rss = _peak_rss_mib(process.pid)
    finally:
        stop(process)
        kube.request("DELETE", path("Namespace", name=namespace))
        kube.request("DELETE", path("Namespace", name=key_namespace))
    return {
        "resources": count,
        "created_seconds": round(created_seconds, 1),
        "first_lookup_ms": round(first * 1000, 1),
        "result_lookup": percentiles(latencies),
        "namespace_listing": percentiles(listing),
        "gateway_peak_rss_mib": rss,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=5000, help="resources (default 5000)")
    parser.add_argument("--lookups", type=int, default=500, help="lookups timed (default 500)")
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="fluxlora-lookup-") as folder,
        running_control_plane(Path(folder) / "control-plane") as plane,
    ):
        kube = plane.admin()
        install_crd(kube)
        report = measure(plane, kube, args.count, args.lookups, Path(folder))
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
