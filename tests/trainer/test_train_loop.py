"""The training loop keeps the GPU busy: a step never waits to read its loss (the loop reads
ten steps' losses at once), and a loss that is not finite still stops the run, naming its step.
With emaDecay the moving average of the LoRA weights becomes the LoRA. Over bf16 base weights
the whole step computes in bf16 (no autocast) while the optimizer steps float32 masters."""

import math
import sys

import pytest
import torch

from fluxlora_api.contract import TrainingConfig
from fluxlora_trainer.cache import prepare_training_data
from fluxlora_trainer.train_loop import LOSS_READ_STEPS, LoRATrainer
from tests.trainer.test_cache import samples

CPU = torch.device("cpu")


def make_trainer(tiny_model, folder, dtype=torch.float32, **fields) -> LoRATrainer:
    from diffusers import FluxPipeline

    pipeline = FluxPipeline.from_pretrained(tiny_model, dtype=dtype)
    config = TrainingConfig.model_validate(
        {"data": "https://example.com/a.zip", "output": str(folder), "resolution": 256,
         "steps": 500, "checkpointEverySteps": 0, **fields}
    )  # fmt: skip
    data = prepare_training_data(pipeline, samples(folder, ["a", "b"]), [256], 10**8, CPU, 0)
    trainer = LoRATrainer(pipeline.transformer, data, config, 0, CPU, dtype)
    trainer.step = 500 - 2 * LOSS_READ_STEPS  # the last twenty steps are enough
    return trainer


@pytest.fixture
def trainer(tiny_model, tmp_path) -> LoRATrainer:
    return make_trainer(tiny_model, tmp_path)


@pytest.fixture
def reads(monkeypatch) -> list[str]:
    """Every value the trainer's own code reads from a tensor (each read waits for the GPU)."""
    found: list[str] = []

    def counting(original):
        def read(self, *args, **kwargs):
            if sys._getframe(1).f_code.co_filename.endswith("train_loop.py"):
                found.append(original.__name__)
            return original(self, *args, **kwargs)

        return read

    for name in ("item", "tolist"):
        monkeypatch.setattr(torch.Tensor, name, counting(getattr(torch.Tensor, name)))
    return found


def test_the_loop_reads_the_losses_of_ten_steps_at_once(trainer, reads):
    reports = []
    trainer.run(on_step=reports.append)
    assert [report.step for report in reports] == list(range(481, 501))
    assert all(math.isfinite(report.loss) for report in reports)
    assert len(reads) == 2  # 20 steps, one read per ten
    assert reports[-1].smoothed_loss == trainer.smoothed_loss


def test_a_step_returns_its_loss_without_reading_it(trainer, reads):
    loss = trainer.train_step()
    assert isinstance(loss, torch.Tensor) and not loss.requires_grad
    assert reads == []


def test_a_loss_that_is_not_finite_stops_the_run_naming_its_step(trainer):
    with torch.no_grad():
        next(p for p in trainer.parameters).fill_(float("nan"))
    with pytest.raises(FloatingPointError, match=r"the loss became nan at step 481"):
        trainer.run()


def test_with_ema_decay_the_moving_average_becomes_the_lora(tiny_model, tmp_path):
    trainer = make_trainer(tiny_model, tmp_path, emaDecay=0.9)
    before = [p.detach().clone() for p in trainer.parameters]
    trainer.train_step()
    after = [p.detach().clone() for p in trainer.parameters]
    for average, old, new in zip(trainer.averages, before, after, strict=True):
        assert torch.allclose(average, 0.9 * old + 0.1 * new, atol=1e-7)
    trainer.run()
    assert any(
        not torch.equal(a, p) for a, p in zip(trainer.averages, trainer.parameters, strict=True)
    )
    saved = trainer.state_dict()  # a checkpoint carries the average, and a resume restores it
    (tmp_path / "again").mkdir()
    resumed = make_trainer(tiny_model, tmp_path / "again", emaDecay=0.9)
    resumed.load_state_dict(saved)
    assert all(torch.equal(a, b) for a, b in zip(resumed.averages, trainer.averages, strict=True))
    trainer.use_averages()
    assert all(torch.equal(a, p) for a, p in zip(trainer.averages, trainer.parameters, strict=True))


def test_without_ema_decay_the_lora_is_the_last_step(trainer):
    trainer.run()
    last = [p.detach().clone() for p in trainer.parameters]
    trainer.use_averages()
    assert trainer.averages is None
    assert all(torch.equal(a, p) for a, p in zip(last, trainer.parameters, strict=True))


def test_over_bf16_weights_the_step_computes_in_bf16_and_steps_float32_masters(
    tiny_model, tmp_path
):
    trainer = make_trainer(tiny_model, tmp_path, dtype=torch.bfloat16)
    autocast = []
    trainer.transformer.register_forward_pre_hook(
        lambda module, args: autocast.append(torch.is_autocast_enabled("cpu"))
    )
    assert {w.dtype for w in trainer.weights} == {torch.bfloat16}  # what the model computes with
    assert {p.dtype for p in trainer.parameters} == {torch.float32}  # what the optimizer steps
    stepped = trainer.optimizer.param_groups[0]["params"]
    assert all(a is b for a, b in zip(stepped, trainer.parameters, strict=True))
    trainer.run()
    assert autocast and not any(autocast)
    for weight, master in zip(trainer.weights, trainer.parameters, strict=True):
        assert torch.equal(weight, master.to(torch.bfloat16))  # the model follows its masters
    saved = trainer.state_dict()
    assert {t.dtype for t in saved["lora"].values()} == {torch.float32}
    (tmp_path / "again").mkdir()
    resumed = make_trainer(tiny_model, tmp_path / "again", dtype=torch.bfloat16)
    resumed.load_state_dict(saved)
    assert all(
        torch.equal(a, b) for a, b in zip(resumed.parameters, trainer.parameters, strict=True)
    )
    assert all(torch.equal(a, b) for a, b in zip(resumed.weights, trainer.weights, strict=True))
