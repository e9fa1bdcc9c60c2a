"""Resumable checkpoints in the output destination: a restarted pod (preempted, evicted)
continues from the newest one instead of step 0. Each holds the LoRA, optimizer, step and
random generator state; the two newest are kept. CheckpointWriter writes them off the training
thread."""

import logging
import re
import tempfile
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch

from fluxlora_trainer.storage import Destination

logger = logging.getLogger(__name__)

FOLDER = "checkpoints"
KEEP = 2
NAME = re.compile(r"^checkpoints/step-(\d{6})\.pt$")


def checkpoint_name(step: int) -> str:
    return f"{FOLDER}/step-{step:06d}.pt"


def _saved_steps(destination: Destination) -> list[int]:
    steps = []
    for name in destination.list(FOLDER):
        match = NAME.match(name)
        if match:
            steps.append(int(match.group(1)))
    return sorted(steps)


def save_checkpoint(destination: Destination, state: dict[str, Any]) -> str:
    with tempfile.TemporaryDirectory(prefix="fluxlora-ckpt-") as scratch:
        local = Path(scratch) / "checkpoint.pt"
        torch.save(state, local)
        url = destination.put(local, checkpoint_name(state["step"]))
    for old in _saved_steps(destination)[:-KEEP]:
        destination.delete(checkpoint_name(old))
    logger.info("checkpoint at step %d saved to %s", state["step"], url)
    return url


def load_latest_checkpoint(destination: Destination) -> dict[str, Any] | None:
    steps = _saved_steps(destination)
    if not steps:
        return None
    with tempfile.TemporaryDirectory(prefix="fluxlora-ckpt-") as scratch:
        local = Path(scratch) / "checkpoint.pt"
        destination.get(checkpoint_name(steps[-1]), local)
        state = torch.load(local, map_location="cpu", weights_only=True)
    logger.info("resuming from the checkpoint at step %d", state["step"])
    return state


def clear_checkpoints(destination: Destination) -> None:
    """A finished run needs no checkpoints."""
    for step in _saved_steps(destination):
        destination.delete(checkpoint_name(step))


def host_copy(state: Any) -> Any:
    """`state` with every tensor copied to host memory, so training may go on changing the
    originals (on a CPU, `.cpu()` alone would return the very tensors it changes in place)."""
    if isinstance(state, torch.Tensor):
        return state.detach().to("cpu", copy=True)
    if isinstance(state, dict):
        return {key: host_copy(value) for key, value in state.items()}
    if isinstance(state, (list, tuple)):
        return type(state)(host_copy(value) for value in state)
    return state


class CheckpointWriter:
    """Saves checkpoints in the background, one at a time: the state is copied to host memory
    at once, then serialised and uploaded (hundreds of MB) while training goes on. A new
    checkpoint first waits for the one before; wait() waits for the last and raises its error."""

    def __init__(self, destination: Destination) -> None:
        self.destination = destination
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="checkpoint")
        self.pending: Future | None = None

    def save(self, state: dict[str, Any]) -> None:
        self.wait()
        self.pending = self.pool.submit(save_checkpoint, self.destination, host_copy(state))

    def wait(self) -> None:
        pending, self.pending = self.pending, None
        if pending is not None:
            pending.result()
