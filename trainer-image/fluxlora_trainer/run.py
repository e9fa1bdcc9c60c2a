"""One training run, as the Job's container does it: dataset -> cached latents and captions ->
LoRA training (resuming from the newest checkpoint) -> LoRA files, config and loss curve
uploaded to the destination -> samples last, so that nothing they do can cost the LoRA.
Returns the result the operator reads."""

import json
import logging
import random
import time
from pathlib import Path

import torch

from fluxlora_api.contract import TrainingConfig, TrainingResult
from fluxlora_api.limits import DatasetLimits
from fluxlora_api.outputs import (
    CONFIG_FILE,
    LOSS_CSV_FILE,
    LOSS_PLOT_FILE,
    sample_file,
    snapshot_samples,
)
from fluxlora_api.status import Timings
from fluxlora_net.urls import display_url
from fluxlora_trainer.buckets import training_resolutions
from fluxlora_trainer.cache import prepare_training_data
from fluxlora_trainer.checkpoints import (
    CheckpointWriter,
    clear_checkpoints,
    load_latest_checkpoint,
)
from fluxlora_trainer.dataset import Dataset, open_training_dataset
from fluxlora_trainer.errors import BadInput, Stopped
from fluxlora_trainer.lora_formats import save_both_formats
from fluxlora_trainer.loss_report import plot_loss, write_loss_csv
from fluxlora_trainer.model import load_pipeline, training_device, weight_dtype
from fluxlora_trainer.quantize import quantize_transformer
from fluxlora_trainer.ranks import ONE, Ranks, from_main, join, leave
from fluxlora_trainer.sampling import render_samples_safely
from fluxlora_trainer.snapshots import SnapshotWriter, Stored
from fluxlora_trainer.step_memory import plan_run
from fluxlora_trainer.storage import open_destination
from fluxlora_trainer.train_loop import LoRATrainer, StepReport

logger = logging.getLogger(__name__)


def run_training(
    config: TrainingConfig,
    workdir: Path,
    on_step=lambda report: None,
    ranks: Ranks = ONE,
    on_snapshot: Stored = lambda step, loss, samples: None,
    dataset: Dataset | None = None,
) -> TrainingResult:
    """The whole run on this rank; with several ranks, rank 0 alone writes anything.
    `on_snapshot` hears of each snapshot once its files are stored. `dataset`: the run's,
    opened in `workdir` already (cli.py does, before this module's libraries load)."""
    device = training_device(ranks.local)
    join(ranks, device)
    try:
        return _run(config, workdir, on_step, ranks, device, on_snapshot, dataset)
    finally:
        leave()


