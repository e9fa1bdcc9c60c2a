"""Starting and stopping the servers the tests and the demo run."""

import subprocess
import time
from pathlib import Path

GRACE_SECONDS = 20
LOG_LINES = 15  # of a server that failed to start: its own words on why


# a server starting: its name (as a person knows it), its process, its log
Starting = tuple[str, subprocess.Popen, Path]


class ServerFailed(RuntimeError):
    """A server the tests or the demo started exited while starting: which, and its log's end."""


def start(command: list[str], log: Path, **options) -> subprocess.Popen:
    """Start a server writing to `log`, in a process group of its own: a terminal's Ctrl-C then
    reaches only the program that started it, which stops its servers in order (etcd killed
    under a running API server would leave that program waiting on it)."""
    with log.open("ab") as output:
        return subprocess.Popen(
            command, stdout=output, stderr=subprocess.STDOUT, process_group=0, **options
        )


def ensure_running(name: str, process: subprocess.Popen, log: Path) -> None:
    """Raises ServerFailed, with the last lines of `log`, if `process` has exited."""
    if process.poll() is None:
        return
    lines = log.read_text(errors="replace").splitlines()[-LOG_LINES:] if log.exists() else []
    said = "\n".join(f"  {line}" for line in lines) or "  (nothing)"
    raise ServerFailed(
        f"{name} exited with code {process.returncode} while starting; the end of its log "
        f"({log.name}):\n{said}"
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
