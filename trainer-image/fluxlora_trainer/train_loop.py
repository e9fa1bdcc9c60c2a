"""The LoRA training loop over cached latents and text embeddings.

One step: a batch from one aspect-ratio bucket, a noise level per image (logit-normal, shifted
for the image size), the transformer predicts the velocity (noise - latents) with guidance 1.0,
mean squared error, AdamW (or the chosen optimizer) on the LoRA weights only, constant learning
rate after a short linear warmup. Deterministic for a given seed, and resumable: its whole state
(LoRA, optimizer, step, random generators) is a state dict.
"""

import logging
import math
import random
import time
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from peft.utils import get_peft_model_state_dict

from fluxlora_api.contract import TrainingConfig
from fluxlora_api.outputs import snapshot_steps
from fluxlora_trainer import flow_matching as fm
from fluxlora_trainer import stopping
from fluxlora_trainer.cache import TrainingData
from fluxlora_trainer.errors import BadInput, Stopped
from fluxlora_trainer.lora import lora_config
from fluxlora_trainer.ranks import ONE, Ranks, average, same_everywhere
from fluxlora_trainer.step_memory import blocks_of, recompute_in_backward

logger = logging.getLogger(__name__)

MAX_WARMUP_STEPS = 100
MAX_GRAD_NORM = 1.0
WEIGHT_DECAY = 1e-4
LOSS_SMOOTHING = 0.9
# Steps between reads of the loss: each read makes the host wait until the GPU has finished
# them, so the host cannot queue the next step's work meanwhile.
LOSS_READ_STEPS = 10


@dataclass(frozen=True)
class StepReport:
    step: int
    total_steps: int
    loss: float  # this step's loss
    smoothed_loss: float
    elapsed_seconds: float  # training time: sampling while training is not in it
    eta_seconds: float
    sampling_seconds: float = 0.0  # spent rendering samples so far


