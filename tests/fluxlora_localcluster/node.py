"""A real node for the tests: containerd (running runc, with the CNI bridge plugins) and the
kubelet and kube-proxy of the control plane's own Kubernetes build, in a network namespace of
their own (node_network.py), joined to the test control plane with a node identity.

Pods run in containers from images the node pulls from the cluster's registry (registry.py),
its mirror of docker.io, so that the names the chart and the operator use (`flux-lora-trainer:
0.1.0`) resolve there. The node pulls the images it is given as it starts, so a tag rebuilt
since its last run is fresh. containerd's store is kept between runs in the cache (a few GB:
the trainer image is large), one per node name and test worker, so a pull moves only the layers
the store lacks. The node's
daemons and pods live under a cgroup of their own, so that stopping the node can find and kill
everything it started. The GPUs come from a device plugin (servers-build/gpu/main.go) speaking the
kubelet's device-plugin API, as NVIDIA's does on a GPU node: the kubelet advertises them,
allocates them to containers and hands each its NVIDIA_VISIBLE_DEVICES; containers see no
device, and the trainer runs on the CPU.
"""

import contextlib
import fcntl
import itertools
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import yaml

from fluxlora_localcluster.binaries import CACHE, ensure_node, ensure_runtime
from fluxlora_localcluster.control_plane import ControlPlane
from fluxlora_localcluster.images import pause_image
from fluxlora_localcluster.kubeconfig import kubeconfig
from fluxlora_localcluster.node_network import NodeLink, create_link, remove_link
from fluxlora_localcluster.processes import Starting, ensure_running, run_saying, start, stop
from fluxlora_localcluster.registry import running_registry
from fluxlora_operator.settings import OperatorSettings

CGROUP_ROOT = Path("/sys/fs/cgroup")
READY_TIMEOUT_SECONDS = 120
PULL_TIMEOUT_SECONDS = 600
STALE_STORE_DAYS = 3
MIN_FREE_DISK_GIB = 3  # the kubelet's eviction threshold (1 GiB), and room for a run's files
RUNC = "/usr/sbin/runc"
CNI_PLUGINS = "/usr/lib/cni"  # Debian's containernetworking-plugins
GPU_RESOURCE = OperatorSettings.model_fields["gpu_resource"].default
VOLUMES = Path("/var/lib/fluxlora-test-nodes")
FIRST_NODE = "gpu-node-1"  # the demo's node, and a node's name unless given one
# What a new node store shares with the one it is made from (hard links, _seed_store): the
# images' blobs and their unpacked layers, which containerd writes once and never changes.
SHARED_STORE_PARTS = (
    "io.containerd.content.v1.content/blobs",
    "io.containerd.snapshotter.v1.overlayfs/snapshots",
)


