"""A node agent: a stand-in for the kubelet, kept for one use only: benchmarks/operator_scale.py
(and its test) runs hundreds of pods at once to load the operator, more than a real kubelet
takes on one node (110 pods) or starts in reasonable time on two cores. Every other test and the
demo run their pods on a real node (node.py).

It registers a Node with CPU, memory and nvidia.com/gpu capacity and keeps it Ready with lease
heartbeats, and runs every pod bound to it as local processes: the container's command and args
with its environment (values, Secret and ConfigMap keys, field and CPU references), its volumes at
their mountPaths in a private mount namespace (emptyDir and PVC as directories, Secret, ConfigMap
and the projected service-account token as files), the in-cluster API address pointing at the local
API server, and the termination-message file. It reports the pod's life (Pending -> Running ->
Succeeded/Failed, exit codes, termination messages) and honours deletion (SIGTERM, grace, SIGKILL),
then removes the pod as the kubelet does.

Images cannot run here: the agent knows image names only. Given a set of `images` (its
"registry"), a pod whose image is not in it waits in ImagePullBackOff as on a real node; by
default every image "pulls". `programs` maps an image to a command run instead of the
container's (the benchmarks' trainer that finishes at once). The container's command runs with
the project's own Python environment, whose bin folder is put first on PATH, as the agent's own
user (root: the mount namespace needs it), ignoring the pod's securityContext. The mounts are
private, but their mount points (/scratch, /models, /var/run/secrets/...,
/dev/termination-log) are created on the host as empty directories and an empty file if
missing.
"""

import base64
import contextlib
import logging
import math
import os
import shlex
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fluxlora_kube.client import ApiError, Kube
from fluxlora_kube.paths import path

logger = logging.getLogger(__name__)

# What the pods' commands run from: this checkout and its Python environment, with the shared
# dependencies' site-packages (the checkout's .venv reaches them by a .pth file).
_PROGRAM_FOLDERS = sorted(
    {
        Path(__file__).resolve().parents[2],
        Path(sys.prefix).resolve(),
        *(Path(entry).resolve() for entry in sys.path if entry.endswith("site-packages")),
    }
)
HEARTBEAT_SECONDS = 5.0
POLL_SECONDS = 0.5
LOG_TAIL_LINES = 80
TOKEN_SECONDS = 3600


