"""How the operator keeps up with many resources, on the real local control plane.

N LoRATrainingJobs are created at once; their trainer "finishes at once" (the node agent runs a
program for the trainer image that writes a result and exits). Reported: from resource creation
to Job creation, and from the trainer's exit (as the node reports it in the pod's status) to
`completed` in the resource's status (p50/p99/max, seen through watches), how long the client
took to submit them, the total wall time, and the CPU time and peak RSS of the
`fluxlora-operator` process, and how its liveness endpoint answered (polled every 5 s with the
chart's probe timeout, 1 s).

    .venv/bin/python benchmarks/operator_scale.py --count 300
"""

import argparse
import json
import os
import shlex
import shutil
import statistics
import tempfile
import threading
import time
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import kubernetes

from fluxlora_api import contract, resource
from fluxlora_kube.client import Kube
from fluxlora_kube.paths import path
from fluxlora_localcluster.binaries import CACHE
from fluxlora_localcluster.control_plane import ControlPlane, running_control_plane
from fluxlora_localcluster.minio import free_port
from fluxlora_localcluster.node_agent import NodeAgent
from fluxlora_localcluster.operator import operator_process
from fluxlora_localcluster.training_site import create_namespace, install_crd
from fluxlora_operator import naming

ROOT = Path(__file__).resolve().parent.parent
INSTANT_TRAINER = "instant-trainer:benchmark"
RESULT = {"outputs": ["lora.safetensors"], "timings": {"inference": 1}}  # names in its folder
TIMEOUT_SECONDS = 1800


@dataclass
class Timeline:
    """Client-side clock readings per resource name."""

    created: dict[str, float] = field(default_factory=dict)
    job_created: dict[str, float] = field(default_factory=dict)
    trainer_exited: dict[str, float] = field(default_factory=dict)
    completed: dict[str, float] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def first(self, readings: dict[str, float], name: str) -> None:
        with self.lock:
            readings.setdefault(name, time.monotonic())


def percentiles(samples: list[float]) -> dict[str, float]:
    """p50, p99 and max in milliseconds."""
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return {
        "p50_ms": round(statistics.median(ordered) * 1000),
        "p99_ms": round(p99 * 1000),
        "max_ms": round(ordered[-1] * 1000),
    }


def _events(stop, list_function, *args, **kwargs):
    """Watch events (raw dicts: the client's models would cost this process more CPU than the
    operator uses) until `stop`, resuming each short watch where the last one ended (a watch
    started afresh would replay every object: load on the API server the operator would pay
    for in these numbers)."""
    version = None
    while not stop.is_set():
        watch = kubernetes.watch.Watch()
        try:
            for event in watch.stream(
                list_function,
                *args,
                resource_version=version,
                timeout_seconds=5,
                deserialize=False,
                **kwargs,
            ):
                version = event["object"]["metadata"]["resourceVersion"]
                yield event["object"]
                if stop.is_set():
                    watch.stop()
        except (kubernetes.client.ApiException, KeyError):
            # The version is too old (410 Gone; the client, not deserializing, fails on the
            # ERROR event with a KeyError): start afresh.
            version = None
            stop.wait(1)


def _watch_jobs(api: kubernetes.client.ApiClient, namespace: str, timeline: Timeline, stop):
    batch = kubernetes.client.BatchV1Api(api)
    for job in _events(
        stop, batch.list_namespaced_job, namespace, label_selector=naming.MANAGED_SELECTOR
    ):
        timeline.first(timeline.job_created, job["metadata"]["labels"][naming.LABEL_TRAINING_JOB])


def _watch_pods(api: kubernetes.client.ApiClient, namespace: str, timeline: Timeline, stop):
    core = kubernetes.client.CoreV1Api(api)
    for pod in _events(
        stop, core.list_namespaced_pod, namespace, label_selector=naming.MANAGED_SELECTOR
    ):
        for container in (pod.get("status") or {}).get("containerStatuses") or []:
            if ((container.get("state") or {}).get("terminated") or {}).get("exitCode") == 0:
                name = pod["metadata"]["labels"][naming.LABEL_TRAINING_JOB]
                timeline.first(timeline.trainer_exited, name)


def _watch_resources(api: kubernetes.client.ApiClient, namespace: str, timeline, stop):
    custom = kubernetes.client.CustomObjectsApi(api)
    for item in _events(
        stop,
        custom.list_namespaced_custom_object,
        resource.GROUP,
        resource.VERSION,
        namespace,
        resource.PLURAL,
    ):
        if (item.get("status") or {}).get("phase") == "completed":
            timeline.first(timeline.completed, item["metadata"]["name"])


def _resource(name: str) -> dict:
    return {
        "apiVersion": resource.API_VERSION,
        "kind": resource.KIND,
        "metadata": {"name": name},
        "spec": {"data": "s3://benchmark/dataset.zip"},
    }


def _peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc status")