@dataclass(frozen=True)
class Node:
    name: str
    link: NodeLink
    workdir: Path
    store: Path
    containerd_socket: Path
    ctr_binary: Path

    @property
    def volumes(self) -> Path:
        """Where this node's hostPath volumes live: outside any private folder (the tests'
        temporary folders and the cache are root's only), so a pod's non-root user can read
        what it is given."""
        return VOLUMES / self.link.namespace

    def _ctr_command(self) -> list[str]:
        return _ctr_command(self.ctr_binary, self.containerd_socket)

    def ctr(self, *args: str, timeout: float = PULL_TIMEOUT_SECONDS) -> subprocess.CompletedProcess:
        """containerd's own client, in the namespace the kubelet's containers live in."""
        return subprocess.run(
            [*self._ctr_command(), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def pull(self, name: str) -> None:
        """Pull an image (as pods name it) from the registry, as the kubelet would."""
        _pull(self._ctr_command(), self.workdir, name, self.name)

    def images(self) -> set[str]:
        return set(self.ctr("images", "list", "--quiet").stdout.split())


def _ctr_command(ctr: Path, socket: Path) -> list[str]:
    return [str(ctr), "--address", str(socket), "-n", "k8s.io"]


def _pull(ctr_command: list[str], workdir: Path, name: str, node: str) -> None:
    """Pull an image (as pods name it) through the registry mirror configured in `workdir`;
    the first pull into a node store moves and unpacks gigabytes, and says so while it lasts."""
    mirrors = workdir / "containerd" / "certs.d"
    pulling = ["images", "pull", "--local", "--hosts-dir", str(mirrors)]
    done = run_saying(
        [*ctr_command, *pulling, f"docker.io/library/{name}"],
        f"{node} pulling {name} (its first pull into this node's store)",
        timeout=PULL_TIMEOUT_SECONDS,
    )
    if done.returncode != 0:
        raise RuntimeError(f"pulling {name} on {node}: {done.stderr[-2000:]}")


# --- cgroups (v1 here; the kubelet is told to accept it) --------------------------------------


def _hierarchies() -> list[Path]:
    return [path for path in CGROUP_ROOT.iterdir() if (path / "cgroup.procs").exists()]


def _make_cgroup(relative: str) -> None:
    for hierarchy in _hierarchies():
        path = hierarchy
        for part in Path(relative).parts:
            parent, path = path, path / part
            path.mkdir(exist_ok=True)
            if hierarchy.name == "cpuset":  # a new cpuset starts with no CPUs and no memory
                for key in ("cpuset.cpus", "cpuset.mems"):
                    if not (path / key).read_text().strip():
                        (path / key).write_text((parent / key).read_text())


def cgroup_processes(relative: str) -> list[int]:
    """Every process in a cgroup (`fluxlora/<node>-<slot>`) and those below it."""
    pids = CGROUP_ROOT / "pids" / relative
    found = []
    for procs in pids.rglob("cgroup.procs") if pids.exists() else []:
        found += [int(pid) for pid in procs.read_text().split()]
    return found


def _remove_cgroup(relative: str) -> None:
    for hierarchy in _hierarchies():
        top = hierarchy / relative
        if top.exists():
            for path in sorted(
                (p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)
            ):
                with contextlib.suppress(OSError):
                    path.rmdir()
            with contextlib.suppress(OSError):
                top.rmdir()


# --- configuration ----------------------------------------------------------------------------


def _registry_mirror(registry: str) -> str:
    """docker.io as the node sees it: the cluster's registry (there is no other)."""
    return f"""server = "https://registry-1.docker.io"

[host."http://{registry}"]
  capabilities = ["pull", "resolve"]
"""


def _containerd_config(folder: Path, store: Path, pause_image: str) -> str:
    return f"""version = 3
root = "{store}/root"
state = "{folder}/state"
disabled_plugins = [
  "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.blockfile",
  "io.containerd.snapshotter.v1.erofs", "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing", "io.containerd.nri.v1.nri",
]

[grpc]
  address = "{folder}/containerd.sock"

[ttrpc]
  address = "{folder}/containerd.sock.ttrpc"

[plugins."io.containerd.internal.v1.opt"]
  path = "{folder}/opt"

[plugins."io.containerd.cri.v1.runtime"]
  netns_mounts_under_state_dir = true
  # this machine withholds CAP_SYS_RESOURCE: no OOM score below containerd's own
  restrict_oom_score_adj = true
  [plugins."io.containerd.cri.v1.runtime".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
        BinaryName = "{RUNC}"
        SystemdCgroup = false
  [plugins."io.containerd.cri.v1.runtime".cni]
    bin_dirs = ["{CNI_PLUGINS}"]
    conf_dir = "{folder}/cni"

[plugins."io.containerd.cri.v1.images"]
  snapshotter = "overlayfs"
  [plugins."io.containerd.cri.v1.images".registry]
    config_path = "{folder}/certs.d"
  [plugins."io.containerd.cri.v1.images".pinned_images]
    sandbox = "{pause_image}"
"""


def _write_containerd_config(workdir: Path, store: Path, pause: str, registry: str) -> Path:
    """containerd's configuration in `workdir` (images in `store`, docker.io mirrored by the
    cluster's `registry`); the socket it will listen on."""
    containerd_dir = workdir / "containerd"
    (workdir / "containerd.toml").write_text(_containerd_config(containerd_dir, store, pause))
    mirror = containerd_dir / "certs.d" / "docker.io" / "hosts.toml"
    mirror.parent.mkdir(parents=True, exist_ok=True)
    mirror.write_text(_registry_mirror(registry))
    return containerd_dir / "containerd.sock"


def _cni_config(link: NodeLink, addresses: Path) -> dict:
    """The pods' network. Pods' addresses are recorded in `addresses`, the node's own folder, not
    the machine's shared default: a node stopped with pods on it never releases their addresses,
    and such leaks, kept across runs, once used up a pod range and left pods without a sandbox."""
    return {
        "cniVersion": "1.0.0",
        "name": "pods",
        "plugins": [
            {
                "type": "bridge",
                "bridge": "cni0",
                "isGateway": True,
                "ipMasq": True,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": link.pod_range}]],
                    "dataDir": str(addresses),
                    "routes": [{"dst": "0.0.0.0/0"}],
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }


def _corefile(folder: Path, address: str) -> str:
    """The cluster's DNS on the node's own address: Services and pods by name, nothing else
    (there is no upstream to forward to)."""
    return f"""cluster.local:53 in-addr.arpa:53 ip6.arpa:53 {{
    bind {address}
    errors
    health 127.0.0.1:8081
    ready 127.0.0.1:8181
    kubernetes cluster.local in-addr.arpa ip6.arpa {{
        kubeconfig {folder / "coredns.kubeconfig"}
        pods insecure
    }}
    cache 5
}}
"""


def _kubelet_config(plane: ControlPlane, folder: Path, cgroup: str, socket: Path, dns: str) -> dict:
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "failCgroupV1": False,  # this machine's cgroups are v1
        "failSwapOn": False,
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": f"/{cgroup}",
        "containerRuntimeEndpoint": f"unix://{socket}",
        # Its own, not the machine's /var/log/pods: each kubelet removes the log folders of
        # pods it does not run, which would be the other nodes' (a test's `kubectl logs` lost).
        "podLogsDir": str(folder / "pod-logs"),
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(plane.kubelet_client_ca)},
        },
        "authorization": {"mode": "Webhook"},
        "readOnlyPort": 0,
        "staticPodPath": "",
        "resolvConf": "/etc/resolv.conf",
        "clusterDNS": [dns],
        "clusterDomain": "cluster.local",
        "serializeImagePulls": False,
        "registerNode": True,
        # The machine's disk is shared with everything else and may be large and nearly full:
        # evict for real shortage only (a share of a large disk is gigabytes), and do not stay
        # under pressure for minutes once it is over (pods are refused meanwhile).
        "evictionHard": {
            "memory.available": "100Mi",
            "nodefs.available": "1Gi",
            "imagefs.available": "1Gi",
        },
        "evictionPressureTransitionPeriod": "30s",
        "imageGCHighThresholdPercent": 100,
        "nodeStatusUpdateFrequency": "5s",
        "syncFrequency": "5s",
        "fileCheckFrequency": "5s",
        "volumeStatsAggPeriod": "30s",
        # A crashing container restarts at most 2 s apart (the default back-off grows from 10 s
        # to 5 minutes): a local node's pods get over a passing fault in seconds, and still
        # back off (a Kubernetes 1.35+ setting, on by default).
        "crashLoopBackOff": {"maxContainerRestartPeriod": "2s"},
    }


def _proxy_config(plane: ControlPlane, folder: Path, name: str) -> dict:
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "mode": "iptables",
        "hostnameOverride": name,
        "clusterCIDR": "10.244.0.0/16",
        "clientConnection": {"kubeconfig": str(folder / "kube-proxy.kubeconfig")},
        "conntrack": {"maxPerCore": 0},  # a node's namespace cannot size the host's table
    }


