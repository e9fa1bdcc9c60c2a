"""The kohya/ComfyUI file holds exactly the same weight change as the diffusers file."""

import pytest
import torch

from fluxlora_trainer.lora_formats import to_kohya

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
        to_kohya(
            diffusers_keys("transformer_blocks.0", {"norm1.linear": lora(HIDDEN)}), ALPHA, RANK
        )
