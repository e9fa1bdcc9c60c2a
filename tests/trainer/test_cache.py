"""The training data cache: text embeddings kept in the encoders' precision, and a caption
cache that would not fit the trainer's memory refused before anything is encoded."""

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from fluxlora_localcluster.datasets import image_bytes
from fluxlora_trainer import cache
from fluxlora_trainer.cache import check_embedding_budget, embedding_bytes, prepare_training_data
from fluxlora_trainer.dataset import Sample
from fluxlora_trainer.errors import BadInput
from fluxlora_trainer.pod_memory import memory_limit_bytes

GIB = 1024**3
CPU = torch.device("cpu")


def samples(folder: Path, captions: list[str]) -> list[Sample]:
    found = []
    for index, caption in enumerate(captions):
        path = folder / f"photo_{index}.png"
        path.write_bytes(image_bytes("PNG", size=(96, 64)))
        found.append(Sample(image=path, name=path.name, caption=caption, width=96, height=64))
    return found


def test_text_embeddings_stay_in_the_encoders_precision(tiny_model, tmp_path):
    from diffusers import FluxPipeline

    pipeline = FluxPipeline.from_pretrained(tiny_model, dtype=torch.bfloat16)
    data = prepare_training_data(
        pipeline, samples(tmp_path, ["a p3r5on", "p3r5on"]), [256], 10**8, CPU, seed=0
    )
    assert set(data.captions) == {"", "a p3r5on", "p3r5on"}
    for embedding in data.captions.values():
        # bf16, as the encoders computed them: half of float32's memory, nothing lost
        assert embedding.prompt.dtype == torch.bfloat16
        assert embedding.pooled.dtype == torch.bfloat16
        # the tiny model's T5 tokenizer reads 128 tokens: its window, not FLUX.1-dev's 512
        assert embedding.prompt.shape[0] == pipeline.tokenizer_2.model_max_length == 128
    per_caption = embedding_bytes(pipeline)
    stored = sum(
        e.prompt.numel() * e.prompt.element_size() + e.pooled.numel() * e.pooled.element_size()
        for e in data.captions.values()
    )
    assert stored == 3 * per_caption


def test_a_caption_cache_past_its_share_of_the_memory_limit_is_refused():
    check_embedding_budget(1000, 4 * 1024**2, None)  # no limit: nothing to check
    check_embedding_budget(1000, 4 * 1024**2, 16 * GIB)  # 3.9 GiB of 16
    with pytest.raises(BadInput) as error:
        check_embedding_budget(5000, 4 * 1024**2, 32 * GIB)
    assert str(error.value).startswith("data: 5000 distinct captions and prompts need 19.5 GiB")
    assert "32.0 GiB" in str(error.value)


def test_the_refusal_comes_before_any_encoding(tiny_model, tmp_path, monkeypatch):
    from diffusers import FluxPipeline

    pipeline = FluxPipeline.from_pretrained(tiny_model)
    monkeypatch.setattr(cache, "memory_limit_bytes", lambda: 3 * embedding_bytes(pipeline))
    encoded = []
    monkeypatch.setattr(cache, "encode_latents", lambda *args: encoded.append(args))
    with pytest.raises(BadInput, match=r"^data: 4 distinct captions"):
        prepare_training_data(
            pipeline, samples(tmp_path, ["a", "b", "c"]), [256], 10**8, CPU, seed=0
        )
    assert not encoded


@pytest.mark.parametrize(
    ("v2", "v1", "expected"),
    [
        ("8589934592\n", None, 8 * GIB),
        ("max\n", None, None),
        (None, "17179869184\n", 16 * GIB),
        (None, "9223372036854771712\n", None),  # cgroup v1's "no limit"
        (None, None, None),
    ],
)
def test_the_memory_limit_is_read_from_either_cgroup_version(tmp_path, v2, v1, expected):
    paths = []
    for name, text in (("memory.max", v2), ("memory.limit_in_bytes", v1)):
        path = tmp_path / name
        if text is not None:
            path.write_text(text)
        paths.append(path)
    assert memory_limit_bytes(*paths) == expected


def test_with_several_resolutions_each_image_is_cached_at_each_it_can_fill(tiny_model, tmp_path):
    from diffusers import FluxPipeline

    pipeline = FluxPipeline.from_pretrained(tiny_model)
    large = tmp_path / "large.png"
    large.write_bytes(image_bytes("PNG", size=(1200, 800)))
    found = [*samples(tmp_path, ["small"]), Sample(large, "large.png", "large", 1200, 800)]
    data = prepare_training_data(pipeline, found, [512, 768, 1024], 10**8, CPU, seed=0)
    by_caption: dict[str, list] = {}
    for sample in data.samples:
        by_caption.setdefault(sample.caption, []).append(sample.bucket)
    assert len(by_caption["small"]) == 1  # 96x64: one bucket at its own size, whatever asked
    areas = sorted(b.width * b.height for b in by_caption["large"])
    assert len(areas) == 3 and areas[-1] <= 1024**2 and areas[0] <= 512**2
    assert all(s.latents.shape[1:] == (s.bucket.height // 8, s.bucket.width // 8)
               for s in data.samples)  # fmt: skip


@pytest.mark.parametrize(
    ("tokenizer_says", "padded_to"),
    [(512, 512), (int(1e30), 512), (128, 128)],  # FLUX.1-dev's, a tokenizer without a limit
)
def test_captions_are_padded_to_the_base_models_t5_window_at_most_512(tokenizer_says, padded_to):
    pipeline = SimpleNamespace(tokenizer_2=SimpleNamespace(model_max_length=tokenizer_says))
    assert cache.text_tokens(pipeline) == padded_to
