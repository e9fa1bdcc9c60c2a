"""Kubeconfig files: the one writer for the control plane's admin, the node's components and the
operator process of the tests."""

from pathlib import Path
from typing import Any

import yaml


def kubeconfig(
    server: str, token: str, ca_file: Path | None = None, user: str = "admin"
) -> dict[str, Any]:
    """A kubeconfig with one cluster, one token user and a current context of both."""
    cluster: dict[str, Any] = {"server": server}
    if ca_file is not None:
        cluster["certificate-authority"] = str(ca_file)
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "local", "cluster": cluster}],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": "local", "context": {"cluster": "local", "user": user}}],
        "current-context": "local",
    }


def write_kubeconfig(path: Path, *args: Any, **kwargs: Any) -> Path:
    """kubeconfig(*args, **kwargs) written to `path`."""
    path.write_text(yaml.safe_dump(kubeconfig(*args, **kwargs)))
    return path
