"""Loads the base model with diffusers, from a Hugging Face repo id (HF_TOKEN from the
environment for gated models such as FLUX.1-dev) or a local directory / mounted model cache."""

import logging
import os
from pathlib import Path

import torch

from fluxlora_trainer.errors import BadInput

logger = logging.getLogger(__name__)


def training_device() -> torch.device:
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def weight_dtype(device: torch.device) -> torch.dtype:
    """bf16 on GPUs (FLUX.1-dev's own precision); float32 on CPUs, where bf16 is slow."""
    return torch.bfloat16 if device.type == "cuda" else torch.float32


def quantization_config(base_weights: str, dtype: torch.dtype):
    """bitsandbytes settings for int8 / nf4 base weights; None for the released bf16."""
    if base_weights == "bf16":
        return None
    if not torch.cuda.is_available():
        raise BadInput(f"baseWeights: {base_weights} needs a CUDA GPU (bitsandbytes)")
    from diffusers import BitsAndBytesConfig

    if base_weights == "int8":
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=dtype
    )


def load_pipeline(base_model: str, dtype: torch.dtype, base_weights: str = "bf16"):
    """The FluxPipeline of `base_model`, its transformer in `base_weights` precision; a model
    that does not exist is bad input."""
    from diffusers import FluxPipeline, FluxTransformer2DModel
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    if base_model.startswith("/") and not (Path(base_model) / "model_index.json").is_file():
        raise BadInput(f"baseModel: {base_model} is not a diffusers model directory")
    quantization = quantization_config(base_weights, dtype)
    token = os.environ.get("HF_TOKEN") or None
    try:
        parts = {}
        if quantization is not None:
            # Quantized on loading, straight onto the GPU: the bf16 weights never sit there.
            parts["transformer"] = FluxTransformer2DModel.from_pretrained(
                base_model,
                subfolder="transformer",
                quantization_config=quantization,
                dtype=dtype,
                token=token,
            )
        return FluxPipeline.from_pretrained(base_model, dtype=dtype, token=token, **parts)
    except GatedRepoError:
        raise BadInput(
            f"baseModel: {base_model} is gated: accept its licence on Hugging Face and give the "
            "operator a token (--hf-token-secret)"
        ) from None
    except RepositoryNotFoundError:
        raise BadInput(f"baseModel: no such model {base_model}") from None
