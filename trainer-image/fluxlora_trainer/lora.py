"""Which transformer layers get LoRA matrices, and adding them with peft."""

from peft import LoraConfig

# Module-name patterns of FluxTransformer2DModel, by the names users choose from (loraTargets).
TARGET_PATTERNS = {
    # q/k/v of every block, and the output projection of the double blocks
    "attention": r"(single_)?transformer_blocks\.\d+\.attn\.(to_q|to_k|to_v|to_out\.0)",
    # the text-stream (context) projections of the double blocks
    "context": r"transformer_blocks\.\d+\.attn\.(add_q_proj|add_k_proj|add_v_proj|to_add_out)",
    "feed-forward": r"transformer_blocks\.\d+\.(ff|ff_context)\.net\.(0\.proj|2)",
    "single-blocks": r"single_transformer_blocks\.\d+\.(proj_mlp|proj_out)",
    # the adaptive-norm projections that turn the timestep and pooled text into each block's
    # shifts, scales and gates
    "modulation": r"transformer_blocks\.\d+\.(norm1|norm1_context)\.linear"
    r"|single_transformer_blocks\.\d+\.norm\.linear",
}


def target_regex(targets: list[str]) -> str:
    """One full-match regex over module names (peft matches a string target as a regex)."""
    return "|".join(f"(?:{TARGET_PATTERNS[name]})" for name in targets)


def lora_config(rank: int, alpha: float, targets: list[str], init: str = "kaiming") -> LoraConfig:
    """`init`: kaiming is peft's default (A kaiming-uniform, B zero); gaussian draws A with
    standard deviation 1/rank."""
    return LoraConfig(
        r=rank,
        lora_alpha=alpha,
        init_lora_weights=True if init == "kaiming" else "gaussian",
        target_modules=target_regex(targets),
    )
