"""Checkpoints are written off the training thread, as a snapshot of the step they belong to."""

import threading
from pathlib import Path

import pytest
import torch

from fluxlora_trainer.checkpoints import CheckpointWriter, load_latest_checkpoint
from fluxlora_trainer.storage import DirectoryDestination


class SlowDestination(DirectoryDestination):
    """A store whose uploads wait until the test lets them through."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.let_through = threading.Event()

    def put(self, local: Path, name: str) -> str:
        assert self.let_through.wait(30)
        return super().put(local, name)


def test_a_checkpoint_is_saved_in_the_background_as_it_was_at_its_step(tmp_path):
    destination = SlowDestination(tmp_path)
    writer = CheckpointWriter(destination)
    weights = torch.zeros(4)
    writer.save({"step": 250, "lora": {"a": weights}, "history": [(250, 0.5)]})
    # save() returned while the upload waits; training goes on changing the weights in place.
    assert load_latest_checkpoint(destination) is None
    weights.add_(1.0)
    destination.let_through.set()
    writer.wait()
    saved = load_latest_checkpoint(destination)
    assert saved["step"] == 250
    assert torch.equal(saved["lora"]["a"], torch.zeros(4))  # the snapshot, not the later values


def test_a_failed_upload_is_raised_at_the_next_checkpoint_or_the_end(tmp_path):
    class Broken(DirectoryDestination):
        def put(self, local: Path, name: str) -> str:
            raise ConnectionError("the store is down")

    writer = CheckpointWriter(Broken(tmp_path))
    writer.save({"step": 250})
    with pytest.raises(ConnectionError, match="the store is down"):
        writer.wait()
