"""The two images, timed as `make images` builds them: cold (empty image storage, so the Debian
base is made too, and every dependency downloaded), warm (nothing changed), and after a change
to our own code (one source file), with each image's size.

The builds run in a fresh clone of this checkout's HEAD with FLUXLORA_CACHE pointed into a new
folder, so the user's image storage is neither used nor touched.

    python benchmarks/images.py [--cache DIR] [--keep]

Prints a Markdown table for docs/benchmarks.md.
"""

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHANGED = "operator/fluxlora_operator/__init__.py"


def build(clone: Path, environment: dict) -> float:
    began = time.monotonic()
    subprocess.run(
        [sys.executable, "-m", "fluxlora_localcluster.images"],
        cwd=clone,
        env=environment,
        check=True,
    )
    return time.monotonic() - began


def sizes(clone: Path, environment: dict) -> dict[str, str]:
    listing = subprocess.run(
        [sys.executable, "-c", "from fluxlora_localcluster import images; print(images.buildah("
         "'images', '--format', '{{.Name}} {{.Size}}'))"],
        cwd=clone, env=environment, check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    rows = (line.split(maxsplit=1) for line in listing.splitlines() if line.strip())
    return {name: size for name, size in rows if name != "<none>"}  # <none>: older builds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, help="an empty folder for the cold cache")
    parser.add_argument("--keep", action="store_true", help="keep the clone and the cache")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="fluxlora-images-"))
    cache = args.cache or work / "cache"
    clone = work / "clone"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
    environment = {
        **os.environ,
        "FLUXLORA_CACHE": str(cache),
        "PYTHONPATH": str(clone / "tests"),
    }  # its own kit
    try:
        cold = build(clone, environment)
        print(f"cold build: {cold:.0f} s", flush=True)  # each as it comes: a build may fail
        warm = build(clone, environment)
        print(f"warm build: {warm:.0f} s", flush=True)
        with (clone / CHANGED).open("a") as source:
            source.write("\n# a change, as a developer makes one\n")
        changed = build(clone, environment)
        print(f"after a change: {changed:.0f} s", flush=True)
        found = sizes(clone, environment)
    finally:
        remove_containers = (
            "from fluxlora_localcluster import images; images.buildah('rm', '--all')"
        )
        subprocess.run(  # buildah's overlay mounts must go before the folder can
            [sys.executable, "-c", remove_containers], cwd=clone, env=environment, check=False
        )
        if not args.keep:
            subprocess.run(["umount", "-R", str(cache / "containers")], check=False,
                           capture_output=True)  # fmt: skip
            shutil.rmtree(work, ignore_errors=True)
    print(f"\nMachine: {platform.node()}, {os.cpu_count()} CPUs")
    print("\n| build | seconds |\n|---|---|")
    print(f"| cold: base, operator and trainer images | {cold:.0f} |")
    print(f"| warm: nothing changed | {warm:.0f} |")
    print(f"| one source file changed | {changed:.0f} |")
    print("\n| image | size |\n|---|---|")
    for name, size in sorted(found.items()):
        print(f"| {name} | {size} |")


if __name__ == "__main__":
    main()
