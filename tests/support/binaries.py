"""Third-party servers the tests run for real, built from source with Go at pinned versions and
cached outside the repository (one build per machine and version).

Binaries named by the envtest conventions are used as they are: KUBEBUILDER_ASSETS (a folder
with kube-apiserver and etcd) and TEST_ASSET_<NAME> (one binary, e.g. TEST_ASSET_KUBE_APISERVER).
"""

import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

# One place for every pinned version. MinIO publishes no semver tags: this pseudo-version is
# its RELEASE of 2026-02-12. Kubernetes is pinned by the k8s.io/kubernetes line of
# k8s-build/go.mod (etcd and kubectl come from the same module graph).
MINIO = ("github.com/minio/minio", "v0.0.0-20260212201848-7aac2a2c5b7c")
HELM = ("helm.sh/helm/v4/cmd/helm", "v4.3.1")
KUBE_BUILD = Path(__file__).with_name("k8s-build")
KUBE_PACKAGES = {
    "kube-apiserver": "k8s.io/kubernetes/cmd/kube-apiserver",
    "kube-controller-manager": "k8s.io/kubernetes/cmd/kube-controller-manager",
    "kube-scheduler": "k8s.io/kubernetes/cmd/kube-scheduler",
    "kubectl": "k8s.io/kubernetes/cmd/kubectl",
    "etcd": "go.etcd.io/etcd/server/v3",
}
CACHE = Path(os.environ.get("FLUXLORA_CACHE", Path.home() / ".cache" / "flux-lora-operator"))
BUILD_TIMEOUT_SECONDS = 2400


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


def _build_once(directory: Path, build) -> None:
    """Run `build(staging)` once per machine: under a lock, into a folder renamed into place."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    with open(directory.parent / f".{directory.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if directory.exists():
            return
        staging = directory.with_name(directory.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        # Only a cold machine gets here, for minutes: say so.
        print(f"building {directory.name} with Go (once per machine, minutes) ...", flush=True)
        began = time.monotonic()
        build(staging)
        staging.rename(directory)
        print(f"built {directory.name} in {time.monotonic() - began:.0f} s", flush=True)


def _run(command: list[str], **options) -> None:
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=BUILD_TIMEOUT_SECONDS, **options
    )
    if result.returncode != 0:
        raise BinaryUnavailable(f"{' '.join(command[:3])} failed:\n{result.stderr[-3000:]}")


def _go_install(name: str, package: str, version: str) -> Path:
    """`go install package@version` once per machine, unless TEST_ASSET_<NAME> names one."""
    override = _override(name)
    if override:
        return override
    directory = CACHE / "bin" / f"{name}-{version}"

    def build(staging: Path) -> None:
        environment = {**os.environ, "GOBIN": str(staging), "CGO_ENABLED": "0"}
        _run([_go(), "install", f"{package}@{version}"], env=environment)

    _build_once(directory, build)
    return directory / name


def ensure_minio() -> Path:
    return _go_install("minio", *MINIO)


def ensure_helm() -> Path:
    return _go_install("helm", *HELM)


def kubernetes_version() -> str:
    match = re.search(
        r"^\s*k8s\.io/kubernetes (v[\d.]+)", (KUBE_BUILD / "go.mod").read_text(), re.M
    )
    if not match:
        raise BinaryUnavailable("k8s-build/go.mod names no k8s.io/kubernetes version")
    return match.group(1)


def ensure_control_plane() -> dict[str, Path]:
    """kube-apiserver, kube-controller-manager, kube-scheduler, kubectl and etcd."""
    found = {name: _override(name) for name in KUBE_PACKAGES}
    if all(found.values()):
        return found  # type: ignore[return-value]
    version = kubernetes_version()
    pins = hashlib.sha256(
        (KUBE_BUILD / "go.sum").read_bytes() + " ".join(KUBE_PACKAGES).encode()
    ).hexdigest()[:8]
    directory = CACHE / "bin" / f"kubernetes-{version}-{pins}"
    major, minor = version[1:].split(".")[:2]
    flags = " ".join(
        f"-X k8s.io/component-base/version.{key}={value}"
        for key, value in (("gitVersion", version), ("gitMajor", major), ("gitMinor", minor))
    )

    def build(staging: Path) -> None:
        for name, package in KUBE_PACKAGES.items():
            _run(
                [_go(), "build", "-o", str(staging / name), "-ldflags", flags, package],
                cwd=KUBE_BUILD,
                env={**os.environ, "CGO_ENABLED": "0"},
            )

    _build_once(directory, build)
    return {name: found[name] or directory / name for name in KUBE_PACKAGES}


if __name__ == "__main__":
    # `make test` builds the servers first, so no test's time limit includes a cold Go build.
    print(ensure_minio())
    print(ensure_helm())
    for binary in ensure_control_plane().values():
        print(binary)