# --- the node ---------------------------------------------------------------------------------


def _in_node(link: NodeLink, cgroup: str, command: list[str]) -> list[str]:
    """The command in the node's network namespace and the node's system cgroup (every
    hierarchy), which its children (containerd's shims) inherit."""
    joins = "; ".join(
        f"echo $$ > {hierarchy / cgroup / 'system' / 'cgroup.procs'}"
        for hierarchy in _hierarchies()
    )
    return ["sh", "-c", f'{joins}; exec nsenter --net={link.namespace_path} "$@"', "node", *command]


@contextmanager
def _free_store(name: str) -> Iterator[Path]:
    """The first of this node name's stores that no running node holds (a test worker and the
    demo may each run a node of the same name), held until the node stops. Stores that no
    node has used for STALE_STORE_DAYS (made when more nodes of a name once ran at the same
    time) are deleted: each holds the images unpacked, gigabytes."""
    for number in itertools.count(1):
        store = CACHE / "nodes" / f"{name}-{number}"
        store.mkdir(parents=True, exist_ok=True)
        with (store / "lock").open("w") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue
            os.utime(store / "lock")  # when a node last took it (remove_stale_stores)
            remove_stale_stores(CACHE / "nodes", time.time() - STALE_STORE_DAYS * 86400)
            if not (store / "root").exists():
                _seed_store(store)
            yield store
            return