def warmup_steps(total_steps: int) -> int:
    return max(1, min(MAX_WARMUP_STEPS, total_steps // 10))


def learning_rate_factor(step: int, total_steps: int) -> float:
    """Linear warmup to 1, then constant (step counts from 0)."""
    return min(1.0, (step + 1) / warmup_steps(total_steps))


def build_optimizer(name: str, parameters: list[torch.nn.Parameter], lr: float):
    if name == "adamw":
        # Fused: one kernel for every LoRA weight, on GPUs and CPUs alike (a tiny model's step
        # on a CPU: 0.55 ms for the optimizer instead of 1.6 with its per-weight loop).
        return torch.optim.AdamW(parameters, lr=lr, weight_decay=WEIGHT_DECAY, fused=True)
    if name == "adamw8bit":
        try:
            import bitsandbytes
        except ImportError:
            raise BadInput(
                "optimizer: adamw8bit needs bitsandbytes, which this image lacks"
            ) from None
        return bitsandbytes.optim.AdamW8bit(parameters, lr=lr, weight_decay=WEIGHT_DECAY)
    if name == "prodigy":
        try:
            from prodigyopt import Prodigy
        except ImportError:
            raise BadInput("optimizer: prodigy needs prodigyopt, which this image lacks") from None
        # Prodigy finds its own step size; learningRate scales it (1.0 is its intended value).
        return Prodigy(parameters, lr=lr, weight_decay=WEIGHT_DECAY, safeguard_warmup=True)
    raise BadInput(f"optimizer: unknown optimizer {name!r}")


class LoRATrainer:
    def __init__(
        self,
        transformer: torch.nn.Module,
        data: TrainingData,
        config: TrainingConfig,
        seed: int,
        device: torch.device,
        dtype: torch.dtype,
        ranks: Ranks = ONE,
        checkpointed: Collection[int] | None = None,
    ) -> None:
        """`checkpointed`: the blocks (step_memory.blocks_of) recomputed in the backward pass,
        as the memory plan chose them; None: every block with gradientCheckpointing, else
        none."""
        self.transformer = transformer
        self.ranks = ranks
        self.data = data
        self.config = config
        self.device = device
        self.dtype = dtype
        transformer.requires_grad_(False)
        transformer.add_adapter(
            lora_config(
                config.lora_rank,
                config.effective_lora_alpha,
                list(config.lora_targets),
                config.lora_init,
            )
        )
        blocks = blocks_of(transformer)
        if checkpointed is None:
            checkpointed = range(len(blocks)) if config.gradient_checkpointing else ()
        for index in checkpointed:
            recompute_in_backward(blocks[index])
        transformer.to(device)
        transformer.train()
        # The model's LoRA weights compute in the base weights' precision, so the whole forward
        # and backward run in bf16 on GPUs without autocast (which would cast every LoRA input
        # and weight again at each call); the optimizer steps float32 master copies of them.
        self.weights = [p for p in transformer.parameters() if p.requires_grad]
        for weight in self.weights:
            weight.data = weight.data.float()
        same_everywhere(self.weights, ranks)  # every rank starts from rank 0's LoRA
        if dtype == torch.float32:
            self.parameters = self.weights
        else:
            self.parameters = [w.detach().clone().requires_grad_(True) for w in self.weights]
            for weight in self.weights:
                weight.data = weight.data.to(dtype)
        # Each LoRA weight's name in the saved files, by its place in self.parameters.
        places = {w.data_ptr(): index for index, w in enumerate(self.weights)}
        self.names = {
            name: places[tensor.data_ptr()]
            for name, tensor in get_peft_model_state_dict(transformer).items()
        }
        # The moving average of the LoRA weights, when asked for (updated on the device, no sync).
        self.averages = (
            [p.detach().clone() for p in self.parameters] if config.ema_decay is not None else None
        )
        self.optimizer = build_optimizer(
            config.optimizer, self.parameters, config.effective_learning_rate
        )
        self.schedule = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: learning_rate_factor(step, config.steps)
        )
        self.step = 0
        self.smoothed_loss: float | None = None
        self.sampling_seconds = 0.0  # what on_save spends rendering samples adds to it
        self.generator = torch.Generator().manual_seed(seed)
        self.picker = random.Random(seed)
        self.groups = data.by_bucket()
        self.positions: dict[tuple[int, int], torch.Tensor] = {}

    # --- one step ----------------------------------------------------------------------------

    def _batch(self) -> list[int]:
        """The global batch, the same on every rank: a bucket in proportion to its images,
        then batchSize x ranks images from it (repeating when it holds fewer)."""
        bucket = self.picker.choices(
            list(self.groups), weights=[len(v) for v in self.groups.values()]
        )[0]
        members = self.groups[bucket]
        size = self.config.batch_size * self.ranks.world
        if len(members) >= size:
            return self.picker.sample(members, size)
        return self.picker.choices(members, k=size)

    def _to_device(self, tensor: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
        """A host tensor on the training device without stalling the host: a GPU copies it
        from pinned memory while the host goes on (a pageable copy waits for the GPU)."""
        if self.device.type == "cuda":
            tensor = tensor.pin_memory()
        return tensor.to(device=self.device, dtype=dtype, non_blocking=True)

    def _image_ids(self, height: int, width: int) -> torch.Tensor:
        key = (height, width)
        if key not in self.positions:  # one per bucket, made once
            self.positions[key] = fm.image_ids(height, width, self.device, self.dtype)
        return self.positions[key]

    def train_step(self) -> torch.Tensor:
        """One optimisation step; returns its loss still on the device (reading it would make
        the host wait for the GPU: run() reads several steps' losses at once)."""
        # Every draw is the global batch's, so the ranks stay in step; each keeps its slice.
        indices = self._batch()
        dropped = [self.picker.random() < self.config.caption_dropout for _ in indices]
        shape = (len(indices), *self.data.samples[indices[0]].latents.shape)
        noise = torch.randn(shape, generator=self.generator)
        _, _, height, width = shape
        tokens = (height // 2) * (width // 2)
        sigmas = fm.sample_sigmas(len(indices), tokens, self.generator, torch.device("cpu"))
        per_rank, ranks = self.config.batch_size, self.ranks
        samples = [self.data.samples[i] for i in ranks.slice(indices, per_rank)]
        captions = [
            "" if drop else s.caption
            for s, drop in zip(samples, ranks.slice(dropped, per_rank), strict=True)
        ]
        embeddings = [self.data.captions[c] for c in captions]
        latents = torch.stack([s.latents for s in samples])
        noise, sigmas = ranks.slice(noise, per_rank), ranks.slice(sigmas, per_rank)

        device, dtype = self.device, self.dtype
        latents, noise, sigmas = map(self._to_device, (latents, noise, sigmas))
        prompt = self._to_device(torch.stack([e.prompt for e in embeddings]), dtype)
        pooled = self._to_device(torch.stack([e.pooled for e in embeddings]), dtype)
        guidance = (
            torch.ones(len(samples), device=device, dtype=dtype)
            if self.transformer.config.guidance_embeds
            else None
        )
        prediction = self.transformer(
            hidden_states=fm.pack(fm.noisy_latents(latents, noise, sigmas)).to(dtype),
            timestep=sigmas.to(dtype),
            guidance=guidance,
            pooled_projections=pooled,
            encoder_hidden_states=prompt,
            txt_ids=torch.zeros(prompt.shape[1], 3, device=device, dtype=dtype),
            img_ids=self._image_ids(height, width),
            return_dict=False,
        )[0]
        target = fm.velocity_target(latents, noise)
        loss = F.mse_loss(fm.unpack(prediction, height, width).float(), target.float())
        loss.backward()
        loss = loss.detach()
        if self.parameters is not self.weights:  # the masters take the gradients, in float32
            for master, weight in zip(self.parameters, self.weights, strict=True):
                master.grad, weight.grad = weight.grad.float(), None
        # The mean gradient (and loss) over the ranks: the whole global batch's.
        average([*(p.grad for p in self.parameters), loss], self.ranks)
        torch.nn.utils.clip_grad_norm_(self.parameters, MAX_GRAD_NORM)
        self.optimizer.step()
        self._copy_to_model()
        if self.averages is not None:  # average += (1 - decay) * (weights - average)
            torch._foreach_lerp_(self.averages, self.parameters, 1 - self.config.ema_decay)
        self.schedule.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        return loss

    # --- the loop ----------------------------------------------------------------------------

    def run(
        self,
        on_step: Callable[[StepReport], None] = lambda report: None,
        on_checkpoint: Callable[[int], None] = lambda step: None,
        on_save: Callable[[int], None] = lambda step: None,
    ) -> None:
        """Train from the current step to config.steps. Losses are read from the device every
        LOSS_READ_STEPS steps (and before each checkpoint or snapshot), then reported step by
        step; `on_save` is called at the steps saveEverySteps or sampleEverySteps ask for, and
        the time it takes is not training time (nor in the ETA)."""
        total, every = self.config.steps, self.config.checkpoint_every_steps
        saves = set(
            snapshot_steps(total, self.config.save_every_steps, self.config.sample_every_steps)
        )
        started, first_step = time.monotonic(), self.step
        unread: list[tuple[int, torch.Tensor, float]] = []  # step, loss, seconds at its end
        with stopping.deferred():
            while self.step < total:
                loss = self.train_step()
                unread.append((self.step, loss, time.monotonic() - started))
                checkpoint_due = every and self.step % every == 0 and self.step < total
                save_due = self.step in saves
                # One rank alone asks the others nothing; several agree when they sync anyway.
                stop = (self.ranks.world == 1 or len(unread) >= LOSS_READ_STEPS) and (
                    stopping.should_stop(self.ranks, self.device)
                )
                read_now = stop or checkpoint_due or save_due or self.step == total
                if read_now or len(unread) >= LOSS_READ_STEPS:
                    self._report(unread, first_step, on_step)
                    unread.clear()
                if stop:
                    if self.step < total:  # the last step's state is the LoRA itself
                        on_checkpoint(self.step)
                    raise Stopped(f"SIGTERM after step {self.step}, checkpointed")
                if save_due:
                    paused = time.monotonic()
                    on_save(self.step)
                    started += time.monotonic() - paused
                if checkpoint_due:
                    on_checkpoint(self.step)

    def _report(
        self,
        unread: list[tuple[int, torch.Tensor, float]],
        first_step: int,
        on_step: Callable[[StepReport], None],
    ) -> None:
        values = torch.stack([loss for _, loss, _ in unread]).tolist()  # one wait for the GPU
        total = self.config.steps
        for (step, _, elapsed), value in zip(unread, values, strict=True):
            if not math.isfinite(value):
                raise FloatingPointError(f"the loss became {value} at step {step}")
            self.smoothed_loss = (
                value
                if self.smoothed_loss is None
                else LOSS_SMOOTHING * self.smoothed_loss + (1 - LOSS_SMOOTHING) * value
            )
            rate = elapsed / (step - first_step)
            on_step(
                StepReport(
                    step=step,
                    total_steps=total,
                    loss=value,
                    smoothed_loss=self.smoothed_loss,
                    elapsed_seconds=elapsed,
                    eta_seconds=rate * (total - step),
                    sampling_seconds=self.sampling_seconds,
                )
            )

    # --- state, for checkpoints --------------------------------------------------------------

    def _copy_to_model(self) -> None:
        """The model's compute-precision LoRA weights from the float32 masters."""
        if self.parameters is not self.weights:
            with torch.no_grad():
                torch._foreach_copy_(self.weights, self.parameters)

    def lora_state_dict(self) -> dict[str, torch.Tensor]:
        """The LoRA weights in float32, by their names in the saved files."""
        return {name: self.parameters[i].detach().cpu() for name, i in self.names.items()}

    def saved_lora_state_dict(self) -> dict[str, torch.Tensor]:
        """The LoRA a snapshot saves: the moving average with emaDecay (what the final LoRA
        will be), else the weights themselves. Not copied: take a copy before training on."""
        weights = self.averages if self.averages is not None else self.parameters
        return {name: weights[i].detach() for name, i in self.names.items()}

    def state_dict(self, optimizer: bool = True) -> dict[str, Any]:
        """`optimizer=False`: a finished run's state, which never steps again."""
        return {
            "step": self.step,
            "lora": self.lora_state_dict(),
            "optimizer": self.optimizer.state_dict() if optimizer else None,
            "schedule": self.schedule.state_dict() if optimizer else None,
            "generator": self.generator.get_state(),
            "picker": self.picker.getstate(),
            "smoothed_loss": self.smoothed_loss,
            "sampling_seconds": self.sampling_seconds,
            "averages": [a.cpu() for a in self.averages] if self.averages is not None else None,
        }

    def release_optimizer(self) -> None:
        """Free the optimizer's state (two tensors per LoRA weight with AdamW) once training
        is over, for what runs after it on the same GPU."""
        self.optimizer.state.clear()
        self.optimizer.zero_grad(set_to_none=True)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        with torch.no_grad():
            for name, index in self.names.items():
                self.parameters[index].copy_(state["lora"][name])
        self._copy_to_model()
        if state["optimizer"] is not None:  # None: a finished run's final state
            self.optimizer.load_state_dict(state["optimizer"])
            self.schedule.load_state_dict(state["schedule"])
        self.generator.set_state(state["generator"])
        self.picker.setstate(state["picker"])
        self.step = state["step"]
        self.smoothed_loss = state["smoothed_loss"]
        self.sampling_seconds = state.get("sampling_seconds", 0.0)
        if self.averages is not None and state.get("averages") is not None:
            for average, saved in zip(self.averages, state["averages"], strict=True):
                average.copy_(saved)

    @contextmanager
    def saved_weights(self) -> Iterator[None]:
        """Meanwhile the model computes with the LoRA a snapshot saves (the moving average with
        emaDecay); afterwards with the trained weights again."""
        if self.averages is None:
            yield
            return
        with torch.no_grad():
            torch._foreach_copy_(self.weights, self.averages)
        try:
            yield
        finally:
            self._copy_to_model()

    def use_averages(self) -> None:
        """Make the LoRA the moving average, once training is over (emaDecay); else nothing."""
        if self.averages is not None:
            with torch.no_grad():
                torch._foreach_copy_(self.parameters, self.averages)
            self._copy_to_model()
