"""The project's two images, built here from their Dockerfiles as a user builds them, without a
registry or a Docker engine: buildah (Debian's package) runs the Dockerfiles with their layers
cached, on a base made of Debian packages by mmdebstrap in place of the public default base
(same Python minor version). Each image is then pushed to the cluster's registry (registry.py),
from which nodes pull it under the name the chart and the operator use. A kubelet also needs a
pause image: built from the pause.c of the pinned Kubernetes module.

`python -m fluxlora_localcluster.images` builds both (what `make images` runs)."""

import fcntl
import glob
import hashlib
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from fluxlora_localcluster.binaries import CACHE, SERVERS_BUILD, kubernetes_version
from fluxlora_localcluster.processes import run_saying
from fluxlora_localcluster.registry import (
    collect_garbage,
    published_id,
    reference,
    running_registry,
)

ROOT = Path(__file__).resolve().parents[2]
STORAGE = CACHE / "containers"
PUSH_PORT = 5000  # the registry's address while pushing (see publish)
PUSH_LOCK = CACHE / "registry" / "push.lock"
# Debian 12: its python3 is 3.11, the minor version of the Dockerfiles' default python:3.11-slim.
SUITE = "bookworm"
BASE_PACKAGES = ("python3", "python3-venv", "ca-certificates")
BUILD_TIMEOUT_SECONDS = 3600
# The host's own package-index and certificate settings, seen by the builds' RUN steps (read
# only, not kept in the image), so a build reaches the same package index the host reaches.
HOST_SETTINGS = ("/etc/pip.conf", "/etc/ssl/certs/ca-certificates.crt")
# The wheel cache the host's install filled (the Makefile's UV_CACHE_DIR), mounted into the
# builds' RUN steps: the images install the same pins from it instead of downloading 3 GB again.
UV_CACHE = CACHE / "uv"
UV_CACHE_MOUNT = "/uv-cache"


@dataclass(frozen=True)
class Image:
    dockerfile: str
    repository: str  # the name the chart and the operator use

    def name(self, version: str) -> str:
        return f"{self.repository}:{version}"


IMAGES = {
    "operator": Image("operator/Dockerfile", "flux-lora-operator"),
    "trainer": Image("trainer-image/Dockerfile", "flux-lora-trainer"),
}


class ImageBuildFailed(RuntimeError):
    pass


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


STORAGE_OPTIONS = (
    "--root", str(STORAGE / "storage"), "--runroot", str(STORAGE / "run"),
    "--storage-driver", "overlay",
)  # fmt: skip


def buildah(*args: str, quiet: bool = True, saying: str | None = None, **options) -> str:
    """Run buildah on the project's image storage (in the cache); its output, when `quiet`.
    `saying`: what it does, said every few seconds while it lasts (quiet, and minutes long)."""
    command = ["buildah", *STORAGE_OPTIONS, *args]
    if saying:
        done = run_saying(command, saying, timeout=BUILD_TIMEOUT_SECONDS, **options)
    else:
        done = subprocess.run(
            command,
            stdout=subprocess.PIPE if quiet else None,
            stderr=subprocess.PIPE if quiet else None,
            text=True,
            timeout=BUILD_TIMEOUT_SECONDS,
            check=False,
            **options,
        )
    if done.returncode != 0:
        detail = (done.stderr or "")[-3000:] if quiet else "(its output is above)"
        raise ImageBuildFailed(f"buildah {' '.join(args[:2])} failed: {detail}")
    return done.stdout or ""


def image_id(name: str) -> str | None:
    try:
        ids = buildah("images", "--quiet", "--no-trunc", name).split()
    except ImageBuildFailed:
        return None
    return ids[0].removeprefix("sha256:") if ids else None


def _apt_sources() -> str:
    """The host's Debian sources (a deb822 file), which mmdebstrap pastes into the chroot."""
    found = sorted(glob.glob("/etc/apt/sources.list.d/*.sources"))
    if not found:
        raise ImageBuildFailed("no Debian sources (/etc/apt/sources.list.d/*.sources) found")
    return found[0]