def _seed_store(store: Path) -> None:
    """A new store starts as a copy of the idle store a node took last, if there is one, so
    that a node of another name or a third test worker needs no first pull: the layers' blobs
    and unpacked files are hard links (containerd never changes them in place: seconds and no
    disk, against a minute and 9 GB), the rest (its databases, the runtime's state) a copy."""
    locks = sorted(store.parent.glob("*/lock"), key=lambda lock: lock.stat().st_mtime)
    for lock_file in reversed(locks):
        source = lock_file.parent / "root"
        if lock_file.parent == store or not source.is_dir():
            continue
        with lock_file.open("a") as lock:  # "a": looking must not make it recent
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a running node's containerd is writing it
            seeding = store / "root.seeding"
            shutil.rmtree(seeding, ignore_errors=True)
            try:
                shutil.copytree(source, seeding, symlinks=True, ignore=_linked_parts(source))
                for part in SHARED_STORE_PARTS:
                    if (source / part).is_dir():
                        (seeding / part).parent.mkdir(parents=True, exist_ok=True)
                        # cp keeps the owners and overlay attributes of the layers' folders.
                        subprocess.run(
                            ["cp", "-a", "--link", source / part, seeding / part],
                            check=True, capture_output=True, text=True,
                        )  # fmt: skip
            except (OSError, subprocess.CalledProcessError) as error:
                detail = getattr(error, "stderr", None) or error
                print(f"{store.name}: starts empty (copying {source} failed: {detail})")
                shutil.rmtree(seeding, ignore_errors=True)
                return
            seeding.rename(store / "root")  # whole, or not there
            print(f"{store.name}: image store made from {lock_file.parent.name}'s", flush=True)
            return


def _linked_parts(source: Path) -> Callable[[str, list[str]], list[str]]:
    """copytree's `ignore`: the parts that are hard-linked instead of copied."""
    shared = {source / part for part in SHARED_STORE_PARTS}
    return lambda folder, names: [name for name in names if Path(folder) / name in shared]


def _check_disk(folder: Path) -> None:
    """A node on a nearly full disk refuses every pod (DiskPressure) with nothing on screen:
    say so before starting one."""
    folder.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(folder).free
    if free < MIN_FREE_DISK_GIB << 30:
        raise RuntimeError(
            f"only {free / (1 << 30):.1f} GiB free on the disk of {folder}: a node needs "
            f"{MIN_FREE_DISK_GIB} GiB (its kubelet refuses pods below 1 GiB); free some space"
        )


def remove_stale_stores(folder: Path, unused_since: float) -> list[Path]:
    """Delete the node stores under `folder` that no node holds and none has taken since
    `unused_since` (a store's lock file is touched each time a node takes it); returns them."""
    removed = []
    for lock_file in sorted(folder.glob("*/lock")):
        if lock_file.stat().st_mtime >= unused_since:
            continue
        with lock_file.open("a") as lock:  # "a": taking it to look must not make it recent
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue
            _unmount_under(lock_file.parent)
            shutil.rmtree(lock_file.parent, ignore_errors=True)
            removed.append(lock_file.parent)
    return removed