def _run(
    config: TrainingConfig,
    workdir: Path,
    on_step,
    ranks: Ranks,
    device: torch.device,
    on_snapshot: Stored,
    dataset: Dataset | None,
) -> TrainingResult:
    started = time.monotonic()
    destination = open_destination(config.output)
    resumed = load_latest_checkpoint(destination)
    seed = from_main(_seed(config, resumed), ranks)
    torch.manual_seed(seed)

    limits = DatasetLimits.from_env()
    if dataset is None:
        dataset = _open_dataset_once(config, workdir, limits, ranks)
    dtype = weight_dtype(device)
    logger.info("training on %s (CPU threads: %d)", device, torch.get_num_threads())
    memory = plan_run(config, device, dtype)  # before loading: a run that cannot fit ends here
    logger.info("memory plan: %s", memory.describe())
    pipeline = load_pipeline(config.base_model, dtype)
    data = prepare_training_data(
        pipeline,
        dataset.samples,
        training_resolutions(config.resolution, config.multi_resolution),
        limits.max_image_pixels,
        device,
        seed,
        config.sample_prompts or [],
    )
    # After the encoders have left the GPU, so the two never share it.
    quantize_transformer(pipeline.transformer, config.base_weights, device, dtype)
    trainer = LoRATrainer(
        pipeline.transformer, data, config, seed, device, dtype, ranks, memory.checkpointed
    )
    history: list[StepReport] = []
    if resumed is not None:
        trainer.load_state_dict(resumed)
        history = [StepReport(*row) for row in resumed["history"]]

    def step_done(report: StepReport) -> None:
        history.append(report)
        on_step(report)

    writer = CheckpointWriter(destination)
    snapshots = SnapshotWriter(destination, workdir / "snapshots", config, seed,
                               pipeline.transformer, on_snapshot)  # fmt: skip

    def checkpoint(step: int, optimizer: bool = True) -> None:
        # A checkpoint only after the snapshots before it are stored: a run resumed from it
        # never saves those again, and a completed run lists them among its outputs.
        snapshots.wait()
        rows = [tuple(vars(report).values()) for report in history]
        writer.save({**trainer.state_dict(optimizer=optimizer), "seed": seed, "history": rows})

    def save(step: int) -> None:
        lora = trainer.saved_lora_state_dict() if due(step, config.save_every_steps) else None
        images = []
        if due(step, config.sample_every_steps):
            began = time.monotonic()
            with trainer.saved_weights():  # the LoRA this step's snapshot is (emaDecay)
                images = render_samples_safely(
                    pipeline, data.prompts, config.resolution, seed,
                    workdir / "samples" / str(step), snapshot_samples(step, len(data.prompts)),
                )  # fmt: skip
            trainer.sampling_seconds += time.monotonic() - began
        snapshots.save(step, lora, history, images)

    try:
        if ranks.main:
            trainer.run(on_step=step_done, on_checkpoint=checkpoint, on_save=save)
        else:
            trainer.run()
            return TrainingResult()  # rank 0 writes the outputs
    except Stopped:
        writer.wait()  # the checkpoint of the step it stopped at reaches the destination first
        raise
    writer.wait()
    snapshots.wait()  # every snapshot is stored before the run can complete
    trainer.use_averages()  # emaDecay: the average is the LoRA (and what the samples show)

    # The LoRA reaches the destination before anything else can fail: samples come last.
    folder = workdir / "outputs"
    outputs = _write_lora_files(config, seed, trainer, pipeline, history, folder)
    urls = [destination.put(path, path.name) for path in outputs]
    if config.sample_prompts:
        if resumed is None or resumed["step"] < config.steps:
            checkpoint(trainer.step, optimizer=False)  # a pod lost while sampling resumes here
            writer.wait()
        trainer.release_optimizer()  # sampling needs the memory the optimizer state held
        names = [sample_file(index) for index in range(len(data.prompts))]
        samples = render_samples_safely(
            pipeline, data.prompts, config.resolution, seed, folder, names
        )
        urls += [destination.put(path, path.name) for path in samples]
        outputs += samples
    clear_checkpoints(destination)
    elapsed_ms = int((time.monotonic() - started) * 1000)
    logger.info("training finished in %.1f s; outputs: %s", elapsed_ms / 1000, ", ".join(urls))
    # Names, not URLs: the operator joins them with the prefix it assigned, and the result
    # stays far below the 4096 bytes of a termination message however long that prefix is.
    names = [path.name for path in outputs]
    return TrainingResult(outputs=names, timings=Timings(inference=elapsed_ms))


def _open_dataset_once(
    config: TrainingConfig, workdir: Path, limits: DatasetLimits, ranks: Ranks
) -> Dataset:
    """Rank 0 fetches and checks the dataset; every rank gets its samples (or its error). For
    ranks that another launcher started (ours opens the dataset before it starts them)."""
    found: Dataset | str | None = None
    if ranks.main:
        try:
            found = open_training_dataset(config, workdir, limits)
        except BadInput as error:
            found = str(error)
            if ranks.world == 1:
                raise
    found = from_main(found, ranks)
    if isinstance(found, str):
        raise BadInput(found)
    return found


def due(step: int, every: int | None) -> bool:
    return bool(every) and step % every == 0


def _seed(config: TrainingConfig, resumed: dict | None) -> int:
    if resumed is not None:
        return int(resumed["seed"])
    if config.seed is not None:
        return config.seed
    return random.SystemRandom().randrange(2**32)


def _write_lora_files(
    config: TrainingConfig,
    seed: int,
    trainer: LoRATrainer,
    pipeline,
    history: list[StepReport],
    folder: Path,
) -> list[Path]:
    """The LoRA first (the hosted API's first output), then its companions."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = save_both_formats(folder, trainer.lora_state_dict(), config, seed, pipeline.transformer)
    # The data URL as logs show it: a presigned signature or a password must not be published.
    resolved = {
        **config.model_dump(mode="json", by_alias=True),
        "data": display_url(config.data),
        "seed": seed,
    }
    (folder / CONFIG_FILE).write_text(json.dumps(resolved, indent=2) + "\n")
    paths.append(folder / CONFIG_FILE)
    paths.append(write_loss_csv(folder / LOSS_CSV_FILE, history))
    paths.append(
        plot_loss(folder / LOSS_PLOT_FILE, history, f"training loss, {config.steps} steps")
    )
    return paths
