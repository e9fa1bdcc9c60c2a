"""Which layers get LoRA matrices and how they start: by default every linear layer of the
blocks but their modulation, A kaiming-uniform and B zero, as ai-toolkit and kohya train."""

import math

import pytest
import torch

from fluxlora_api.spec import DEFAULT_LORA_TARGETS
from fluxlora_trainer.lora import lora_config

RANK = 16


def transformer_with_lora(tiny_model, targets, init="kaiming"):
    from diffusers import FluxTransformer2DModel

    transformer = FluxTransformer2DModel.from_pretrained(tiny_model, subfolder="transformer")
    torch.manual_seed(0)
    transformer.add_adapter(lora_config(RANK, RANK, list(targets), init))
    return transformer


def block_linear_names(transformer) -> set[str]:
    return {
        name
        for name, module in transformer.named_modules()
        if type(module) is torch.nn.Linear and "transformer_blocks." in name and "lora_" not in name
    }


def adapted_names(transformer) -> set[str]:
    return {name for name, module in transformer.named_modules() if hasattr(module, "lora_A")}


MODULATION = ("norm1.linear", "norm1_context.linear", "norm.linear")


def test_the_default_targets_every_linear_layer_of_the_blocks_but_the_modulation(tiny_model):
    transformer = transformer_with_lora(tiny_model, DEFAULT_LORA_TARGETS)
    linears = {name.removesuffix(".base_layer") for name in block_linear_names(transformer)}
    expected = {name for name in linears if not name.endswith(MODULATION)}
    assert adapted_names(transformer) == expected
    assert len(expected) < len(linears)  # the modulation layers are left out


def test_the_modulation_preset_adds_the_adaptive_norm_projections(tiny_model):
    transformer = transformer_with_lora(tiny_model, [*DEFAULT_LORA_TARGETS, "modulation"])
    linears = {name.removesuffix(".base_layer") for name in block_linear_names(transformer)}
    assert adapted_names(transformer) == linears


def lora_matrices(transformer) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [
        (module.lora_A["default"].weight, module.lora_B["default"].weight)
        for module in transformer.modules()
        if hasattr(module, "lora_A")
    ]


def test_kaiming_init_starts_as_peft_ai_toolkit_and_kohya_do(tiny_model):
    transformer = transformer_with_lora(tiny_model, DEFAULT_LORA_TARGETS)
    for down, up in lora_matrices(transformer):
        fan_in = down.shape[1]
        # kaiming-uniform with a = sqrt(5): uniform within ±1/sqrt(fan_in)
        assert down.abs().max() <= 1 / math.sqrt(fan_in) + 1e-6
        assert down.std().item() == pytest.approx(1 / math.sqrt(3 * fan_in), rel=0.25)
        assert not up.any()  # B starts at zero: the untrained LoRA changes nothing


def test_gaussian_init_draws_a_with_std_one_over_rank(tiny_model):
    transformer = transformer_with_lora(tiny_model, DEFAULT_LORA_TARGETS, "gaussian")
    downs = torch.cat([down.flatten() for down, _ in lora_matrices(transformer)])
    assert downs.std().item() == pytest.approx(1 / RANK, rel=0.05)