def _unmount_under(folder: Path) -> None:
    found = subprocess.run(
        ["findmnt", "-rn", "-o", "TARGET"], capture_output=True, text=True, check=False
    ).stdout.split()
    for target in sorted((t for t in found if t.startswith(f"{folder}/")), key=len, reverse=True):
        subprocess.run(["umount", "-l", target], capture_output=True, check=False)


def _wait_for_containerd(ctr_command: list[str], process: subprocess.Popen, name: str) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while subprocess.run([*ctr_command, "version"], capture_output=True, timeout=10).returncode:
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"containerd on {name} did not start; see containerd.log")
        time.sleep(0.2)


def _wait_ready(plane: ControlPlane, name: str, servers: list[Starting]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        for server in servers:
            ensure_running(*server)
        done = plane.kubectl(
            "get",
            "node",
            name,
            "-o",
            'jsonpath={.status.conditions[?(@.type=="Ready")].status}',
        )
        if done.stdout == "True":
            return
        time.sleep(0.5)
    raise RuntimeError(f"node {name} was not Ready within {READY_TIMEOUT_SECONDS} s")


def fill_store(images: tuple[str, ...], name: str = FIRST_NODE) -> bool:
    """Pull `images` into an image store for node `name` with containerd alone (no kubelet, no
    network of its own), unless the machine has one already; whether it filled one. A cold
    `make images` does this while the other servers still compile, so that the first node
    starts in seconds instead of unpacking gigabytes then (later pulls move changed layers)."""
    if any((CACHE / "nodes").glob(f"{name}-*")):
        return False
    _check_disk(CACHE)
    print(f"filling {name}'s image store (a first pull unpacks about 6 GB), so that it starts "
          "in seconds ...", flush=True)  # fmt: skip
    runtime = ensure_runtime()
    pause = pause_image()
    with (
        _free_store(name) as store,
        running_registry() as registry,
        tempfile.TemporaryDirectory(prefix="fluxlora-store-") as folder,
    ):
        workdir = Path(folder)
        socket = _write_containerd_config(workdir, store, pause, registry)
        ctr_command = _ctr_command(runtime["ctr"], socket)
        containerd = [str(runtime["containerd"]), "--config", str(workdir / "containerd.toml")]
        process = start(containerd, workdir / "containerd.log")
        try:
            _wait_for_containerd(ctr_command, process, name)
            for image in (pause, *images):
                _pull(ctr_command, workdir, image, name)
        except RuntimeError as error:  # its folder goes: say what containerd said
            log = (workdir / "containerd.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"filling {name}'s image store: {error}\n{log}") from None
        finally:
            stop(process)
    return True


@contextmanager
def running_node(
    plane: ControlPlane,
    workdir: Path,
    name: str = FIRST_NODE,
    gpus: int = 1,
    images: tuple[str, ...] = (),
    taints: tuple[str, ...] = (),
) -> Iterator[Node]:
    """A Ready node holding `images` (pulled from the cluster's registry), `gpus` GPUs and `taints`
    (key=value:Effect) from its registration on; on leaving, everything it ran is killed and
    unmounted and its network removed."""
    _check_disk(CACHE)
    binaries = ensure_node()
    pause = pause_image()
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    with _free_store(name) as store, running_registry() as registry:
        link = create_link()
        cgroup = f"fluxlora/{name}-{link.slot}"
        containerd_dir = workdir / "containerd"
        (containerd_dir / "cni").mkdir(parents=True, exist_ok=True)
        (containerd_dir / "cni" / "10-pods.conflist").write_text(
            json.dumps(_cni_config(link, containerd_dir / "pod-addresses"))
        )
        socket = _write_containerd_config(workdir, store, pause, registry)
        for file, body in (
            (
                "kubelet.kubeconfig",
                kubeconfig(plane.server, plane.node_tokens[name], plane.ca_file, "node"),
            ),
            (
                "kube-proxy.kubeconfig",
                kubeconfig(plane.server, plane.proxy_token, plane.ca_file, "node"),
            ),
            (
                "coredns.kubeconfig",
                kubeconfig(plane.server, plane.dns_token, plane.ca_file, "node"),
            ),
            ("kubelet.yaml", _kubelet_config(plane, workdir, cgroup, socket, link.node_address)),
            ("kube-proxy.yaml", _proxy_config(plane, workdir, name)),
        ):
            (workdir / file).write_text(yaml.safe_dump(body))
        servers: list[Starting] = []

        def launch(server: str, command: list[str], **options) -> subprocess.Popen:
            """One of the node's servers, in its network and cgroup, logging to <server>.log."""
            log = workdir / f"{server}.log"
            process = start(_in_node(link, cgroup, command), log, **options)
            servers.append((f"{server} on {name}", process, log))
            return process

        node = Node(name, link, workdir, store, socket, binaries["ctr"])
        # The slot's network was free, so anything in its volumes is a killed run's leftover.
        shutil.rmtree(node.volumes, ignore_errors=True)
        node.volumes.mkdir(mode=0o755, parents=True)
        try:
            _make_cgroup(f"{cgroup}/system")
            shims = binaries["containerd"].parent  # containerd finds its runc shim on PATH
            environment = {**os.environ, "PATH": f"{shims}:{os.environ['PATH']}"}
            containerd = launch(
                "containerd",
                [str(binaries["containerd"]), "--config", str(workdir / "containerd.toml")],
                env=environment,
            )
            _wait_for_containerd(node._ctr_command(), containerd, name)
            for each in (pause, *images):
                node.pull(each)
            launch(
                "kubelet",
                [
                    str(binaries["kubelet"]),
                    "--config",
                    str(workdir / "kubelet.yaml"),
                    "--kubeconfig",
                    str(workdir / "kubelet.kubeconfig"),
                    "--root-dir",
                    str(workdir / "kubelet"),
                    "--cert-dir",
                    str(workdir / "kubelet-pki"),
                    "--hostname-override",
                    name,
                    "--node-ip",
                    link.node_address,
                    "--node-labels",
                    "nvidia.com/gpu.present=true,nvidia.com/gpu.product=Test-GPU",
                    f"--register-with-taints={','.join(taints)}",
                    "--v",
                    "1",
                ],
                env=environment,
            )
            launch(
                "kube-proxy",
                [str(binaries["kube-proxy"]), "--config", str(workdir / "kube-proxy.yaml")],
            )
            (workdir / "Corefile").write_text(_corefile(workdir, link.node_address))
            launch("coredns", [str(binaries["coredns"]), "-conf", str(workdir / "Corefile")])
            launch(
                "gpu-device-plugin",
                [
                    str(binaries["gpu-device-plugin"]),
                    "--resource",
                    GPU_RESOURCE,
                    "--count",
                    str(gpus),
                    "--registry-dir",
                    str(workdir / "kubelet" / "plugins_registry"),
                ],
            )
            _wait_ready(plane, name, servers)
            _wait_for_gpus(plane, name, gpus)
            yield node
        finally:
            for _, process, _ in reversed(servers):
                stop(process)
            for _ in range(50):  # the containers, their shims, anything left
                pids = cgroup_processes(cgroup)
                if not pids:
                    break
                for pid in pids:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, 9)
                time.sleep(0.1)
            _unmount_under(workdir)
            _unmount_under(store)
            _remove_cgroup(cgroup)
            shutil.rmtree(node.volumes, ignore_errors=True)
            remove_link(link)


def _wait_for_gpus(plane: ControlPlane, name: str, gpus: int) -> None:
    """Until the kubelet reports the plugin's GPUs as allocatable (the plugin registers as soon
    as the kubelet's socket is up; the kubelet's next status update carries them)."""
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        done = plane.kubectl("get", "node", name, "-o", "json")
        allocatable = json.loads(done.stdout or "{}").get("status", {}).get("allocatable", {})
        if allocatable.get(GPU_RESOURCE) == str(gpus):
            return
        time.sleep(0.5)
    raise RuntimeError(
        f"node {name} did not report {gpus} {GPU_RESOURCE}; see gpu-device-plugin.log"
    )
