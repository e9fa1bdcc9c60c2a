"""Loads the base model with diffusers, from a Hugging Face repo id (HF_TOKEN from the
environment for gated models such as FLUX.1-dev) or a local directory / mounted model cache."""

import logging
import os
import time
from pathlib import Path

import torch

from fluxlora_trainer.errors import BadInput
from fluxlora_trainer.quiet import library_bars_off_in_logs

logger = logging.getLogger(__name__)


def training_device(local_rank: int = 0) -> torch.device:
    """This rank's GPU (made the current one), or the CPU where there is none."""
    if not torch.cuda.is_available():
        return torch.device("cpu")
    torch.cuda.set_device(local_rank)
    return torch.device("cuda", local_rank)


def weight_dtype(device: torch.device) -> torch.dtype:
    """bf16 on GPUs (FLUX.1-dev's own precision); float32 on CPUs, where bf16 is slow."""
    return torch.bfloat16 if device.type == "cuda" else torch.float32


def load_pipeline(base_model: str, dtype: torch.dtype):
    """The FluxPipeline of `base_model` on the CPU; a model that does not exist is bad input."""
    from diffusers import FluxPipeline
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    if base_model.startswith("/") and not (Path(base_model) / "model_index.json").is_file():
        raise BadInput(f"baseModel: {base_model} is not a diffusers model directory")
    token = os.environ.get("HF_TOKEN") or None
    # The libraries' bars are off in a pod's log: these lines say what the load is doing
    # (FLUX.1-dev's weights are tens of GB: a minute or more from a volume, longer from the hub).
    logger.info("loading the base model %s ...", base_model)
    began = time.monotonic()
    try:
        with library_bars_off_in_logs():
            pipeline = FluxPipeline.from_pretrained(base_model, dtype=dtype, token=token)
    except GatedRepoError:
        raise BadInput(
            f"baseModel: {base_model} is gated: accept its licence on Hugging Face and give the "
            "operator a token (--hf-token-secret)"
        ) from None
    except RepositoryNotFoundError:
        raise BadInput(f"baseModel: no such model {base_model}") from None
    logger.info("loaded the base model in %.1f s", time.monotonic() - began)
    return pipeline
