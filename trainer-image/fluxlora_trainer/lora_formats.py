"""The two LoRA files a run produces.

- `lora.safetensors`: diffusers/PEFT keys (transformer.<module>.lora_A/lora_B.weight) with the
  adapter config in the metadata, so `FluxPipeline.load_lora_weights` applies the right alpha.
- `lora_comfyui.safetensors`: the kohya layout ComfyUI and Forge read (lora_unet_double_blocks_N_
  img_attn_qkv.lora_down/lora_up/alpha). FLUX's original checkpoint fuses q, k and v (and, in
  single blocks, the MLP input) into one projection, so separate LoRAs are fused the exact way:
  stacked down matrices, block-diagonal up matrices, alpha scaled with the grown rank.

Both carry the run's description (base model, trigger word, rank, alpha, steps) as metadata.
"""

import json
import re
from pathlib import Path

import torch
from safetensors.torch import save_file

from fluxlora_api.contract import TrainingConfig
from fluxlora_api.outputs import KOHYA_LORA_FILE, LORA_FILE

ADAPTER_METADATA_KEY = "lora_adapter_metadata"  # what diffusers reads the adapter config from

# diffusers module -> (kohya module, position of this part within the fused projection)
_DOUBLE = {
    "attn.to_q": ("img_attn_qkv", 0),
    "attn.to_k": ("img_attn_qkv", 1),
    "attn.to_v": ("img_attn_qkv", 2),
    "attn.to_out.0": ("img_attn_proj", 0),
    "attn.add_q_proj": ("txt_attn_qkv", 0),
    "attn.add_k_proj": ("txt_attn_qkv", 1),
    "attn.add_v_proj": ("txt_attn_qkv", 2),
    "attn.to_add_out": ("txt_attn_proj", 0),
    "ff.net.0.proj": ("img_mlp_0", 0),
    "ff.net.2": ("img_mlp_2", 0),
    "ff_context.net.0.proj": ("txt_mlp_0", 0),
    "ff_context.net.2": ("txt_mlp_2", 0),
    "norm1.linear": ("img_mod_lin", 0),
    "norm1_context.linear": ("txt_mod_lin", 0),
}
_SINGLE = {
    "attn.to_q": ("linear1", 0),
    "attn.to_k": ("linear1", 1),
    "attn.to_v": ("linear1", 2),
    "proj_mlp": ("linear1", 3),
    "proj_out": ("linear2", 0),
    "norm.linear": ("modulation_lin", 0),
}
_KEY = re.compile(
    r"^transformer\.(?P<kind>transformer_blocks|single_transformer_blocks)\.(?P<block>\d+)\."
    r"(?P<module>.+)\.lora_(?P<part>[AB])\.weight$"
)


def describe(config: TrainingConfig, seed: int) -> dict[str, str]:
    """The run, as safetensors metadata (strings only)."""
    return {
        "fluxlora.base_model": config.base_model,
        "fluxlora.trigger_word": config.effective_trigger_word or "",
        "fluxlora.rank": str(config.lora_rank),
        "fluxlora.alpha": str(config.effective_lora_alpha),
        "fluxlora.steps": str(config.steps),
        "fluxlora.learning_rate": str(config.effective_learning_rate),
        "fluxlora.resolution": str(config.resolution),
        "fluxlora.seed": str(seed),
        "fluxlora.ema_decay": str(config.ema_decay or ""),
        "fluxlora.job_id": config.job_id or "",
        # names the kohya/sd-scripts tools and ComfyUI show
        "ss_base_model_version": "flux1",
        "ss_network_dim": str(config.lora_rank),
        "ss_network_alpha": str(config.effective_lora_alpha),
        "ss_output_name": "lora",
        "modelspec.trigger_phrase": config.effective_trigger_word or "",
    }


