"""Everything the training loop needs, computed once: VAE latents of every image at its bucket
size, and the T5 + CLIP pooled embeddings of every distinct caption (and of the empty caption,
for caption dropout) and of every sample prompt, kept in the encoders' precision (bf16 on GPUs:
half of float32, and exactly what they computed). Afterwards the VAE and text encoders leave the
GPU, and the text encoders never come back: samples are rendered from these embeddings."""

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image

from fluxlora_trainer.buckets import Bucket, bucket_for_image, crop_box
from fluxlora_trainer.dataset import Sample
from fluxlora_trainer.errors import BadInput
from fluxlora_trainer.images import load_rgb
from fluxlora_trainer.pod_memory import memory_limit_bytes

logger = logging.getLogger(__name__)

# FLUX.1-dev reads up to 512 T5 tokens (its pipeline refuses more).
MAX_SEQUENCE_LENGTH = 512
# Of the trainer's memory limit, the share the cached text embeddings may take: the encoders,
# the VAE and the transformer's weights pass through the rest on their way to the GPU.
EMBEDDING_SHARE = 0.25
GIB = 1024**3


@dataclass(frozen=True)
class TextEmbedding:
    prompt: torch.Tensor  # (tokens, width): T5 hidden states
    pooled: torch.Tensor  # (width,): CLIP pooled output


@dataclass(frozen=True)
class CachedSample:
    latents: torch.Tensor  # (channels, height/8, width/8), normalised for the transformer
    caption: str
    bucket: Bucket


@dataclass
class TrainingData:
    samples: list[CachedSample]
    captions: dict[str, TextEmbedding]  # by caption text; "" is the dropout caption
    prompts: list[TextEmbedding] = field(default_factory=list)  # the sample prompts, in order

    def by_bucket(self) -> dict[Bucket, list[int]]:
        groups: dict[Bucket, list[int]] = {}
        for index, sample in enumerate(self.samples):
            groups.setdefault(sample.bucket, []).append(index)
        return groups


def image_tensor(image: Image.Image, bucket: Bucket) -> torch.Tensor:
    """The image scaled to cover `bucket`, centre-cropped, as a (3, H, W) tensor in [-1, 1]."""
    size, box = crop_box(image.width, image.height, bucket)
    fitted = image.resize(size, Image.Resampling.LANCZOS).crop(box)
    array = np.asarray(fitted, dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(array).permute(2, 0, 1)


@torch.no_grad()
def encode_latents(pipeline, pixels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    vae = pipeline.vae
    batch = pixels.unsqueeze(0).to(device=vae.device, dtype=vae.dtype)
    latents = vae.encode(batch).latent_dist.sample(generator=generator)
    return ((latents - vae.config.shift_factor) * vae.config.scaling_factor)[0].float().cpu()


def text_tokens(pipeline) -> int:
    """The T5 tokens each caption is padded to, as the base model was trained: FLUX.1-dev's 512,
    or fewer where its T5 tokenizer says so (a smaller model's shorter window; a step's cost
    grows with it)."""
    return min(MAX_SEQUENCE_LENGTH, pipeline.tokenizer_2.model_max_length)


@torch.no_grad()
def encode_caption(pipeline, caption: str, device: torch.device) -> TextEmbedding:
    prompt, pooled, _ = pipeline.encode_prompt(
        prompt=caption, prompt_2=caption, device=device, max_sequence_length=text_tokens(pipeline)
    )
    return TextEmbedding(prompt=prompt[0].cpu(), pooled=pooled[0].cpu())


def embedding_bytes(pipeline) -> int:
    """Memory of one cached caption: its T5 hidden states and a CLIP pooled vector."""
    t5, clip = pipeline.text_encoder_2, pipeline.text_encoder
    element = torch.empty((), dtype=t5.dtype).element_size()
    return (text_tokens(pipeline) * t5.config.d_model + clip.config.hidden_size) * element


def check_embedding_budget(captions: int, per_caption: int, limit: int | None) -> None:
    """Refuse, before encoding, a dataset whose caption cache (sample prompts included) would
    not fit its share of the trainer's memory."""
    need = captions * per_caption
    if limit is not None and need > limit * EMBEDDING_SHARE:
        raise BadInput(
            f"data: {captions} distinct captions and prompts need {need / GIB:.1f} GiB of "
            f"cached text embeddings, more than {EMBEDDING_SHARE:.0%} of the trainer's memory "
            f"limit ({limit / GIB:.1f} GiB): use fewer distinct captions, or give the trainer more "
            "memory"
        )


def prepare_training_data(
    pipeline,
    samples: list[Sample],
    resolutions: Sequence[int],
    max_pixels: int,
    device: torch.device,
    seed: int,
    prompts: Sequence[str] = (),
) -> TrainingData:
    """Encode the dataset, each image at each of `resolutions` (once per distinct bucket: a
    small image is never upscaled, so several may coincide), and the sample `prompts`; the
    text encoders and VAE are on `device` only meanwhile."""
    distinct = sorted({s.caption for s in samples} | {""})
    texts = len(distinct) + len(prompts)
    check_embedding_budget(texts, embedding_bytes(pipeline), memory_limit_bytes())
    generator = torch.Generator(device=device).manual_seed(seed)
    for part in (pipeline.vae, pipeline.text_encoder, pipeline.text_encoder_2):
        part.to(device)
    cached = []
    for sample in samples:
        image = load_rgb(sample.image, max_pixels)
        buckets = {bucket_for_image(image.width, image.height, r) for r in resolutions}
        for bucket in sorted(buckets):
            latents = encode_latents(pipeline, image_tensor(image, bucket), generator)
            cached.append(CachedSample(latents=latents, caption=sample.caption, bucket=bucket))
    captions = {caption: encode_caption(pipeline, caption, device) for caption in distinct}
    encoded = [encode_caption(pipeline, prompt, device) for prompt in prompts]
    for part in (pipeline.vae, pipeline.text_encoder, pipeline.text_encoder_2):
        part.to("cpu")
    if device.type == "cuda":
        torch.cuda.empty_cache()
    logger.info(
        "cached %d latents in %d bucket(s), %d caption(s) and %d sample prompt(s)",
        len(cached),
        len({s.bucket for s in cached}),
        len(captions),
        len(encoded),
    )
    return TrainingData(samples=cached, captions=captions, prompts=encoded)
