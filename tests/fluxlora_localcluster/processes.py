"""Starting and stopping the servers the tests and the demo run."""

import subprocess
import time
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


HEARTBEAT_SECONDS = 15  # a person waiting on a long step sees a line at least this often


def run_saying(
    command: list[str], doing: str, timeout: float, **options
) -> subprocess.CompletedProcess:
    """subprocess.run with its output captured, saying `doing` and the seconds so far every
    HEARTBEAT_SECONDS while it lasts (a first push or pull moves gigabytes: minutes), and nothing
    when it ends sooner."""
    began = time.monotonic()
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **options
    ) as process:
        while True:
            try:
                stdout, stderr = process.communicate(timeout=HEARTBEAT_SECONDS)
                break
            except subprocess.TimeoutExpired:
                so_far = time.monotonic() - began
                if so_far > timeout:
                    process.kill()
                    raise
                print(f"  {doing}: {so_far:.0f} s so far", flush=True)
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)
