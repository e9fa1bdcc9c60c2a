"""Third-party servers the tests run for real, built from source with `go install` at pinned
versions and cached outside the repository (one build per machine and version).

A binary named by TEST_ASSET_<NAME> (the envtest convention) is used as is.
"""

import os
import shutil
import subprocess
from pathlib import Path

# One place for every pinned version.
VERSIONS = {
    # MinIO publishes no semver tags; this is the pseudo-version of its RELEASE of 2026-02-12.
    "minio": ("github.com/minio/minio", "v0.0.0-20260212201848-7aac2a2c5b7c"),
}
CACHE = Path(os.environ.get("FLUXLORA_CACHE", Path.home() / ".cache" / "flux-lora-operator"))
BUILD_TIMEOUT_SECONDS = 1800


class BinaryUnavailable(RuntimeError):
    pass


def ensure_binary(name: str) -> Path:
    """The path of `name`, built once per machine and version if needed."""
    override = os.environ.get(f"TEST_ASSET_{name.upper()}")
    if override:
        return Path(override)
    module, version = VERSIONS[name]
    directory = CACHE / "bin" / f"{name}-{version}"
    binary = directory / name
    if binary.exists():
        return binary
    go = shutil.which("go")
    if go is None:
        raise BinaryUnavailable(
            f"{name}: Go is needed to build it (or set TEST_ASSET_{name.upper()})"
        )
    staging = directory.with_name(directory.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    environment = {**os.environ, "GOBIN": str(staging), "CGO_ENABLED": "0"}
    result = subprocess.run(
        [go, "install", f"{module}@{version}"],
        env=environment,
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT_SECONDS,
    )
    if result.returncode != 0:
        raise BinaryUnavailable(f"{name}: go install failed:\n{result.stderr[-3000:]}")
    shutil.rmtree(directory, ignore_errors=True)
    staging.rename(directory)  # appears whole or not at all
    return binary
