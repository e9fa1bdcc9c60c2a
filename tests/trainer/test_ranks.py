"""`gpus: N` trains on every GPU: N data-parallel ranks, each on its slice of one global batch,
averaging their gradients. Tested with gloo ranks on the CPU (FLUXLORA_PROCESSES)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from fluxlora_api.contract import ExitCode
from fluxlora_localcluster.datasets import image_bytes, make_zip
from fluxlora_trainer.ranks import PROCESSES_ENV
from tests.trainer.one_step import main as take_one_step
from tests.trainer.test_train import config, write

pytestmark = pytest.mark.timeout(400)
ROOT = Path(__file__).resolve().parents[2]


def one_step(tiny_model: Path, images: Path, out: Path, ranks: int, batch_size: int) -> dict:
    arguments = [str(tiny_model), str(images), str(out), str(batch_size)]
    if ranks == 1:  # here: this process has the libraries loaded already
        take_one_step(*arguments)
        return torch.load(out, weights_only=True)
    launcher = ["-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={ranks}"]
    command = [sys.executable, *launcher, "-m", "tests.trainer.one_step", *arguments]
    environment = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        command, cwd=ROOT, env=environment, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return torch.load(out, weights_only=True)


def test_two_ranks_of_batch_one_take_the_step_one_process_takes_on_batch_two(tiny_model, tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    for index, color in enumerate([(200, 30, 30), (30, 200, 30), (30, 30, 200)]):
        (images / f"photo_{index}.png").write_bytes(image_bytes("PNG", (96, 64), color))
    alone = one_step(tiny_model, images, tmp_path / "alone.pt", ranks=1, batch_size=2)
    ranked = one_step(tiny_model, images, tmp_path / "ranked.pt", ranks=2, batch_size=1)
    assert alone["lora"].keys() == ranked["lora"].keys()
    for key, value in alone["lora"].items():
        assert torch.allclose(ranked["lora"][key], value, atol=1e-6), key
    assert ranked["loss"] == pytest.approx(alone["loss"], rel=1e-5)  # the global batch's mean
    moved = [key for key, value in alone["lora"].items() if "lora_B" in key and value.any()]
    assert moved  # the step did change the LoRA


def ranked_train(cfg, folder: Path, ranks: int = 2, **popen) -> subprocess.Popen:
    command = [str(Path(sys.executable).parent / "fluxlora-trainer"), "train",
               "--config", str(write(cfg, folder / "config.json")),
               "--result-file", str(folder / "result.json")]  # fmt: skip
    environment = {**os.environ, PROCESSES_ENV: str(ranks), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(command, env=environment, text=True, **popen)


def test_a_run_on_two_ranks_completes_and_rank_zero_alone_writes(
    tiny_model, tmp_path, http_dataset
):
    out = tmp_path / "out"
    cfg = config(tiny_model, http_dataset, str(out), checkpointEverySteps=250)
    run = ranked_train(cfg, tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    log = run.communicate(timeout=360)[0]
    assert run.returncode == ExitCode.SUCCESS, log
    assert "rank 1 of 2 on cpu" in log
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["outputs"][:2] == ["lora.safetensors", "lora_comfyui.safetensors"]
    rows = (out / "loss.csv").read_text().splitlines()[1:]
    assert [int(row.split(",")[0]) for row in rows] == list(range(1, 501))  # one history
    assert log.count("training finished in") == 1  # rank 0's outputs only
    # A pod's log is lines: no library's progress bar redrawing itself; the trainer says what
    # the load does instead.
    assert "Loading pipeline components" not in log and "Loading weights" not in log, log
    assert "loading the base model" in log and "loaded the base model in" in log
    assert not list((out / "checkpoints").glob("*.pt"))


def test_bad_data_for_two_ranks_is_bad_input_before_any_rank_starts(
    tiny_model, tmp_path, http_server
):
    make_zip(http_server.root / "empty.zip", {"a.md": "no images"})
    cfg = config(tiny_model, f"{http_server.url}/empty.zip", str(tmp_path / "out"))
    run = ranked_train(cfg, tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    log = run.communicate(timeout=300)[0]
    assert run.returncode == ExitCode.BAD_INPUT, log
    assert "has no usable image" in json.loads((tmp_path / "result.json").read_text())["error"]
    # The launcher checked it: no rank imported the training libraries or joined the others.
    assert "starting 2 ranks" not in log and "rank 0 of 2" not in log, log


def rank_pid(launcher: int, rank: int) -> int | None:
    """The pid of the process the launcher started as `rank`."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if parent == launcher and f"RANK={rank}".encode() in environ:
            return int(entry.name)
    return None


def test_a_killed_rank_fails_the_run_retryably_naming_the_rank(tiny_model, tmp_path, http_dataset):
    out = tmp_path / "out"
    cfg = config(tiny_model, http_dataset, str(out), checkpointEverySteps=100)
    run = ranked_train(cfg, tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 180
        while not list((out / "checkpoints").glob("step-*.pt")) and time.monotonic() < deadline:
            time.sleep(0.2)  # until the ranks are training
        victim = rank_pid(run.pid, 1)
        assert victim, "no rank 1"
        os.kill(victim, signal.SIGKILL)  # as when its GPU fails
        log = run.communicate(timeout=120)[0]
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == ExitCode.RETRYABLE, log
    error = json.loads((tmp_path / "result.json").read_text())["error"]
    assert error.startswith("rank 1 of 2 ended with signal 9"), error
    assert not (out / "lora.safetensors").exists()