def _cpus(quantity: str) -> float:
    return int(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class RunningPod:
    uid: str
    name: str
    namespace: str
    process: subprocess.Popen
    folder: Path
    started: str
    container: str
    stopping: bool = False
    log: Any = field(default=None, repr=False)


class NodeAgent:
    def __init__(
        self,
        kube: Kube,
        name: str,
        workdir: Path,
        server: str,
        ca_file: Path,
        gpus: int = 1,
        cpu: str = "16",
        memory: str = "64Gi",
        images: frozenset[str] | None = None,
        programs: dict[str, list[str]] | None = None,
        max_pods: int = 110,
    ) -> None:
        self.kube = kube
        self.name = name
        self.workdir = Path(workdir).resolve()
        self.server = server
        self.ca_file = ca_file
        self.capacity = {
            "cpu": cpu,
            "memory": memory,
            "pods": str(max_pods),
            "ephemeral-storage": "500Gi",
            "nvidia.com/gpu": str(gpus),
        }
        self.images = images
        self.programs = programs or {}
        self.waiting: set[str] = set()  # pods whose image is missing (reported once)
        self.pods: dict[str, RunningPod] = {}
        self.finished: set[str] = set()
        # The pods bound to this node as its watch last showed them (None until first listed).
        self._bound: dict[str, dict] | None = None
        self._bound_lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    # --- the node ----------------------------------------------------------------------------

    def start(self) -> "NodeAgent":
        self.workdir.mkdir(parents=True, exist_ok=True)
        body = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": self.name,
                "labels": {
                    "kubernetes.io/hostname": self.name,
                    "kubernetes.io/os": "linux",
                    "nvidia.com/gpu.present": "true",
                    "nvidia.com/gpu.product": "Test-GPU",
                },
            },
        }
        try:
            self.kube.request("POST", path("Node"), body)
        except ApiError as error:
            if error.status != 409:
                raise
        self._heartbeat()
        for target in (self._heartbeats, self._watch_pods, self._pod_loop):
            thread = threading.Thread(
                target=target, daemon=True, name=f"{self.name}-{target.__name__}"
            )
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=10)
        for pod in list(self.pods.values()):
            self._kill(pod, grace=0)
        with contextlib.suppress(ApiError):
            self.kube.request("DELETE", path("Node", name=self.name))

    def _heartbeat(self) -> None:
        stamp = now()
        status = {
            "capacity": self.capacity,
            "allocatable": self.capacity,
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "KubeletReady",
                    "message": "node agent is posting ready status",
                    "lastHeartbeatTime": stamp,
                    "lastTransitionTime": stamp,
                }
            ],
            "nodeInfo": {
                "architecture": "amd64",
                "operatingSystem": "linux",
                "kubeletVersion": "v0.0.0-node-agent",
                "containerRuntimeVersion": "local-process://1",
                "osImage": "local",
                "kernelVersion": os.uname().release,
                "kubeProxyVersion": "",
                "machineID": self.name,
                "systemUUID": self.name,
                "bootID": self.name,
            },
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
        }
        self.kube.request(
            "PATCH",
            path("Node", name=self.name, subresource="status"),
            {"status": status},
            content_type="application/merge-patch+json",
        )
        lease = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": self.name, "namespace": "kube-node-lease"},
            "spec": {
                "holderIdentity": self.name,
                "leaseDurationSeconds": 40,
                "renewTime": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            },
        }
        url = path("Lease", "kube-node-lease")
        try:
            self.kube.request(
                "PATCH",
                f"{url}/{self.name}",
                {"spec": lease["spec"]},
                content_type="application/merge-patch+json",
            )
        except ApiError as error:
            if error.status != 404:
                raise
            self.kube.request("POST", url, lease)

    def _heartbeats(self) -> None:
        while not self._stop.wait(HEARTBEAT_SECONDS):
            try:
                self._heartbeat()
            except Exception:
                logger.exception("node heartbeat failed")

    # --- pods ----------------------------------------------------------------------------------

    def log_tail(self, uid: str, lines: int = 20) -> str:
        """The last lines a pod's container wrote (what `kubectl logs --tail` shows)."""
        log = self.workdir / uid / "container.log"
        if not log.exists():
            return ""
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])

    def _watch_pods(self) -> None:
        """Keep `_bound` current as a kubelet does: list once, then watch from there (a listing
        every poll would load the API server with every pod on the node, twice a second)."""
        selector = {"fieldSelector": f"spec.nodeName={self.name}"}
        version = None
        while not self._stop.is_set():
            try:
                if version is None:
                    listing = self.kube.request("GET", path("Pod"), query=selector)
                    pods = listing.get("items") or []
                    with self._bound_lock:
                        self._bound = {pod["metadata"]["uid"]: pod for pod in pods}
                    version = listing["metadata"]["resourceVersion"]
                query = {**selector, "resourceVersion": version}
                for kind, pod in self.kube.watch(path("Pod"), query):
                    version = pod["metadata"]["resourceVersion"]
                    with self._bound_lock:
                        assert self._bound is not None
                        if kind == "DELETED":
                            self._bound.pop(pod["metadata"]["uid"], None)
                        else:
                            self._bound[pod["metadata"]["uid"]] = pod
                    if self._stop.is_set():
                        return
            except ApiError as error:
                if error.status != 410:  # 410: too old to resume from, list again
                    logger.warning("pod watch failed: %s", error)
                    self._stop.wait(1)
                version = None
            except Exception:
                logger.exception("pod watch failed")
                version = None
                self._stop.wait(1)

    def _pod_loop(self) -> None:
        while not self._stop.wait(POLL_SECONDS):
            try:
                self._sync()
            except Exception:
                logger.exception("pod sync failed")

    def _sync(self) -> None:
        with self._bound_lock:
            if self._bound is None:
                return
            bound = list(self._bound.values())
        present = set()
        for pod in bound:
            uid = pod["metadata"]["uid"]
            present.add(uid)
            running = self.pods.get(uid)
            if pod["metadata"].get("deletionTimestamp"):
                if running is not None:
                    grace = pod["metadata"].get("deletionGracePeriodSeconds") or 30
                    self._kill(running, grace)
                    self._report_exit(running)
                self._remove(pod)
            elif (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
                self.finished.add(uid)  # ended before this agent started: never run again
            elif running is None and uid not in self.finished and uid not in self.waiting:
                self._start(pod)
            elif running is not None and running.process.poll() is not None:
                self._report_exit(running)
        for uid in [u for u in self.pods if u not in present]:
            self._kill(self.pods[uid], grace=0)
            self.pods.pop(uid, None)
        self.waiting &= present

    def _remove(self, pod: dict) -> None:
        meta = pod["metadata"]
        try:
            self.kube.request(
                "DELETE",
                path("Pod", meta["namespace"], meta["name"]),
                {"gracePeriodSeconds": 0, "preconditions": {"uid": meta["uid"]}},
            )
        except ApiError as error:
            if error.status not in (404, 409):
                raise
        self.pods.pop(meta["uid"], None)
        with self._bound_lock:  # its DELETED event may come after the next sync
            if self._bound is not None:
                self._bound.pop(meta["uid"], None)

    def _wait(self, pod: dict, container: dict, reason: str, message: str) -> None:
        """A container that cannot start: Pending, with the kubelet's reason and message."""
        state = {"waiting": {"reason": reason, "message": message}}
        self._patch_status(
            pod,
            {
                "phase": "Pending",
                "containerStatuses": [
                    {
                        "name": container["name"],
                        "ready": False,
                        "restartCount": 0,
                        "image": container.get("image", ""),
                        "imageID": "",
                        "state": state,
                    }
                ],
            },
        )

    def _start(self, pod: dict) -> None:
        meta, spec = pod["metadata"], pod["spec"]
        container = spec["containers"][0]
        image = container.get("image", "")
        if self.images is not None and image not in self.images:
            message = f'Back-off pulling image "{image}": ErrImagePull: {image}: not found'
            self._wait(pod, container, "ImagePullBackOff", message)
            self.waiting.add(meta["uid"])  # the registry will not change: report it once
            return
        folder = self.workdir / meta["uid"]
        folder.mkdir(parents=True, exist_ok=True)
        try:
            env = self._environment(pod, container)
            script = self._mount_script(pod, container, folder)
        except Exception as error:  # a missing Secret and the like: the kubelet waits
            self._wait(pod, container, "CreateContainerConfigError", str(error))
            return
        command = self.programs.get(image) or [
            *container.get("command", []),
            *container.get("args", []),
        ]
        log = (folder / "container.log").open("wb")
        process = subprocess.Popen(
            [
                "unshare",
                "--mount",
                "--propagation",
                "private",
                "sh",
                "-c",
                script + " exec " + " ".join(shlex.quote(part) for part in command),
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=container.get("workingDir") or "/",
            start_new_session=True,
        )
        started = now()
        self.pods[meta["uid"]] = RunningPod(
            meta["uid"],
            meta["name"],
            meta["namespace"],
            process,
            folder,
            started,
            container["name"],
            log=log,
        )
        self._patch_status(
            pod,
            {
                "phase": "Running",
                "startTime": started,
                "podIP": "127.0.0.1",
                "hostIP": "127.0.0.1",
                "conditions": [
                    {"type": "Initialized", "status": "True", "lastTransitionTime": started},
                    {"type": "ContainersReady", "status": "True", "lastTransitionTime": started},
                    {"type": "Ready", "status": "True", "lastTransitionTime": started},
                ],
                "containerStatuses": [
                    {
                        "name": container["name"],
                        "ready": True,
                        "started": True,
                        "restartCount": 0,
                        "image": container.get("image", ""),
                        "imageID": "local",
                        "containerID": f"local://{process.pid}",
                        "state": {"running": {"startedAt": started}},
                    }
                ],
            },
        )

    def _report_exit(self, running: RunningPod) -> None:
        code = running.process.wait()
        running.log.close()
        if code < 0:  # killed by a signal: report as a shell would
            code = 128 - code
        message = ""
        termination = running.folder / "termination-log"
        if termination.exists():
            message = termination.read_text(errors="replace")[:4096]
        if not message and code != 0:
            lines = (running.folder / "container.log").read_text(errors="replace").splitlines()
            message = "\n".join(lines[-LOG_TAIL_LINES:])[-2048:]
        reason = "Completed" if code == 0 else "Error"
        finished = now()
        pod = {"metadata": {"namespace": running.namespace, "name": running.name}}
        self._patch_status(
            pod,
            {
                "phase": "Succeeded" if code == 0 else "Failed",
                "conditions": [
                    {
                        "type": "Ready",
                        "status": "False",
                        "reason": "PodCompleted",
                        "lastTransitionTime": finished,
                    },
                    {
                        "type": "ContainersReady",
                        "status": "False",
                        "reason": "PodCompleted",
                        "lastTransitionTime": finished,
                    },
                ],
                "containerStatuses": [
                    {
                        "name": running.container,
                        "ready": False,
                        "started": False,
                        "restartCount": 0,
                        "image": "",
                        "imageID": "local",
                        "containerID": f"local://{running.process.pid}",
                        "state": {
                            "terminated": {
                                "exitCode": code,
                                "reason": reason,
                                "message": message,
                                "startedAt": running.started,
                                "finishedAt": finished,
                            }
                        },
                    }
                ],
            },
        )
        self.finished.add(running.uid)
        self.pods.pop(running.uid, None)

    def _kill(self, running: RunningPod, grace: float) -> None:
        if running.process.poll() is not None:
            return
        try:
            os.killpg(running.process.pid, signal.SIGTERM)
            running.process.wait(timeout=grace)
        except (subprocess.TimeoutExpired, ProcessLookupError):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(running.process.pid, signal.SIGKILL)
            running.process.wait()

    def _patch_status(self, pod: dict, status: dict) -> None:
        meta = pod["metadata"]
        try:
            self.kube.request(
                "PATCH",
                path("Pod", meta["namespace"], meta["name"], "status"),
                {"status": status},
                content_type="application/strategic-merge-patch+json",
            )
        except ApiError as error:
            if error.status != 404:
                raise

    # --- what a container sees -----------------------------------------------------------------

    def _environment(self, pod: dict, container: dict) -> dict[str, str]:
        meta = pod["metadata"]
        host, port = urlsplit(self.server).hostname, str(urlsplit(self.server).port)
        env = {
            "PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
            "HOSTNAME": meta["name"],
            "KUBERNETES_SERVICE_HOST": host,
            "KUBERNETES_SERVICE_PORT": port,
            "LANG": "C.UTF-8",
        }
        for source in container.get("envFrom") or []:
            if "secretRef" in source:
                env.update(self._secret(meta["namespace"], source["secretRef"]["name"]))
            if "configMapRef" in source:
                env.update(self._config_map(meta["namespace"], source["configMapRef"]["name"]))
        for item in container.get("env") or []:
            if "value" in item:
                env[item["name"]] = item["value"]
                continue
            ref = item.get("valueFrom") or {}
            if "secretKeyRef" in ref:
                values = self._secret(meta["namespace"], ref["secretKeyRef"]["name"])
                env[item["name"]] = values[ref["secretKeyRef"]["key"]]
            elif "configMapKeyRef" in ref:
                values = self._config_map(meta["namespace"], ref["configMapKeyRef"]["name"])
                env[item["name"]] = values[ref["configMapKeyRef"]["key"]]
            elif "fieldRef" in ref:
                env[item["name"]] = str(self._field(pod, ref["fieldRef"]["fieldPath"]))
            elif "resourceFieldRef" in ref:
                env[item["name"]] = str(self._resource(container, ref["resourceFieldRef"]))
        return env

    @staticmethod
    def _resource(container: dict, ref: dict) -> int:
        """A container's request or limit in units of the divisor, rounded up, as the kubelet
        gives it (CPU only: what the pods here ask for)."""
        kind, resource = ref["resource"].split(".")
        amount = (container.get("resources") or {}).get(kind, {}).get(resource)
        if resource != "cpu" or amount is None:
            raise ValueError(f"resourceFieldRef {ref['resource']} is not supported here")
        divisor = _cpus(str(ref.get("divisor") or "1"))
        return max(1, math.ceil(_cpus(str(amount)) / divisor))

    def _secret(self, namespace: str, name: str) -> dict[str, str]:
        secret = self.kube.request("GET", path("Secret", namespace, name))
        return {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}

    def _config_map(self, namespace: str, name: str) -> dict[str, str]:
        return self.kube.request("GET", path("ConfigMap", namespace, name)).get("data") or {}

    @staticmethod
    def _field(pod: dict, path: str) -> Any:
        value: Any = pod
        for part in path.split("."):
            value = value.get(part, "") if isinstance(value, dict) else ""
        return value

    def _pod_token(self, pod: dict, audience: str | None, wanted: dict) -> str:
        """A service-account token bound to the pod, as the kubelet requests it (for the API
        server's audience unless another is asked for)."""
        meta = pod["metadata"]
        account = pod["spec"].get("serviceAccountName") or "default"
        request: dict[str, Any] = {
            "expirationSeconds": wanted.get("expirationSeconds", TOKEN_SECONDS),
            "boundObjectRef": {
                "apiVersion": "v1",
                "kind": "Pod",
                "name": meta["name"],
                "uid": meta["uid"],
            },
        }
        if audience:
            request["audiences"] = [audience]
        return self.kube.request(
            "POST",
            path("ServiceAccount", meta["namespace"], account, "token"),
            {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": request},
        )["status"]["token"]

    def _mount_script(self, pod: dict, container: dict, folder: Path) -> str:
        """Shell lines that, inside the private mount namespace, put each volume at its path."""
        meta, spec = pod["metadata"], pod["spec"]
        sources: dict[str, Path] = {}
        for volume in spec.get("volumes") or []:
            source = folder / "volumes" / volume["name"]
            source.mkdir(parents=True, exist_ok=True)
            if "secret" in volume:
                for key, value in self._secret(
                    meta["namespace"], volume["secret"]["secretName"]
                ).items():
                    (source / key).write_text(value)
            elif "configMap" in volume:
                for key, value in self._config_map(
                    meta["namespace"], volume["configMap"]["name"]
                ).items():
                    (source / key).write_text(value)
            elif "projected" in volume:
                for item in volume["projected"].get("sources") or []:
                    if "serviceAccountToken" in item:
                        wanted = item["serviceAccountToken"]
                        token = self._pod_token(pod, wanted.get("audience"), wanted)
                        (source / wanted["path"]).write_text(token)
            elif "persistentVolumeClaim" in volume:
                claim = (
                    self.workdir
                    / "claims"
                    / meta["namespace"]
                    / volume["persistentVolumeClaim"]["claimName"]
                )
                claim.mkdir(parents=True, exist_ok=True)
                source = claim
            sources[volume["name"]] = source
        if spec.get("automountServiceAccountToken", True):
            token_dir = folder / "serviceaccount"
            token_dir.mkdir(exist_ok=True)
            (token_dir / "token").write_text(self._pod_token(pod, None, {}))
            (token_dir / "ca.crt").write_bytes(self.ca_file.read_bytes())
            (token_dir / "namespace").write_text(meta["namespace"])
            sources["__serviceaccount"] = token_dir
        termination = folder / "termination-log"
        termination.touch()
        mounts = [(m["name"], m["mountPath"]) for m in container.get("volumeMounts") or []]
        if "__serviceaccount" in sources:
            mounts.append(("__serviceaccount", "/var/run/secrets/kubernetes.io/serviceaccount"))
        # A volume mounted over a folder holding the project or its Python environment (a
        # checkout under /tmp, say) would hide the program itself: stash those folders first
        # and bind them back over the volume afterwards.
        hidden = [
            keep
            for keep in _PROGRAM_FOLDERS
            if any(keep.is_relative_to(path) for _, path in mounts)
        ]

        # A volume mounted over a folder holding this agent's own (a workdir under /tmp, with
        # the pod's emptyDir at /tmp) would hide the sources of the mounts after it: the script
        # works from the workdir and names every source relative to it, and a shell's working
        # directory stays reachable under a mount made over it.
        def here(path: Path) -> str:
            return shlex.quote("./" + str(path.relative_to(self.workdir)))

        lines = [f"cd {shlex.quote(str(self.workdir))} &&"]
        kept = [shlex.quote(str(keep)) for keep in hidden]
        stash = [here(folder / "stash" / str(i)) for i in range(len(hidden))]
        for keep, place in zip(kept, stash, strict=True):
            lines.append(f"mkdir -p {place} && mount --bind {keep} {place} &&")
        for name, mount_path in mounts:
            source, target_path = here(sources[name]), shlex.quote(mount_path)
            lines.append(f"mkdir -p {target_path} && mount --bind {source} {target_path} &&")
        for keep, place in zip(kept, stash, strict=True):
            lines.append(f"mkdir -p {keep} && mount --bind {place} {keep} &&")
        target = container.get("terminationMessagePath") or "/dev/termination-log"
        lines.append(
            f"( [ -e {shlex.quote(target)} ] || touch {shlex.quote(target)} ) && "
            f"mount --bind {here(termination)} {shlex.quote(target)} &&"
        )
        lines.append(f"cd {shlex.quote(container.get('workingDir') or '/')} &&")
        return " ".join(lines)
