"""The kohya/ComfyUI file holds exactly the same weight change as the diffusers file."""

import pytest
import torch

from fluxlora_trainer.lora_formats import to_kohya
from tests.trainer.pipelines import render

RANK, ALPHA = 4, 8.0
HIDDEN, MLP = 12, 20


def lora(out_features: int, in_features: int = HIDDEN) -> dict[str, torch.Tensor]:
    return {"A": torch.randn(RANK, in_features), "B": torch.randn(out_features, RANK)}


def delta(down: torch.Tensor, up: torch.Tensor, alpha: float) -> torch.Tensor:
    return (alpha / down.shape[0]) * up @ down


def diffusers_keys(
    prefix: str, parts: dict[str, dict[str, torch.Tensor]]
) -> dict[str, torch.Tensor]:
    return {
        f"transformer.{prefix}.{module}.lora_{side}.weight": tensors[side]
        for module, tensors in parts.items()
        for side in "AB"
    }


def test_double_block_qkv_fuse_into_one_projection():
    torch.manual_seed(0)
    parts = {
        "attn.to_q": lora(HIDDEN),
        "attn.to_k": lora(HIDDEN),
        "attn.to_v": lora(HIDDEN),
        "attn.to_out.0": lora(HIDDEN),
    }
    kohya = to_kohya(diffusers_keys("transformer_blocks.0", parts), ALPHA, RANK)
    name = "lora_unet_double_blocks_0_img_attn_qkv"
    fused = delta(
        kohya[f"{name}.lora_down.weight"],
        kohya[f"{name}.lora_up.weight"],
        kohya[f"{name}.alpha"].item(),
    )
    expected = torch.cat(
        [
            delta(parts[m]["A"], parts[m]["B"], ALPHA)
            for m in ("attn.to_q", "attn.to_k", "attn.to_v")
        ]
    )
    assert torch.allclose(fused, expected, atol=1e-5)
    proj = "lora_unet_double_blocks_0_img_attn_proj"
    assert torch.allclose(
        delta(
            kohya[f"{proj}.lora_down.weight"],
            kohya[f"{proj}.lora_up.weight"],
            kohya[f"{proj}.alpha"].item(),
        ),
        delta(parts["attn.to_out.0"]["A"], parts["attn.to_out.0"]["B"], ALPHA),
        atol=1e-5,
    )


@pytest.mark.parametrize("with_mlp", [False, True])
def test_single_block_linear1_fuses_attention_and_mlp_with_zero_rows_for_untrained_parts(with_mlp):
    torch.manual_seed(1)
    parts = {"attn.to_q": lora(HIDDEN), "attn.to_k": lora(HIDDEN), "attn.to_v": lora(HIDDEN)}
    if with_mlp:
        parts["proj_mlp"] = lora(MLP)
    kohya = to_kohya(
        diffusers_keys("single_transformer_blocks.3", parts), ALPHA, RANK, (HIDDEN, MLP)
    )
    name = "lora_unet_single_blocks_3_linear1"
    fused = delta(
        kohya[f"{name}.lora_down.weight"],
        kohya[f"{name}.lora_up.weight"],
        kohya[f"{name}.alpha"].item(),
    )
    assert fused.shape == (3 * HIDDEN + MLP, HIDDEN)
    pieces = [
        delta(parts[m]["A"], parts[m]["B"], ALPHA) for m in ("attn.to_q", "attn.to_k", "attn.to_v")
    ]
    pieces.append(
        delta(parts["proj_mlp"]["A"], parts["proj_mlp"]["B"], ALPHA)
        if with_mlp
        else torch.zeros(MLP, HIDDEN)
    )
    assert torch.allclose(fused, torch.cat(pieces), atol=1e-5)


def test_an_unknown_module_is_refused():
    with pytest.raises(ValueError, match="no kohya name"):
        to_kohya(diffusers_keys("transformer_blocks.0", {"attn.norm_q": lora(HIDDEN)}), ALPHA, RANK)


@pytest.mark.parametrize(
    ("prefix", "module", "kohya_name"),
    [
        ("transformer_blocks.3", "norm1.linear", "lora_unet_double_blocks_3_img_mod_lin"),
        ("transformer_blocks.3", "norm1_context.linear", "lora_unet_double_blocks_3_txt_mod_lin"),
        ("single_transformer_blocks.5", "norm.linear", "lora_unet_single_blocks_5_modulation_lin"),
    ],
)
def test_modulation_layers_keep_their_weight_change_under_the_kohya_names(
    prefix, module, kohya_name
):
    torch.manual_seed(0)
    part = lora(6 * HIDDEN)  # shift, scale and gate, twice in the double blocks
    kohya = to_kohya(diffusers_keys(prefix, {module: part}), ALPHA, RANK, (HIDDEN, MLP))
    assert set(kohya) == {
        f"{kohya_name}.{name}" for name in ("lora_down.weight", "lora_up.weight", "alpha")
    }
    assert torch.allclose(
        delta(
            kohya[f"{kohya_name}.lora_down.weight"],
            kohya[f"{kohya_name}.lora_up.weight"],
            kohya[f"{kohya_name}.alpha"].item(),
        ),
        delta(part["A"], part["B"], ALPHA),
        atol=1e-5,
    )


def test_diffusers_reads_the_kohya_file_as_the_same_lora(tiny_model, tmp_path):
    """diffusers' own kohya converter, on the layers whose kohya names do not depend on FLUX's
    full-size widths (it hard-codes those of the fused single-block projection)."""
    from diffusers import FluxPipeline
    from peft.utils import get_peft_model_state_dict

    from fluxlora_api.contract import TrainingConfig
    from fluxlora_trainer.lora import lora_config
    from fluxlora_trainer.lora_formats import lora_targets, save_both_formats

    config = TrainingConfig.model_validate(
        {
            "data": "https://example.com/a.zip",
            "output": "/out",
            "loraRank": RANK,
            "loraAlpha": ALPHA,
        }
    )
    trained = FluxPipeline.from_pretrained(tiny_model)
    targets = ["context", "feed-forward", "modulation"]
    trained.transformer.add_adapter(lora_config(RANK, ALPHA, targets))
    torch.manual_seed(0)
    for name, parameter in trained.transformer.named_parameters():
        if "lora_" in name:
            parameter.data = torch.randn_like(parameter) * 0.2
    state = get_peft_model_state_dict(trained.transformer)
    assert lora_targets(trained.transformer) == sorted(
        {key.rsplit(".lora_", 1)[0] for key in state}
    )
    assert any(module.endswith("norm.linear") for module in lora_targets(trained.transformer))
    diffusers_file, kohya_file = save_both_formats(tmp_path, state, config, 0, trained.transformer)
    assert (diffusers_file.name, kohya_file.name) == (
        "lora.safetensors",
        "lora_comfyui.safetensors",
    )

    images = []
    for path in (None, diffusers_file, kohya_file):
        pipeline = FluxPipeline.from_pretrained(tiny_model)
        if path:
            pipeline.load_lora_weights(str(path))
        images.append(render(pipeline, "a photo"))
    base, from_diffusers, from_kohya = images
    assert abs(from_diffusers - base).mean() > 1e-3  # the LoRA does change the image
    assert abs(from_kohya - from_diffusers).max() < 1e-4
