"""The optimizers spec.optimizer offers, where they can run."""

import io

import pytest
import torch

from fluxlora_trainer.train_loop import (
    WEIGHT_DECAY,
    build_optimizer,
    learning_rate_factor,
    warmup_steps,
)


def one_step(optimizer, parameter):
    loss = ((parameter - 1.0) ** 2).sum()
    loss.backward()
    optimizer.step()


@pytest.mark.parametrize("name", ["adamw", "adamw8bit", "prodigy"])
def test_every_optimizer_takes_a_step(name):
    # Large enough for bitsandbytes to keep its state in 8 bits (it keeps small tensors in 32).
    parameter = torch.nn.Parameter(torch.zeros(8192))
    optimizer = build_optimizer(name, [parameter], lr=1.0 if name == "prodigy" else 0.1)
    one_step(optimizer, parameter)
    assert parameter.detach().abs().sum() > 0
    if name == "adamw8bit":
        assert optimizer.state[parameter]["state1"].dtype == torch.uint8


def test_adamw_is_fused_and_steps_as_the_per_weight_loop_does():
    torch.manual_seed(0)
    weights = [torch.randn(64, 16), torch.randn(16)]
    fused, looped = ([torch.nn.Parameter(w.clone()) for w in weights] for _ in range(2))
    optimizers = (
        build_optimizer("adamw", fused, lr=0.01),
        torch.optim.AdamW(looped, lr=0.01, weight_decay=WEIGHT_DECAY, foreach=False),
    )
    assert optimizers[0].defaults["fused"]
    for _ in range(3):
        for optimizer, parameters in zip(optimizers, (fused, looped), strict=True):
            optimizer.zero_grad()
            sum(((p - 1.0) ** 2).sum() for p in parameters).backward()
            optimizer.step()
    for a, b in zip(fused, looped, strict=True):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize(("total", "warmup"), [(500, 50), (1000, 100), (4000, 100)])
def test_the_warmup_is_short_and_then_the_rate_is_constant(total, warmup):
    assert warmup_steps(total) == warmup
    assert learning_rate_factor(0, total) == pytest.approx(1 / warmup)
    assert learning_rate_factor(warmup - 1, total) == 1.0
    assert learning_rate_factor(total - 1, total) == 1.0


@pytest.mark.parametrize("name", ["adamw", "adamw8bit", "prodigy"])
def test_every_optimizer_resumes_from_its_saved_state(name):
    """A resumed run takes exactly the step the uninterrupted run would have taken."""
    lr = 1.0 if name == "prodigy" else 0.1
    parameter = torch.nn.Parameter(torch.zeros(8192))
    optimizer = build_optimizer(name, [parameter], lr=lr)
    one_step(optimizer, parameter)
    buffer = io.BytesIO()
    torch.save(
        {"parameter": parameter.detach().clone(), "optimizer": optimizer.state_dict()}, buffer
    )

    optimizer.zero_grad()
    one_step(optimizer, parameter)

    buffer.seek(0)
    saved = torch.load(buffer, weights_only=False)
    resumed = torch.nn.Parameter(saved["parameter"])
    again = build_optimizer(name, [resumed], lr=lr)
    again.load_state_dict(saved["optimizer"])
    one_step(again, resumed)
    assert torch.equal(resumed.detach(), parameter.detach())
