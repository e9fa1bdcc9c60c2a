"""The FLUX flow-matching arithmetic of a training step (pure tensor functions).

FLUX denoises latents packed into 2x2 patches. A training step mixes latents x and noise e at a
noise level sigma, x_sigma = (1 - sigma) x + sigma e, and the transformer learns the velocity
e - x. Sigma is drawn logit-normally and shifted towards noise for larger images, with the same
resolution-dependent shift FLUX.1-dev uses at inference (mu grows with the token count).
"""

import math

import torch

# FLUX.1-dev's scheduler configuration (scheduler/scheduler_config.json).
BASE_SEQ_LEN, MAX_SEQ_LEN = 256, 4096
BASE_SHIFT, MAX_SHIFT = 0.5, 1.15


def pack(latents: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, H/2 * W/2, C*4): 2x2 patches as tokens."""
    b, c, h, w = latents.shape
    patches = latents.view(b, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5)
    return patches.reshape(b, (h // 2) * (w // 2), c * 4)


def unpack(tokens: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """The inverse of pack, for latents of `height` x `width`."""
    b, _, packed_channels = tokens.shape
    c = packed_channels // 4
    patches = tokens.view(b, height // 2, width // 2, c, 2, 2).permute(0, 3, 1, 4, 2, 5)
    return patches.reshape(b, c, height, width)


def image_ids(height: int, width: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Positions (0, row, column) of the packed tokens of an height x width latent, for RoPE."""
    ids = torch.zeros(height // 2, width // 2, 3)
    ids[..., 1] = torch.arange(height // 2)[:, None]
    ids[..., 2] = torch.arange(width // 2)[None, :]
    return ids.reshape(-1, 3).to(device=device, dtype=dtype)


def shift_mu(token_count: int) -> float:
    """The resolution-dependent shift: linear in the number of image tokens."""
    slope = (MAX_SHIFT - BASE_SHIFT) / (MAX_SEQ_LEN - BASE_SEQ_LEN)
    return BASE_SHIFT + slope * (token_count - BASE_SEQ_LEN)


def sample_sigmas(
    batch: int, token_count: int, generator: torch.Generator, device: torch.device
) -> torch.Tensor:
    """Noise levels in (0, 1): logit-normal, then shifted for the image size."""
    t = torch.sigmoid(torch.randn(batch, generator=generator)).to(device)
    mu = math.exp(shift_mu(token_count))
    return mu / (mu + (1 / t - 1))


def noisy_latents(latents: torch.Tensor, noise: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    sigma = sigmas.view(-1, 1, 1, 1).to(latents.dtype)
    return (1 - sigma) * latents + sigma * noise


def velocity_target(latents: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    return noise - latents
