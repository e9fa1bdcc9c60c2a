"""Third-party servers the tests run for real, built from source with Go at pinned versions and
cached outside the repository (one build per machine and version).

Binaries named by the envtest conventions are used as they are: KUBEBUILDER_ASSETS (a folder
with kube-apiserver and etcd) and TEST_ASSET_<NAME> (one binary, e.g. TEST_ASSET_KUBE_APISERVER).
"""

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

# One place for every pinned version. The servers share one module graph, servers-build/go.mod,
# so that what they have in common (client-go, apimachinery, grpc, protobuf, ...) is compiled
# once and all of them are linked by one `go build`: Kubernetes is pinned by its
# k8s.io/kubernetes line (etcd and kubectl come from the same graph), containerd, CoreDNS,
# distribution, helm and MinIO by theirs (MinIO publishes no semver tags: its pseudo-version
# there is its RELEASE of 2026-02-12). Kueue keeps a graph of its own (it pins older
# Kubernetes libraries than the control plane's).
SERVERS_BUILD = Path(__file__).with_name("servers-build")
KUBERNETES_PACKAGES = {
    "kube-apiserver": "k8s.io/kubernetes/cmd/kube-apiserver",
    "kube-controller-manager": "k8s.io/kubernetes/cmd/kube-controller-manager",
    "kube-scheduler": "k8s.io/kubernetes/cmd/kube-scheduler",
    "kubectl": "k8s.io/kubernetes/cmd/kubectl",
    "kubelet": "k8s.io/kubernetes/cmd/kubelet",
    "kube-proxy": "k8s.io/kubernetes/cmd/kube-proxy",
    "etcd": "go.etcd.io/etcd/server/v3",
}
# containerd, its shim and ctr: a build of their own too, made right after the registry's, so
# that a cold `make images` can fill the first node's image store while the rest compiles.
CONTAINERD_PACKAGES = {
    "containerd": "github.com/containerd/containerd/v2/cmd/containerd",
    "containerd-shim-runc-v2": "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2",
    "ctr": "github.com/containerd/containerd/v2/cmd/ctr",
}
SERVER_PACKAGES = {
    **KUBERNETES_PACKAGES,
    "helm": "helm.sh/helm/v4/cmd/helm",
    "minio": "github.com/minio/minio",
    # The cluster's DNS: CoreDNS with only a cluster's plugins.
    "coredns": "fluxlora.dev/tests/servers/dns",
    # Our own small device plugin (the kubelet's device-plugin API from k8s.io/kubelet):
    # NVIDIA's needs a GPU and its driver to start.
    "gpu-device-plugin": "fluxlora.dev/tests/servers/gpu",
}
# The image registry nodes pull from: distribution's, with its filesystem storage only. From
# the same graph, but a build of its own: a cold `make images` pushes as soon as its images are
# built, long before the other servers are.
REGISTRY_PACKAGES = {"registry": "fluxlora.dev/tests/servers/registry"}
# Kueue's manager, pinned by kueue-build/go.mod (its CRDs and webhooks come from that module).
KUEUE_BUILD = Path(__file__).with_name("kueue-build")
KUEUE_MODULE = "sigs.k8s.io/kueue"
KUEUE_PACKAGES = {"kueue": f"{KUEUE_MODULE}/cmd/kueue"}
# Earlier builds' cache folders, one module graph each before servers-build: removed once
# servers-build is built (hundreds of MB each).
RETIRED_FAMILIES = ("kubernetes", "containerd", "coredns", "gpu-plugin", "helm", "minio")
CACHE = Path(os.environ.get("FLUXLORA_CACHE", Path.home() / ".cache" / "flux-lora-operator"))
BUILD_TIMEOUT_SECONDS = 2400
LINK_FLAGS = "-s -w"  # no symbol table or DWARF: links faster, panics still name functions
# The linker drops DWARF (-w), so the compiler need not make it: 12% less CPU for a cold build
# (kube-scheduler alone: 301 CPU-s instead of 341).
COMPILE_FLAGS = "all=-dwarf=false"
# The compiler and linker are Go programs, and at the collector's default (GOGC=100) much of
# their CPU goes to collecting. At 400, from an empty build cache, client-go took 108
# CPU-seconds instead of 130 (two runs each) and kube-scheduler 343 instead of 389, its largest
# compile 1.6 GB instead of 1.5; the soft limit bounds each process on a small machine.
BUILD_ENVIRONMENT = {"CGO_ENABLED": "0", "GOGC": "400", "GOMEMLIMIT": "3GiB"}


class BinaryUnavailable(RuntimeError):
    pass


def _override(name: str) -> Path | None:
    single = os.environ.get("TEST_ASSET_" + name.upper().replace("-", "_"))
    if single:
        return Path(single)
    assets = os.environ.get("KUBEBUILDER_ASSETS")
    if assets and (Path(assets) / name).exists():
        return Path(assets) / name
    return None


def _go() -> str:
    go = shutil.which("go")
    if go is None:
        raise BinaryUnavailable("Go is needed to build the test servers (or set TEST_ASSET_*)")
    return go


