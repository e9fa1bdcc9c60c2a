"""Stopping the servers the tests start."""

import subprocess

GRACE_SECONDS = 20


def stop(process: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL if it lingers."""
    process.terminate()
    try:
        process.wait(timeout=GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
