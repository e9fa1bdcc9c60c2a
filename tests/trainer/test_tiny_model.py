"""The tiny FLUX pipeline: the real diffusers layout, loaded the way FLUX.1-dev is loaded."""

import json

from tests.trainer.pipelines import render


def test_it_has_every_part_of_flux_dev_in_the_diffusers_layout(tiny_model):
    index = json.loads((tiny_model / "model_index.json").read_text())
    assert index["_class_name"] == "FluxPipeline"
    parts = {key: value[1] for key, value in index.items() if not key.startswith("_")}
    assert {key: name for key, name in parts.items() if name} == {
        "scheduler": "FlowMatchEulerDiscreteScheduler",
        "text_encoder": "CLIPTextModel",
        "text_encoder_2": "T5EncoderModel",
        "tokenizer": "CLIPTokenizer",
        "tokenizer_2": "T5Tokenizer",  # transformers 5's name for T5TokenizerFast
        "transformer": "FluxTransformer2DModel",
        "vae": "AutoencoderKL",
    }


def test_it_loads_and_renders_and_the_prompt_matters(tiny_model):
    from diffusers import FluxPipeline

    pipeline = FluxPipeline.from_pretrained(tiny_model)

    first = render(pipeline, "a photo of p3r5on")
    again = render(pipeline, "a photo of p3r5on")
    other = render(pipeline, "a dog")
    assert first.shape == (1, 64, 64, 3)
    assert (first == again).all()
    assert abs(first - other).mean() > 0


def test_writing_it_shows_no_bar_and_leaves_the_libraries_bars_as_they_were(tmp_path, capfd):
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    from fluxlora_trainer.tiny_model import write_tiny_model

    write_tiny_model(tmp_path / "tiny")
    assert "Writing model shards" not in capfd.readouterr().err
    assert (tmp_path / "tiny" / "transformer").is_dir()
    assert transformers_logging.is_progress_bar_enabled()
    assert diffusers_logging.is_progress_bar_enabled()