def base_image() -> str:
    """A Python 3.11 base from Debian's packages, once per machine and package list."""
    key = hashlib.sha256(repr((SUITE, BASE_PACKAGES)).encode()).hexdigest()[:8]
    name = f"localhost/fluxlora-base:{SUITE}-{key}"
    if image_id(name):
        return name
    STORAGE.mkdir(parents=True, exist_ok=True)
    rootfs = STORAGE / f"base-{key}.tar"
    _say(f"making the base image from Debian {SUITE}'s packages with mmdebstrap (once) ...")
    began = time.monotonic()
    done = subprocess.run(
        [
            "mmdebstrap",
            "--variant=minbase",
            "--quiet",
            f"--include={','.join(BASE_PACKAGES)}",
            '--aptopt=Acquire::Retries "3"',
            '--customize-hook=rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*',
            SUITE,
            str(rootfs),
            _apt_sources(),
        ],
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT_SECONDS,
        check=False,
    )
    if done.returncode != 0:
        raise ImageBuildFailed(f"mmdebstrap failed: {done.stderr[-3000:]}")
    container = buildah("from", "scratch").strip()
    try:
        buildah("add", container, str(rootfs), "/")
        buildah(
            "config",
            "--env",
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "--cmd",
            '["python3"]',
            container,
        )
        buildah("commit", "--rm", container, name)
    except BaseException:
        buildah("rm", container)
        raise
    finally:
        rootfs.unlink(missing_ok=True)
    _say(f"made {name} in {time.monotonic() - began:.0f} s")
    return name


def pause_image() -> str:
    """The kubelet's sandbox image, from the pinned Kubernetes module's own pause.c."""
    version = kubernetes_version()
    name = f"fluxlora-pause:{version}"
    if image_id(name):
        return name
    modules = subprocess.run(
        ["go", "env", "GOMODCACHE"], capture_output=True, text=True, check=True, cwd=SERVERS_BUILD
    ).stdout.strip()
    subprocess.run(
        ["go", "mod", "download", f"k8s.io/kubernetes@{version}"], cwd=SERVERS_BUILD, check=True
    )
    source = Path(modules) / f"k8s.io/kubernetes@{version}/build/pause/linux/pause.c"
    STORAGE.mkdir(parents=True, exist_ok=True)
    binary = STORAGE / "pause"
    subprocess.run(
        ["gcc", "-Os", "-static", f"-DVERSION={version}", "-o", str(binary), str(source)],
        check=True,
        capture_output=True,
    )
    container = buildah("from", "scratch").strip()
    try:
        buildah("copy", container, str(binary), "/pause")
        buildah("config", "--entrypoint", '["/pause"]', "--user", "65535:65535", container)
        buildah("commit", "--rm", container, name)
    except BaseException:
        buildah("rm", container)
        raise
    return name


def project_version() -> str:
    import tomllib

    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


def build_dockerfile(dockerfile: Path, tag: str, context: Path = ROOT) -> list[str]:
    """`buildah build` of a Dockerfile on the local base, its layers cached. Shows what it does
    (the steps it runs and their output), not the steps it takes from its cache; returns every
    line it printed."""
    mounts = [f"--volume={path}:{path}:ro" for path in HOST_SETTINGS if os.path.exists(path)]
    UV_CACHE.mkdir(parents=True, exist_ok=True)
    mounts += [f"--volume={UV_CACHE}:{UV_CACHE_MOUNT}", "--build-arg", f"UV_CACHE={UV_CACHE_MOUNT}"]
    command = [
        # --force-rm: a failed build leaves no working container behind (one would keep its
        # layers from ever being pruned).
        "buildah", *STORAGE_OPTIONS, "build", "--layers", "--force-rm", "--network", "host",
        "--build-arg", f"BASE={base_image()}", *mounts,
        "--file", str(dockerfile), "--tag", tag, str(context),
    ]  # fmt: skip
    lines: list[str] = []
    step = None  # a step is shown once its next line says it is not from the cache
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as process:
        for line in process.stdout:
            lines.append(line)
            if line.startswith("STEP "):
                step = line
            elif "Using cache" in line:
                step = None
            elif step is not None:  # the step runs: say so, with what it prints
                sys.stdout.write("  " + step)
                step = None
            if not line.startswith(("STEP ", "--> ", "COMMIT ", "Successfully tagged")) and (
                not re.fullmatch(r"[0-9a-f]{64}\n", line)
            ):
                sys.stdout.write("    " + line)
        sys.stdout.flush()
    if process.returncode != 0:
        raise ImageBuildFailed(f"building {dockerfile}: {''.join(lines[-40:])}")
    return lines


