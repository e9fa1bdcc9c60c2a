"""Starting and stopping the servers the tests and the demo run."""

import subprocess
from pathlib import Path

GRACE_SECONDS = 20


def start(command: list[str], log: Path, **options) -> subprocess.Popen:
    """Start a server writing to `log`, in a process group of its own: a terminal's Ctrl-C then
    reaches only the program that started it, which stops its servers in order (etcd killed
    under a running API server would leave that program waiting on it)."""
    with log.open("ab") as output:
        return subprocess.Popen(
            command, stdout=output, stderr=subprocess.STDOUT, process_group=0, **options
        )


def stop(process: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL if it lingers."""
    process.terminate()
    try:
        process.wait(timeout=GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