def diffusers_state_dict(peft_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {f"transformer.{key}": value.contiguous() for key, value in peft_state.items()}


def save_diffusers_lora(
    path: Path,
    peft_state: dict[str, torch.Tensor],
    config: TrainingConfig,
    seed: int,
    target_modules: list[str],
) -> Path:
    adapter = {
        "transformer.r": config.lora_rank,
        "transformer.lora_alpha": config.effective_lora_alpha,
        "transformer.target_modules": sorted(target_modules),
    }
    metadata = {
        "format": "pt",
        ADAPTER_METADATA_KEY: json.dumps(adapter, sort_keys=True),
        **describe(config, seed),
    }
    save_file(diffusers_state_dict(peft_state), str(path), metadata=metadata)
    return path


def to_kohya(
    state: dict[str, torch.Tensor],
    alpha: float,
    rank: int,
    single_widths: tuple[int, int] | None = None,
) -> dict[str, torch.Tensor]:
    """Convert diffusers-keyed LoRA weights to the fused kohya layout.

    `single_widths` are a single block's attention and MLP widths: its fused linear1 is
    [q; k; v; mlp], and untrained parts get zero rows so the positions line up.
    """
    grouped: dict[str, dict[int, dict[str, torch.Tensor]]] = {}
    for key, value in state.items():
        match = _KEY.match(key)
        if not match:
            raise ValueError(f"unexpected LoRA key {key}")
        single = match["kind"] == "single_transformer_blocks"
        table = _SINGLE if single else _DOUBLE
        if match["module"] not in table:
            raise ValueError(f"no kohya name for {key}")
        fused, position = table[match["module"]]
        prefix = "single_blocks" if single else "double_blocks"
        name = f"lora_unet_{prefix}_{match['block']}_{fused}"
        grouped.setdefault(name, {}).setdefault(position, {})[match["part"]] = value

    out: dict[str, torch.Tensor] = {}
    for name, parts in grouped.items():
        positions = sorted(parts)
        downs = [parts[p]["A"] for p in positions]
        ups = [parts[p]["B"] for p in positions]
        widths = _fused_widths(name, parts, single_widths)
        fused_rank = rank * len(positions)
        down = torch.cat(downs, dim=0)
        up = torch.zeros(sum(widths), fused_rank, dtype=ups[0].dtype)
        for slot, position in enumerate(positions):
            start = sum(widths[:position])
            rows = ups[slot].shape[0]
            up[start : start + rows, slot * rank : (slot + 1) * rank] = ups[slot]
        out[f"{name}.lora_down.weight"] = down.contiguous()
        out[f"{name}.lora_up.weight"] = up.contiguous()
        # scale = alpha / rank must survive the rank growing with each fused part
        out[f"{name}.alpha"] = torch.tensor(alpha * len(positions))
    return out


def _fused_widths(
    name: str, parts: dict[int, dict[str, torch.Tensor]], single_widths: tuple[int, int] | None
) -> list[int]:
    """Output width of each part of the fused projection, in order."""
    if name.endswith("_linear1"):
        if single_widths is None:
            raise ValueError(f"{name}: the widths of the fused projection are unknown")
        attention, mlp = single_widths
        return [attention, attention, attention, mlp]
    width = next(iter(parts.values()))["B"].shape[0]
    return [width, width, width] if name.endswith("_qkv") else [width]


def save_kohya_lora(
    path: Path,
    peft_state: dict[str, torch.Tensor],
    config: TrainingConfig,
    seed: int,
    single_widths: tuple[int, int],
) -> Path:
    kohya = to_kohya(
        diffusers_state_dict(peft_state),
        config.effective_lora_alpha,
        config.lora_rank,
        single_widths,
    )
    save_file(kohya, str(path), metadata={"format": "pt", **describe(config, seed)})
    return path


def lora_targets(transformer: torch.nn.Module) -> list[str]:
    """The names of the transformer's modules that carry a LoRA (the diffusers file lists them)."""
    return sorted(name for name, module in transformer.named_modules() if hasattr(module, "lora_A"))


def single_block_widths(transformer: torch.nn.Module) -> tuple[int, int]:
    """A single block's attention and MLP widths: kohya's fused linear1 concatenates them."""
    single = transformer.single_transformer_blocks[0]
    return single.attn.to_q.out_features, single.proj_mlp.out_features


def save_both_formats(
    folder: Path,
    peft_state: dict[str, torch.Tensor],
    config: TrainingConfig,
    seed: int,
    transformer: torch.nn.Module,
) -> list[Path]:
    """The LoRA in the diffusers format (the hosted API's first output) and in kohya's (what
    ComfyUI loads), in that order."""
    return [
        save_diffusers_lora(
            folder / LORA_FILE, peft_state, config, seed, lora_targets(transformer)
        ),
        save_kohya_lora(
            folder / KOHYA_LORA_FILE, peft_state, config, seed, single_block_widths(transformer)
        ),
    ]
