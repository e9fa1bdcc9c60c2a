"""Sample images: the sample prompts rendered with the LoRA as it is, from their cached text
embeddings (encoded once, with the training captions), so the text encoders never come back to
the GPU; the same seed per prompt at every step, so the images of two steps compare."""

import logging
from collections.abc import Sequence
from pathlib import Path

import torch

from fluxlora_trainer.cache import TextEmbedding

logger = logging.getLogger(__name__)

SAMPLE_STEPS = 28
SAMPLE_GUIDANCE = 3.5
TEXT_PARTS = ("text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2")


def without_text_encoders(pipeline):
    """The same pipeline (the same transformer, VAE and scheduler objects) without its text
    encoders: it runs on the transformer's device and can only take embeddings."""
    parts = {**pipeline.components, **dict.fromkeys(TEXT_PARTS)}
    return type(pipeline)(**parts)


def render_samples(
    pipeline,
    prompts: Sequence[TextEmbedding],
    size: int,
    seed: int,
    folder: Path,
    names: Sequence[str],
) -> list[Path]:
    """Render each prompt at `size` x `size` to `folder`/`names[i]` with the transformer as it
    is (its LoRA included). The VAE visits the transformer's device meanwhile; the transformer
    is put back in the mode it was in."""
    renderer = without_text_encoders(pipeline)
    transformer, vae = pipeline.transformer, pipeline.vae
    device, vae_device = transformer.device, vae.device
    dtype = transformer.dtype
    training = transformer.training
    folder.mkdir(parents=True, exist_ok=True)
    transformer.eval()
    vae.to(device)
    paths = []
    try:
        for index, (prompt, name) in enumerate(zip(prompts, names, strict=True)):
            generator = torch.Generator(device=device).manual_seed(seed + index)
            with torch.no_grad():
                image = renderer(
                    prompt_embeds=prompt.prompt.unsqueeze(0).to(device, dtype),
                    pooled_prompt_embeds=prompt.pooled.unsqueeze(0).to(device, dtype),
                    height=size,
                    width=size,
                    num_inference_steps=SAMPLE_STEPS,
                    guidance_scale=SAMPLE_GUIDANCE,
                    generator=generator,
                ).images[0]
            path = folder / name
            image.save(path)
            paths.append(path)
    finally:
        vae.to(vae_device)
        transformer.train(training)
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return paths


def render_samples_safely(
    pipeline,
    prompts: Sequence[TextEmbedding],
    size: int,
    seed: int,
    folder: Path,
    names: Sequence[str],
) -> list[Path]:
    """The sample images, or none when rendering fails (out of memory, most likely): samples
    illustrate a run, and never cost it its LoRA or its training."""
    try:
        return render_samples(pipeline, prompts, size, seed, folder, names)
    except Exception as error:
        logger.warning("samples skipped (the run goes on without them): %s", error)
        return []
