"""The training step's arithmetic agrees with how the FLUX pipeline samples."""

import math

import pytest
import torch
from diffusers import FluxPipeline
from diffusers.pipelines.flux.pipeline_flux import calculate_shift

from fluxlora_trainer import flow_matching as fm


def test_packing_matches_the_pipeline_and_round_trips():
    latents = torch.randn(2, 16, 8, 12)
    packed = fm.pack(latents)
    assert torch.equal(packed, FluxPipeline._pack_latents(latents, 2, 16, 8, 12))
    assert torch.equal(fm.unpack(packed, 8, 12), latents)
    # the pipeline unpacks from pixel sizes (8x the latent size)
    assert torch.equal(FluxPipeline._unpack_latents(packed, 64, 96, 8), latents)


def test_image_ids_match_the_pipeline():
    ours = fm.image_ids(8, 12, torch.device("cpu"), torch.float32)
    theirs = FluxPipeline._prepare_latent_image_ids(1, 4, 6, torch.device("cpu"), torch.float32)
    assert torch.equal(ours, theirs)


@pytest.mark.parametrize("tokens", [256, 1024, 4096])
def test_the_shift_is_the_one_flux_dev_samples_with(tokens):
    assert fm.shift_mu(tokens) == pytest.approx(calculate_shift(tokens))


def test_sigmas_are_noise_levels_shifted_towards_noise_for_larger_images():
    generator = torch.Generator().manual_seed(0)
    small = fm.sample_sigmas(4096, 256, generator, torch.device("cpu"))
    generator = torch.Generator().manual_seed(0)
    large = fm.sample_sigmas(4096, 4096, generator, torch.device("cpu"))
    assert ((small > 0) & (small < 1)).all() and ((large > 0) & (large < 1)).all()
    assert large.mean() > small.mean()
    # at 256 tokens mu = 0.5: the median sigma is exp(0.5) / (exp(0.5) + 1)
    assert small.median().item() == pytest.approx(math.exp(0.5) / (math.exp(0.5) + 1), abs=0.03)


def test_the_target_is_the_velocity_from_latents_to_noise():
    latents, noise = torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8)
    sigmas = torch.tensor([0.0, 1.0])
    mixed = fm.noisy_latents(latents, noise, sigmas)
    assert torch.equal(mixed[0], latents[0]) and torch.equal(mixed[1], noise[1])
    assert torch.equal(fm.velocity_target(latents, noise), noise - latents)
