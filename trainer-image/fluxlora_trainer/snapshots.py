"""Snapshots: the LoRA as it is at the steps spec.saveEverySteps asks for, in both formats, the
sample images rendered at the steps spec.sampleEverySteps asks for, and the loss curve so far,
stored beside the run's other files off the training thread; each is reported (for
status.snapshots) once its files are stored, never before."""

import shutil
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import torch

from fluxlora_api.contract import TrainingConfig
from fluxlora_api.outputs import LOSS_CSV_FILE, LOSS_PLOT_FILE, snapshot_files
from fluxlora_trainer.checkpoints import host_copy
from fluxlora_trainer.lora_formats import save_both_formats
from fluxlora_trainer.loss_report import plot_loss, write_loss_csv
from fluxlora_trainer.storage import Destination
from fluxlora_trainer.train_loop import StepReport

Stored = Callable[[int, float | None, int], None]  # step, loss, sample images stored


class SnapshotWriter:
    """One snapshot at a time in the background; the state is copied to host memory at once,
    so training goes on changing its own. wait() waits for the last and raises its error."""

    def __init__(
        self,
        destination: Destination,
        folder: Path,
        config: TrainingConfig,
        seed: int,
        transformer: torch.nn.Module,
        stored: Stored = lambda step, loss, samples: None,
    ) -> None:
        self.destination, self.folder = destination, folder
        self.config, self.seed, self.transformer = config, seed, transformer
        self.stored = stored
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="snapshot")
        self.pending: list[Future] = []

    def save(
        self,
        step: int,
        lora: dict[str, torch.Tensor] | None,
        history: list[StepReport],
        samples: Sequence[Path] = (),
    ) -> None:
        """`lora` None: a step that only samples; `samples`: image files (already named as
        outputs), deleted here once stored."""
        copied = host_copy(lora) if lora is not None else None
        job = self.pool.submit(self._write, step, copied, list(history), list(samples))
        self.pending.append(job)

    def wait(self) -> None:
        pending, self.pending = self.pending, []
        for future in pending:
            future.result()

    def _write(
        self,
        step: int,
        lora: dict[str, torch.Tensor] | None,
        history: list[StepReport],
        samples: list[Path],
    ) -> None:
        folder = self.folder / f"step-{step:06d}"
        folder.mkdir(parents=True, exist_ok=True)
        try:
            if lora is not None:
                files = save_both_formats(folder, lora, self.config, self.seed, self.transformer)
                for path, name in zip(files, snapshot_files(step), strict=True):
                    self.destination.put(path, name)
            for path in samples:  # already named as outputs
                self.destination.put(path, path.name)
            # The curve so far, replaced at every save: a run can be judged while it trains.
            curve = write_loss_csv(folder / LOSS_CSV_FILE, history)
            self.destination.put(curve, LOSS_CSV_FILE)
            title = f"training loss, step {step} of {self.config.steps}"
            self.destination.put(plot_loss(folder / LOSS_PLOT_FILE, history, title), LOSS_PLOT_FILE)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
            for path in samples:
                path.unlink(missing_ok=True)
        self.stored(step, history[-1].smoothed_loss if history else None, len(samples))
