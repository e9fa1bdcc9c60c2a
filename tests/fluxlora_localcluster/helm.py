"""The real helm binary (built by binaries.py), with its config, cache and data kept out of the
user's home so tests never touch their repositories or plugins."""

import subprocess
import tempfile
from pathlib import Path

from fluxlora_kube.paths import path
from fluxlora_localcluster.binaries import ensure_helm

CHART = Path(__file__).resolve().parents[2] / "charts" / "flux-lora-operator"
# Removed when the process exits (each test process held its own, a few MB of helm's caches).
_HOME_FOLDER = tempfile.TemporaryDirectory(prefix="fluxlora-helm-")
_HOME = Path(_HOME_FOLDER.name)


def helm(*args: str, kubeconfig: Path | None = None) -> subprocess.CompletedProcess:
    environment = {
        "HOME": str(_HOME),
        "PATH": "/usr/bin:/bin",
        "HELM_CONFIG_HOME": str(_HOME / "config"),
        "HELM_CACHE_HOME": str(_HOME / "cache"),
        "HELM_DATA_HOME": str(_HOME / "data"),
    }
    if kubeconfig is not None:
        environment["KUBECONFIG"] = str(kubeconfig)
    return subprocess.run(
        [str(ensure_helm()), *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=environment,
        check=False,
    )


def uninstall(kube, kubeconfig: Path, namespace: str) -> subprocess.CompletedProcess:
    """`helm uninstall --wait` of the tests' release, then its namespace deleted whatever helm
    answered (the caller asserts the answer once the namespace is on its way)."""
    uninstalled = helm("uninstall", "fluxlora", "--namespace", namespace, "--wait",
                       kubeconfig=kubeconfig)  # fmt: skip
    kube.request("DELETE", path("Namespace", name=namespace))
    return uninstalled


def render(*values: str) -> str:
    """`helm template` of the chart with `--set` values; fails the caller on an error."""
    arguments = [item for value in values for item in ("--set", value)]
    result = helm("template", "fluxlora", str(CHART), "--namespace", "fluxlora-system", *arguments)
    if result.returncode != 0:
        raise AssertionError(result.stderr)
    return result.stdout
