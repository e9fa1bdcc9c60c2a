"""Rendering with a (tiny) FLUX pipeline, the same way in every test."""

import numpy as np
import torch


def render(pipeline, prompt: str, size: int = 64, seed: int = 0) -> np.ndarray:
    generator = torch.Generator().manual_seed(seed)
    return pipeline(
        prompt,
        height=size,
        width=size,
        num_inference_steps=2,
        generator=generator,
        output_type="np",
    ).images