REPORT_SECONDS = 15  # a person waiting on a cold build sees a line at least this often


class Compilation:
    """One `go build -v` in a thread, counting the packages it compiles (`-v`
    names each one) against the total that `listing` (a `go list -deps`) finds, if given, so a
    cold build can say how far along it is."""

    def __init__(self, name: str, command: list[str], listing: list[str] | None = None, **options):
        self.name, self.total, self.compiled, self.began = name, None, 0, time.monotonic()
        self.output: list[str] = []
        self.process: subprocess.Popen | None = None
        self.thread = threading.Thread(target=self._run, args=(command, listing, options))
        self.thread.start()

    def _run(self, command: list[str], listing: list[str] | None, options: dict) -> None:
        if listing:
            found = subprocess.run(listing, capture_output=True, text=True, **options)
            self.total = len(found.stdout.split()) if found.returncode == 0 else None
        self.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **options
        )
        for line in self.process.stdout:
            self.output = [*self.output[-40:], line]
            self.compiled += 1
        self.process.wait()

    def progress(self) -> str:
        if self.process is None:
            return f"{self.name} (fetching its modules)"
        of = f" of ~{self.total}" if self.total else ""
        return f"{self.name} ({self.compiled}{of} packages)"

    def wait(self) -> None:
        self.thread.join(timeout=BUILD_TIMEOUT_SECONDS)
        if self.thread.is_alive() and self.process is not None:
            self.process.kill()
        self.thread.join()
        if self.process is None or self.process.returncode != 0:
            command = " ".join(self.process.args[:3]) if self.process else self.name
            raise BinaryUnavailable(f"{command} failed:\n{''.join(self.output)[-3000:]}")


_compiling: list[Compilation] = []  # every build under way, for one progress line for all
_saying = threading.Lock()
_reporter: threading.Thread | None = None


def _say(line: str) -> None:
    """One whole line at a time: builds run in threads."""
    with _saying:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def _start_reporting(compilation: Compilation) -> None:
    """Add a build to the progress line; start the line's thread unless one is running."""
    global _reporter
    with _saying:
        _compiling.append(compilation)
        if _reporter is None or not _reporter.is_alive():
            _reporter = threading.Thread(target=_report, daemon=True)
            _reporter.start()


def _report() -> None:
    began = time.monotonic()
    while _compiling:
        time.sleep(REPORT_SECONDS)
        if _compiling:
            so_far = f"{time.monotonic() - began:.0f} s so far"
            _say(f"  compiling {', '.join(c.progress() for c in _compiling)}: {so_far}")


