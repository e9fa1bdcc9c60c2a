"""FLUX.1-dev's transformer as released (black-forest-labs/FLUX.1-dev, transformer/config.json):
what the GPU benchmark builds at full size and the memory table is planned for, without the
weights (which cannot be downloaded here)."""

FLUX_DEV_TRANSFORMER = {
    "patch_size": 1,
    "in_channels": 64,
    "num_layers": 19,
    "num_single_layers": 38,
    "attention_head_dim": 128,
    "num_attention_heads": 24,
    "joint_attention_dim": 4096,
    "pooled_projection_dim": 768,
    "axes_dims_rope": [16, 56, 56],
    "guidance_embeds": True,
}
