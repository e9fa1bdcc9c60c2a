"""The trainer as its container runs it, the first process of a PID namespace: SIGTERM (an
eviction, a preemption, a deleted Job) stops it within seconds with the retryable exit code and
says why, instead of being ignored (the kernel drops signals PID 1 does not handle) until the
grace period's SIGKILL."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fluxlora_api.contract import ExitCode
from fluxlora_trainer.cli import _stop_behind
from fluxlora_trainer.errors import Stopped
from fluxlora_trainer.ranks import PROCESSES_ENV
from tests.trainer.test_train import config, write

pytestmark = pytest.mark.timeout(180)


@pytest.mark.parametrize("ranks", [1, 2])
def test_sigterm_stops_a_training_that_runs_as_pid_1(tiny_model, s3_dataset, tmp_path, ranks):
    """With two ranks PID 1 is their launcher, which stops both."""
    data = f"s3://{s3_dataset}/data/portrait.zip"
    cfg = write(config(tiny_model, data, str(tmp_path / "out"), steps=4000), tmp_path / "c.json")
    result = tmp_path / "result.json"
    trainer = subprocess.Popen(
        ["unshare", "--pid", "--fork", "--kill-child", sys.executable, "-m", "fluxlora_trainer.cli",
         "train", "--config", str(cfg), "--result-file", str(result)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, PROCESSES_ENV: str(ranks), "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    try:
        lines = []
        for line in trainer.stdout:
            lines.append(line)
            if "training on cpu" in line:  # a rank's, not their launcher's
                break
        assert "training on cpu" in lines[-1], "".join(lines)
        (first,) = Path(f"/proc/{trainer.pid}/task/{trainer.pid}/children").read_text().split()
        namespaced_ids = Path(f"/proc/{first}/status").read_text().split("NSpid:")[1].split("\n")[0]
        assert namespaced_ids.split()[-1] == "1"  # the trainer is PID 1 in its namespace
        time.sleep(2)  # in the middle of training
        sent = time.monotonic()
        os.kill(int(first), signal.SIGTERM)
        rest = trainer.communicate(timeout=60)[0]
        took = time.monotonic() - sent
    finally:
        if trainer.poll() is None:
            trainer.kill()
    assert trainer.returncode == ExitCode.RETRYABLE, rest
    assert took < 15
    assert "stopped by SIGTERM" in json.loads(result.read_text())["error"]
    assert "Traceback" not in rest


def test_a_stop_wrapped_by_a_library_import_is_still_a_stop():
    """diffusers' lazy imports re-raise whatever interrupts them as a RuntimeError (seen when
    SIGTERM reached a rank that was still importing): it is a stop all the same."""
    stop = Stopped()
    try:
        try:
            raise stop
        except Stopped as error:
            raise RuntimeError("Failed to import diffusers.models.autoencoders") from error
    except RuntimeError as wrapped:
        assert _stop_behind(wrapped) is stop
    unrelated = RuntimeError("CUDA out of memory")
    assert _stop_behind(unrelated) is None
    looped = ValueError("a")
    looped.__context__ = ValueError("b")
    looped.__context__.__context__ = looped
    assert _stop_behind(looped) is None
