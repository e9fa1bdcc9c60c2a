"""A newcomer's first run, timed: a cold `make demo` (a fresh clone of this checkout's HEAD and
empty caches), then a warm `make demo`, then a warm `make test` (what only the tests build,
Kueue, the browser, the dependencies' bytecode and mypy's cache, made first, untimed), each with
the longest wait without any output (the issue's "never a silent minute").

Cold means every cache the two commands fill is empty: the project's (FLUXLORA_CACHE: the
Python environment, uv's downloads, the servers), Go's build and module caches, and pip's, all
pointed into one new folder, so the user's own caches are neither used nor touched.

    python benchmarks/first_run.py [--cache DIR] [--skip-test] [--keep]

Prints what each command prints, with the elapsed seconds in front, then a Markdown table for
docs/benchmarks.md.
"""

import argparse
import os
import platform
import selectors
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Timing:
    name: str
    seconds: float
    code: int
    silence: float  # the longest stretch without a byte of output
    silent_after: str  # the last line before that stretch


def timed(name: str, command: list[str], cwd: Path, environment: dict) -> Timing:
    """Run `command`, echoing its output with the elapsed time, and measure its silences."""
    print(f"\n=== {name}: {' '.join(command)}", flush=True)
    began = last = time.monotonic()
    process = subprocess.Popen(
        command, cwd=cwd, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    selector = selectors.DefaultSelector()
    selector.register(process.stdout, selectors.EVENT_READ)
    silence, silent_after, line, recent = 0.0, "", b"", b""
    while True:
        ready = selector.select(timeout=1.0)
        chunk = os.read(process.stdout.fileno(), 65536) if ready else None
        now = time.monotonic()
        if chunk == b"":
            break
        if not chunk:
            continue
        if now - last > silence:
            silence, silent_after = now - last, recent.decode(errors="replace").strip()
        last = now
        recent = (line + chunk).rstrip(b"\n").rsplit(b"\n", 1)[-1] or recent
        *complete, line = (line + chunk).split(b"\n")
        for text in complete:
            print(f"[{now - began:7.1f} s] {text.decode(errors='replace')}", flush=True)
    code = process.wait()
    timing = Timing(name, time.monotonic() - began, code, silence, silent_after[-100:])
    print(f"=== {name}: {timing.seconds:.0f} s, exit {code}, longest silence {silence:.0f} s")
    return timing


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, help="the empty cache folder (default: a new one)")
    parser.add_argument("--skip-test", action="store_true", help="time the two demos only")
    parser.add_argument("--keep", action="store_true", help="keep the clone and the cache")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="fluxlora-first-run-"))
    cache = args.cache or work / "cache"
    if cache.exists() and any(cache.iterdir()):
        parser.error(f"--cache {cache} is not empty: a cold run needs an empty folder")
    clone = work / "clone"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
    environment = {
        **os.environ,
        "FLUXLORA_CACHE": str(cache),
        "GOCACHE": str(cache / "go-build"),
        "GOMODCACHE": str(cache / "go-mod"),
        "GOFLAGS": "-modcacherw",  # so that the folder can be deleted afterwards
        "PIP_CACHE_DIR": str(cache / "pip"),
    }
    timings = []
    try:
        timings.append(timed("cold make demo", ["make", "demo"], clone, environment))
        timings.append(timed("warm make demo", ["make", "demo"], clone, environment))
        if not args.skip_test:
            # What only the tests use (Kueue's manager, the browser, the dependencies' bytecode,
            # mypy's cache) is not the demo's: made here, untimed, so that `make test` is warm.
            filling = ["make", "--no-print-directory", "servers", "browser-packages", "bytecode",
                       "lint"]  # fmt: skip
            timed("filling make test's own caches (untimed)", filling, clone, environment)
            timings.append(timed("warm make test", ["make", "test"], clone, environment))
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    cores, memory = os.cpu_count(), os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    print(f"\n{platform.machine()}, {cores} cores, {memory / 2**30:.0f} GiB, "
          f"Python {platform.python_version()}, commit {commit}\n")  # fmt: skip
    print("| command | seconds | exit | longest silence | after the line |")
    print("|---|---:|---:|---:|---|")
    for t in timings:
        after = t.silent_after.replace("|", "\\|")
        print(f"| {t.name} | {t.seconds:.0f} | {t.code} | {t.silence:.0f} s | `{after}` |")
    return max(t.code for t in timings)


if __name__ == "__main__":
    sys.exit(main())