def _build_once(
    directory: Path, family: str, compile_into, finish=None, retired: tuple[str, ...] = ()
) -> None:
    """Build into `directory` once per machine: under a lock, into a folder renamed into place,
    then remove the family's older builds (other versions or pins: hundreds of MB each) and
    those of the `retired` families it replaces. `compile_into(staging)` starts the build and
    returns its Compilation; `finish(staging)` runs after it."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    with open(directory.parent / f".{directory.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if directory.exists():
            return
        staging = directory.with_name(directory.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        # Only a cold machine gets here, for minutes: say so, and keep saying how far along.
        _say(f"compiling {directory.name} with Go, once per machine (the servers: about ten "
             "minutes on 2 cores) ...")  # fmt: skip
        compilation = compile_into(staging)
        _start_reporting(compilation)
        try:
            compilation.wait()
        finally:
            _compiling.remove(compilation)
        if finish:
            finish(staging)
        staging.rename(directory)
        for older in [o for f in (family, *retired) for o in directory.parent.glob(f"{f}-v*")]:
            if older != directory and older.is_dir() and not older.name.endswith(".partial"):
                shutil.rmtree(older, ignore_errors=True)
        took = time.monotonic() - compilation.began
        _say(f"compiled {directory.name} in {took:.0f} s ({compilation.compiled} packages)")


def _pinned(build: Path, module: str) -> str:
    go_mod = (build / "go.mod").read_text()
    match = re.search(rf"^\s*(?:require\s+)?{re.escape(module)} (v[\d.]+)", go_mod, re.M)
    if not match:
        raise BinaryUnavailable(f"{build.name}/go.mod names no {module} version")
    return match.group(1)


def kubernetes_version() -> str:
    return _pinned(SERVERS_BUILD, "k8s.io/kubernetes")


def _build_module(
    name: str,
    build: Path,
    packages: dict[str, str],
    version: str,
    link_flags: str = LINK_FLAGS,
    retired: tuple[str, ...] = (),
) -> dict[str, Path]:
    """Every command of `packages` from the module graph of `build` in one `go build` (they
    share most packages, and `go build` links them in parallel), once per machine and pin."""
    found = {command: _override(command) for command in packages}
    if all(found.values()):
        return found  # type: ignore[return-value]
    pins = hashlib.sha256(" ".join(packages).encode())
    for source in sorted(build.rglob("*")):  # go.mod, go.sum and our own Go files
        if source.is_file():
            pins.update(source.read_bytes())
    directory = CACHE / "bin" / f"{name}-{version}-{pins.hexdigest()[:8]}"

    def compile_into(staging: Path) -> Compilation:
        paths = list(packages.values())
        flags = ["-ldflags", link_flags, "-gcflags", COMPILE_FLAGS]
        return Compilation(
            name,
            [_go(), "build", "-v", "-o", f"{staging}/", *flags, *paths],
            [_go(), "list", "-deps", *paths],
            cwd=build,
            env={**os.environ, **BUILD_ENVIRONMENT},
        )

    def finish(staging: Path) -> None:
        for command, package in packages.items():
            # Go names a binary after its package's folder, or the one above a /vN suffix
            parts = package.split("/")
            built = staging / (parts[-2] if re.fullmatch(r"v\d+", parts[-1]) else parts[-1])
            if built.name != command:
                built.rename(staging / command)

    _build_once(directory, name, compile_into, finish, retired)
    return {command: found[command] or directory / command for command in packages}


def ensure_servers() -> dict[str, Path]:
    """The control plane (kube-apiserver, kube-controller-manager, kube-scheduler, etcd),
    kubectl, a node's kubelet, kube-proxy, CoreDNS and GPU device plugin, helm and MinIO: one
    build."""
    version = kubernetes_version()
    major, minor = version[1:].split(".")[:2]
    stamps = " ".join(
        f"-X k8s.io/component-base/version.{key}={value}"
        for key, value in (("gitVersion", version), ("gitMajor", major), ("gitMinor", minor))
    )
    link_flags = f"{LINK_FLAGS} {stamps}"
    return _build_module(
        "servers", SERVERS_BUILD, SERVER_PACKAGES, version, link_flags, retired=RETIRED_FAMILIES
    )


def ensure_kubernetes() -> dict[str, Path]:
    servers = ensure_servers()
    return {command: servers[command] for command in KUBERNETES_PACKAGES}


def ensure_helm() -> Path:
    return ensure_servers()["helm"]


def ensure_minio() -> Path:
    return ensure_servers()["minio"]


def ensure_registry() -> Path:
    version = _pinned(SERVERS_BUILD, "github.com/distribution/distribution/v3")
    return _build_module("registry", SERVERS_BUILD, REGISTRY_PACKAGES, version)["registry"]


def ensure_runtime() -> dict[str, Path]:
    """containerd, its runc shim and ctr."""
    version = _pinned(SERVERS_BUILD, "github.com/containerd/containerd/v2")
    return _build_module("runtime", SERVERS_BUILD, CONTAINERD_PACKAGES, version)


def ensure_kueue() -> Path:
    """Kueue's manager."""
    version = _pinned(KUEUE_BUILD, KUEUE_MODULE)
    return _build_module("kueue", KUEUE_BUILD, KUEUE_PACKAGES, version)["kueue"]


def kueue_source() -> Path:
    """The pinned Kueue module's source (config/ holds its CRDs and webhook manifests): from
    Go's module cache, downloaded again where that cache no longer holds it (the binary may
    come from a build made with another module cache, or before it was cleaned)."""
    found = subprocess.run(
        [_go(), "mod", "download", "-json", KUEUE_MODULE],
        cwd=KUEUE_BUILD, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return Path(json.loads(found)["Dir"])


def ensure_node() -> dict[str, Path]:
    """What a real node runs, from Go: containerd, its shim and ctr, kubelet, kube-proxy, the
    cluster's DNS and the GPU device plugin."""
    servers = ensure_servers()
    node = ("coredns", "gpu-device-plugin", "kubelet", "kube-proxy")
    return {**ensure_runtime(), **{command: servers[command] for command in node}}


# What each of the two commands needs built: the demo runs no Kueue. Each tuple is built in
# order, the tuples at the same time: the servers after the registry and containerd, whose
# packages (the standard library, grpc, otel, ...) they reuse from Go's cache instead of
# compiling them a second time beside them; Kueue, a graph of its own, beside them.
BUILDS = {
    "demo": ((ensure_registry, ensure_runtime, ensure_servers),),
    "test": ((ensure_registry, ensure_runtime, ensure_servers), (ensure_kueue,)),
}


def _in_order(ensures: tuple) -> list:
    return [ensure() for ensure in ensures]


def ensure_all(purpose: str = "test") -> list[Path]:
    """Every server `purpose` needs, the missing ones compiled (module downloads, compiles and
    links of independent builds overlap; one progress line covers them all)."""
    chains = BUILDS[purpose]
    with ThreadPoolExecutor(len(chains)) as pool:
        found = [each for chain in pool.map(_in_order, chains) for each in chain]
    return [
        path for each in found for path in (each.values() if isinstance(each, dict) else [each])
    ]


if __name__ == "__main__":
    # `make test` builds the servers first, so no test's time limit includes a cold Go build.
    began = time.monotonic()
    servers = ensure_all(*sys.argv[1:])
    print(f"servers ready ({len(servers)} binaries, {time.monotonic() - began:.0f} s)")
