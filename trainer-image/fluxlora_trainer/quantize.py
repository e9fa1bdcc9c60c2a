"""int8 / nf4 base weights with bitsandbytes, so FLUX.1-dev's 12B-parameter transformer trains
on a 24 GB GPU (about 12 GB of weights in int8, about 7 GB in nf4, against 24 GB in bf16).

Every linear layer of the double- and single-stream blocks (over 95% of the weights) is
replaced by its bitsandbytes counterpart, one layer at a time: each full-precision weight stays
in host memory and is quantized as it moves to the training device (the only way
bitsandbytes' Int8Params quantizes: a weight already on the GPU stays in bf16), so the bf16
copy of the whole transformer never sits there. The embedders and the output projection
stay in the compute precision. peft then trains LoRA adapters over the frozen quantized layers
(its bitsandbytes LoRA layers). bitsandbytes runs on CUDA and on CPUs, which is how the tests
train a quantized tiny model. fp8 is not offered: peft cannot train LoRA over fp8 weights."""

import logging

import torch

from fluxlora_trainer.errors import BadInput

logger = logging.getLogger(__name__)

QUANTIZED_BLOCKS = ("transformer_blocks", "single_transformer_blocks")


def _bitsandbytes():
    try:
        import bitsandbytes
    except ImportError:
        raise BadInput(
            "baseWeights: int8 and nf4 need bitsandbytes, which this image lacks"
        ) from None
    return bitsandbytes


def quantized_linear(
    linear: torch.nn.Linear, base_weights: str, device: torch.device, compute_dtype: torch.dtype
) -> torch.nn.Module:
    """The bitsandbytes layer for `linear`, quantized as it moves from host memory to `device`."""
    bnb = _bitsandbytes()
    weight = linear.weight.data.cpu()  # a no-op for a model loaded on the CPU, as it is
    has_bias = linear.bias is not None
    if base_weights == "int8":
        layer = bnb.nn.Linear8bitLt(
            linear.in_features, linear.out_features, bias=has_bias, has_fp16_weights=False
        )
        layer.weight = bnb.nn.Int8Params(weight, requires_grad=False, has_fp16_weights=False)
    elif base_weights == "nf4":
        layer = bnb.nn.Linear4bit(
            linear.in_features,
            linear.out_features,
            bias=has_bias,
            compute_dtype=compute_dtype,
            quant_type="nf4",
        )
        layer.weight = bnb.nn.Params4bit(weight, requires_grad=False, quant_type="nf4")
    else:
        raise BadInput(f"baseWeights: cannot quantize to {base_weights!r}")
    if has_bias:
        layer.bias = torch.nn.Parameter(linear.bias.data.to(device, compute_dtype), False)
    return layer.to(device)


def quantize_transformer(
    transformer: torch.nn.Module,
    base_weights: str,
    device: torch.device,
    compute_dtype: torch.dtype,
) -> int:
    """Replace the blocks' linear layers in place; returns how many were quantized. bf16 (the
    released precision) leaves the transformer as it is."""
    if base_weights == "bf16":
        return 0
    count = 0
    for blocks in QUANTIZED_BLOCKS:
        for parent in getattr(transformer, blocks).modules():
            for name, child in list(parent.named_children()):
                if type(child) is torch.nn.Linear:
                    setattr(
                        parent, name, quantized_linear(child, base_weights, device, compute_dtype)
                    )
                    count += 1
    # The flags diffusers' own quantized loading sets: peft then wraps these layers in its
    # bitsandbytes LoRA layers, which cast inputs to the adapter's precision.
    if base_weights == "int8":
        # Said once here: bitsandbytes would say it at every int8 matmul (quiet.py).
        logger.info("int8 base weights: their matmuls take float16 inputs (LLM.int8())")
    transformer.is_loaded_in_8bit = base_weights == "int8"
    transformer.is_loaded_in_4bit = base_weights == "nf4"
    transformer.to(device)
    return count
