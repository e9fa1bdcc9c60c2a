"""The optimizers spec.optimizer offers, where they can run."""

import pytest
import torch

from fluxlora_trainer.errors import BadInput
from fluxlora_trainer.train_loop import build_optimizer, learning_rate_factor, warmup_steps


def one_step(optimizer, parameter):
    loss = ((parameter - 1.0) ** 2).sum()
    loss.backward()
    optimizer.step()


@pytest.mark.parametrize("name", ["adamw", "prodigy"])
def test_the_optimizers_that_run_anywhere_take_a_step(name):
    parameter = torch.nn.Parameter(torch.zeros(8))
    optimizer = build_optimizer(name, [parameter], lr=1.0 if name == "prodigy" else 0.1)
    one_step(optimizer, parameter)
    assert parameter.detach().abs().sum() > 0


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown without a GPU")
def test_8bit_adamw_without_a_gpu_is_bad_input_that_says_why():
    with pytest.raises(BadInput, match="optimizer: adamw8bit runs only on CUDA GPUs"):
        build_optimizer("adamw8bit", [torch.nn.Parameter(torch.zeros(2))], lr=0.1)


@pytest.mark.parametrize(("total", "warmup"), [(500, 50), (1000, 100), (4000, 100)])
def test_the_warmup_is_short_and_then_the_rate_is_constant(total, warmup):
    assert warmup_steps(total) == warmup
    assert learning_rate_factor(0, total) == pytest.approx(1 / warmup)
    assert learning_rate_factor(warmup - 1, total) == 1.0
    assert learning_rate_factor(total - 1, total) == 1.0