def build(which: str) -> str:
    """Build one of IMAGES from its Dockerfile; only changed layers rebuild."""
    image = IMAGES[which]
    name = image.name(project_version())
    began, before = time.monotonic(), image_id(name)
    _say(f"building the {which} image ({image.dockerfile}) with buildah, unchanged layers "
         "from its cache ...")  # fmt: skip
    build_dockerfile(ROOT / image.dockerfile, name)
    took = time.monotonic() - began
    if image_id(name) == before:  # every layer came from the cache
        _say(f"{name} is up to date ({took:.0f} s)")
    else:
        _say(f"built {name} in {took:.0f} s")
    return name


def push(name: str, destination: str) -> None:
    """Push an image with zstd-compressed layers (OCI). For the trainer's 6 GB, measured against
    gzip: a third less CPU to push (61 s, not 91), 12 % smaller, and its large layer
    decompresses in 4 s instead of 28 on each node's first pull."""
    buildah("push", "--quiet", "--tls-verify=false", "--compression-format", "zstd", name,
            destination, saying=f"pushing {name}")  # fmt: skip


def publish(*names: str) -> None:
    """Push images to the cluster's registry (registry.py), unless it holds them already. The
    registry is always at the same address while pushing (one push at a time), so buildah's
    cache of which compressed layer it already sent there spares it compressing the trainer's
    unchanged layers again (a minute). What a new push leaves untagged is deleted then."""
    PUSH_LOCK.parent.mkdir(parents=True, exist_ok=True)
    with PUSH_LOCK.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        pushed = False
        with running_registry(PUSH_PORT) as address:
            for name in names:
                if published_id(address, name) != image_id(name):
                    push(name, f"docker://{reference(address, name)}")
                    pushed = True
        if pushed:
            collect_garbage()


def current_names() -> tuple[str, ...]:
    """Every image of IMAGES by the name pods give it, as this checkout builds it."""
    return tuple(image.name(project_version()) for image in IMAGES.values())


def ensure_images(*which: str) -> tuple[str, ...]:
    """The named images (all by default) and the pause image, built or rebuilt as needed and
    in the cluster's registry; returns their names as pods name them."""
    names = tuple(build(each) for each in which or IMAGES)
    publish(*names, pause_image())
    return names


def prune_unused() -> int:
    """Remove the image layers no current image uses (earlier builds' dependency layers, several
    GB each for the trainer), leaf by leaf until none is left; returns how many went. The
    layers of the current images, their build cache, stay."""
    removed = 0
    while True:
        gone = [line for line in buildah("rmi", "--prune").splitlines() if line.strip()]
        if not gone:
            return removed
        removed += len(gone)


if __name__ == "__main__":
    began = time.monotonic()
    names = ensure_images(*sys.argv[1:])
    pruned = prune_unused()
    if pruned:
        _say(f"removed {pruned} unused image layer(s) of earlier builds")
    print(f"images ready in the cluster's registry ({', '.join(names)}, "
          f"{time.monotonic() - began:.0f} s)")  # fmt: skip
    # A machine's first node would unpack gigabytes as it starts: unpack them now, while a cold
    # run's other servers still compile (node.py builds on this module: imported here).
    from fluxlora_localcluster.node import FIRST_NODE, fill_store

    filling = time.monotonic()
    if fill_store(names, FIRST_NODE):
        _say(f"filled {FIRST_NODE}'s image store in {time.monotonic() - filling:.0f} s")