def _cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Liveness:
    """The operator's /healthz as the chart's liveness probe sees it (1 s timeout)."""

    port: int
    slowest: float = 0.0
    failures: int = 0

    def poll(self, stop: threading.Event) -> None:
        url = f"http://127.0.0.1:{self.port}/healthz"
        while not stop.wait(5):
            began = time.monotonic()
            try:
                with urllib.request.urlopen(url, timeout=1) as answer:
                    answer.read()
            except OSError:
                self.failures += 1
            self.slowest = max(self.slowest, time.monotonic() - began)


def measure(plane: ControlPlane, kube: Kube, count: int, workdir: Path) -> dict:
    """Run `count` resources through the operator on `plane` (the CRD installed); the report."""
    namespace = f"scale-{uuid.uuid4().hex[:6]}"
    node_dir = CACHE / "node-agent" / namespace  # not under /tmp: pods get their own /tmp
    create_namespace(kube, namespace)
    message = shlex.quote(json.dumps(RESULT))
    program = ["sh", "-c", f"printf %s {message} > {contract.TERMINATION_MESSAGE_PATH}"]
    agent = NodeAgent(
        kube,
        f"scale-node-{namespace}",
        node_dir,
        plane.server,
        plane.ca_file,
        gpus=count,
        cpu=str(count),
        memory=f"{count}Gi",
        programs={INSTANT_TRAINER: program},
        max_pods=count + 10,
    ).start()
    liveness = Liveness(free_port())
    environment = {
        "FLUXLORA_TRAINER_IMAGE": INSTANT_TRAINER,
        "FLUXLORA_DEFAULT_OUTPUT": "s3://benchmark/loras",
        "FLUXLORA_NAMESPACES": namespace,
        "FLUXLORA_CPU_REQUEST": "100m",
        "FLUXLORA_MEMORY_REQUEST": "64Mi",
        "FLUXLORA_MEMORY_LIMIT": "128Mi",
        "FLUXLORA_HEALTH_PORT": str(liveness.port),
    }
    timeline, stop = Timeline(), threading.Event()
    api = plane.api_client()
    watchers = [
        threading.Thread(target=target, args=(api, namespace, timeline, stop), daemon=True)
        for target in (_watch_jobs, _watch_pods, _watch_resources)
    ]
    watchers.append(threading.Thread(target=liveness.poll, args=(stop,), daemon=True))
    try:
        with operator_process(plane.kubeconfig, environment, workdir / "operator.log") as operator:
            for watcher in watchers:
                watcher.start()
            time.sleep(2)  # the operator and the watches are listening

            def create(name: str) -> None:
                timeline.first(timeline.created, name)
                kube.request("POST", path(resource.KIND, namespace), _resource(name))

            started = time.monotonic()
            names = [f"lora-{i:04d}" for i in range(count)]
            with ThreadPoolExecutor(max_workers=8) as pool:
                list(pool.map(create, names))
            submitted = time.monotonic() - started
            deadline = started + TIMEOUT_SECONDS
            while len(timeline.completed) < count and time.monotonic() < deadline:
                if operator.poll() is not None:
                    raise RuntimeError(f"the operator exited; see {workdir / 'operator.log'}")
                time.sleep(0.5)
            wall = time.monotonic() - started
            peak_rss = _peak_rss_mib(operator.pid)
            cpu = _cpu_seconds(operator.pid)
            # A watch that restarts may see a pod's exit after the resource's completion: give
            # it a moment before reading the timeline.
            settle = time.monotonic() + 30
            while time.monotonic() < settle and len(timeline.trainer_exited) < count:
                time.sleep(0.5)
    finally:
        stop.set()
        agent.stop()
        for watcher in watchers:
            watcher.join(timeout=10)
        kube.request("DELETE", path("Namespace", name=namespace))
        shutil.rmtree(node_dir, ignore_errors=True)
    done = [n for n in names if n in timeline.completed]
    if len(done) < count:
        raise RuntimeError(f"only {len(done)} of {count} resources completed")
    return {
        "resources": count,
        "creation_to_job": percentiles(
            [timeline.job_created[n] - timeline.created[n] for n in done]
        ),
        "exit_to_completed": percentiles(
            [
                timeline.completed[n] - timeline.trainer_exited[n]
                for n in done
                if n in timeline.trainer_exited
            ]
        ),
        "submitted_seconds": round(submitted, 1),
        "wall_seconds": round(wall, 1),
        "operator_cpu_seconds": round(cpu, 1),
        "operator_peak_rss_mib": round(peak_rss, 1),
        "liveness_slowest_ms": round(liveness.slowest * 1000),
        "liveness_failures": liveness.failures,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=300, help="how many resources (default 300)")
    parser.add_argument("--operator-log", type=Path, help="keep the operator's log here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fluxlora-scale-") as folder:
        work = Path(folder)
        try:
            with running_control_plane(work / "control-plane") as plane:
                kube = plane.admin()
                install_crd(kube)
                report = measure(plane, kube, args.count, work)
        finally:
            if args.operator_log and (work / "operator.log").exists():
                shutil.copyfile(work / "operator.log", args.operator_log)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
