"""int8 / nf4 base weights: the blocks' linear layers become bitsandbytes layers that hold far
fewer bytes and compute nearly the same thing."""

import logging

import pytest
import torch

from fluxlora_trainer.quantize import quantize_transformer

CPU = torch.device("cpu")


def load_transformer(tiny_model):
    from diffusers import FluxTransformer2DModel

    return FluxTransformer2DModel.from_pretrained(tiny_model, subfolder="transformer")


def block_linear_layers(transformer) -> list[torch.nn.Module]:
    blocks = [*transformer.transformer_blocks, *transformer.single_transformer_blocks]
    return [m for block in blocks for m in block.modules() if hasattr(m, "in_features")]


def weight_bytes(layers: list[torch.nn.Module]) -> int:
    return sum(layer.weight.numel() * layer.weight.element_size() for layer in layers)


def forward(transformer) -> torch.Tensor:
    config = transformer.config
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        return transformer(
            hidden_states=torch.randn(1, 16, config.in_channels, generator=generator),
            encoder_hidden_states=torch.randn(
                1, 8, config.joint_attention_dim, generator=generator
            ),
            pooled_projections=torch.randn(1, config.pooled_projection_dim, generator=generator),
            timestep=torch.tensor([0.5]),
            guidance=torch.ones(1),
            img_ids=torch.zeros(16, 3),
            txt_ids=torch.zeros(8, 3),
        ).sample


@pytest.mark.parametrize(("weights", "ratio"), [("int8", 4), ("nf4", 8)])
def test_every_block_linear_layer_is_quantized(tiny_model, weights, ratio):
    transformer = load_transformer(tiny_model)
    layers = block_linear_layers(transformer)
    full_bytes = weight_bytes(layers)  # float32 here
    reference = forward(transformer)

    assert quantize_transformer(transformer, weights, CPU, torch.float32) == len(layers)

    quantized = block_linear_layers(transformer)
    assert all(type(layer) is not torch.nn.Linear for layer in quantized)
    assert weight_bytes(quantized) * ratio == full_bytes
    output = forward(transformer)
    # Close to the full-precision output, as quantization promises; not identical.
    assert 0 < (output - reference).abs().mean() < 0.1 * reference.abs().mean()


def test_bf16_leaves_the_transformer_as_released(tiny_model):
    transformer = load_transformer(tiny_model)
    before = {name: p.clone() for name, p in transformer.named_parameters()}
    assert quantize_transformer(transformer, "bf16", CPU, torch.float32) == 0
    assert all(torch.equal(p, before[name]) for name, p in transformer.named_parameters())


@pytest.mark.parametrize(("weights", "stored"), [("int8", torch.int8), ("nf4", torch.uint8)])
def test_each_weight_is_stored_quantized_or_in_the_compute_precision_on_the_device(
    tiny_model, weights, stored
):
    transformer = load_transformer(tiny_model)
    quantize_transformer(transformer, weights, CPU, torch.float32)
    quantized = {id(layer.weight) for layer in block_linear_layers(transformer)}
    for name, parameter in transformer.named_parameters():
        assert parameter.device == CPU, name
        expected = stored if id(parameter) in quantized else torch.float32
        assert parameter.dtype == expected, name


def test_int8_matmuls_do_not_log_at_every_call(tiny_model, caplog):
    caplog.set_level(logging.INFO)
    transformer = load_transformer(tiny_model)
    quantize_transformer(transformer, "int8", CPU, torch.float32)
    forward(transformer)
    forward(transformer)
    assert "MatMul8bitLt" not in caplog.text
    assert caplog.text.count("int8 base weights: their matmuls take float16 inputs") == 1
