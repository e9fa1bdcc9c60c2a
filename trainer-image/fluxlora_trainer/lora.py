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
}


def target_regex(targets: list[str]) -> str:
    """One full-match regex over module names (peft matches a string target as a regex)."""
    return "|".join(f"(?:{TARGET_PATTERNS[name]})" for name in targets)


def lora_config(rank: int, alpha: float, targets: list[str]) -> LoraConfig:
    return LoraConfig(
        r=rank, lora_alpha=alpha, init_lora_weights="gaussian", target_modules=target_regex(targets)
    )
