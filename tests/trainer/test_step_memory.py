"""What a step keeps for its backward pass, measured on the meta device before loading: the same
bytes a real forward pass saves; recomputing a block keeps its gradients and drops what it
saves; the plan for FLUX.1-dev itself refuses what cannot fit a GPU and recomputes nothing
where everything fits."""

import json

import pytest
import torch
from diffusers import FluxTransformer2DModel

from fluxlora_api.contract import TrainingConfig
from fluxlora_trainer import step_memory
from fluxlora_trainer.architecture import FLUX_DEV_TRANSFORMER
from fluxlora_trainer.errors import BadInput
from fluxlora_trainer.lora import lora_config
from fluxlora_trainer.memory_plan import GIB
from fluxlora_trainer.tiny_model import TINY_TRANSFORMER

TARGETS = ["attention", "context", "feed-forward", "single-blocks"]
TOKENS = 64


def real_transformer() -> torch.nn.Module:
    torch.manual_seed(0)
    transformer = FluxTransformer2DModel.from_config(TINY_TRANSFORMER)
    transformer.requires_grad_(False)
    transformer.add_adapter(lora_config(4, 4.0, TARGETS))
    return transformer


def inputs(batch: int) -> dict:
    config = FluxTransformer2DModel.from_config(TINY_TRANSFORMER).config
    generator = torch.Generator().manual_seed(1)
    return {
        "hidden_states": torch.randn(batch, TOKENS, config.in_channels, generator=generator),
        "encoder_hidden_states": torch.randn(
            batch, step_memory.TEXT_TOKENS, config.joint_attention_dim, generator=generator
        ),
        "pooled_projections": torch.randn(batch, config.pooled_projection_dim, generator=generator),
        "timestep": torch.full((batch,), 0.5),
        "img_ids": torch.zeros(TOKENS, 3),
        "txt_ids": torch.zeros(step_memory.TEXT_TOKENS, 3),
        "guidance": torch.ones(batch),
        "return_dict": False,
    }


def saved_by_block(transformer: torch.nn.Module, batch: int) -> list[int]:
    """Bytes each block saves for backward in a real forward pass on the CPU."""
    blocks = step_memory.blocks_of(transformer)
    number = {id(block): index for index, block in enumerate(blocks)}
    saved, current = [0] * len(blocks), [None]
    weights = {id(p) for p in transformer.parameters()}
    hooks = [b.register_forward_pre_hook(lambda m, a: current.__setitem__(0, number[id(m)]))
             for b in blocks]  # fmt: skip
    hooks += [b.register_forward_hook(lambda *_: current.__setitem__(0, None)) for b in blocks]

    def pack(tensor):
        if current[0] is not None and id(tensor) not in weights and id(tensor._base) not in weights:
            saved[current[0]] += tensor.numel() * tensor.element_size()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        transformer(**inputs(batch))
    for hook in hooks:
        hook.remove()
    return saved


def test_the_probe_counts_what_a_real_forward_pass_saves_block_by_block():
    meta = step_memory.meta_transformer(TINY_TRANSFORMER, TARGETS, 4, 4.0)
    blocks, outside = step_memory.measure(meta, 2, TOKENS, torch.float32)
    assert [block.kept for block in blocks] == saved_by_block(real_transformer(), 2)
    assert all(0 < block.inputs < block.kept for block in blocks)
    assert outside > 0


def test_what_a_block_keeps_grows_with_the_batch_at_most_in_proportion():
    # (Footprint.scaled, which says what fits, scales in proportion: the batch-free part, the
    # rotary embedding, is large only in the tiny model.)
    meta = step_memory.meta_transformer(TINY_TRANSFORMER, TARGETS, 4, 4.0)
    one, _ = step_memory.measure(meta, 1, TOKENS, torch.float32)
    three, _ = step_memory.measure(meta, 3, TOKENS, torch.float32)
    for small, large in zip(one, three, strict=True):
        assert 2.5 * small.kept < large.kept <= 3 * small.kept


def test_a_recomputed_block_gives_the_same_gradients_and_keeps_only_its_inputs():
    plain, recomputed = real_transformer(), real_transformer()
    step_memory.recompute_in_backward(step_memory.blocks_of(recomputed)[0])
    for transformer in (plain, recomputed):
        transformer(**inputs(2))[0].square().mean().backward()
    pairs = zip(plain.named_parameters(), recomputed.named_parameters(), strict=True)
    compared = 0
    for (name, a), (other, b) in pairs:
        assert name == other  # the LoRA keeps its names (and so its saved files)
        if a.requires_grad:
            torch.testing.assert_close(a.grad, b.grad)
            compared += 1
    assert compared > 0
    full, checkpointed = saved_by_block(plain, 2), saved_by_block(recomputed, 2)
    assert checkpointed[0] < full[0] / 4
    assert checkpointed[1:] == full[1:]


def flux_dev(tmp_path) -> str:
    """A base model folder with FLUX.1-dev's transformer config and no weights."""
    (tmp_path / "transformer").mkdir()
    (tmp_path / "transformer" / "config.json").write_text(json.dumps(FLUX_DEV_TRANSFORMER))
    return str(tmp_path)


def config(base_model: str, **fields) -> TrainingConfig:
    return TrainingConfig.model_validate({
        "data": "s3://bucket/data.zip", "output": "s3://bucket/out", "baseModel": base_model,
        "resolution": 1024, "loraRank": 16, **fields,
    })  # fmt: skip


def on_gpu_with(monkeypatch, free_gib: float) -> torch.device:
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (int(free_gib * GIB), 0))
    return torch.device("cuda", 0)


def test_flux_dev_in_bf16_is_refused_on_a_24_gb_gpu_naming_what_fits(tmp_path, monkeypatch):
    device = on_gpu_with(monkeypatch, 23.5)
    with pytest.raises(BadInput) as refused:
        step_memory.plan_run(config(flux_dev(tmp_path)), device, torch.bfloat16)
    message = str(refused.value)
    assert "batchSize 1 at resolution 1024 with baseWeights bf16" in message
    assert "what fits: baseWeights " in message


def test_flux_dev_recomputes_nothing_where_it_fits_and_some_blocks_where_it_must(
    tmp_path, monkeypatch
):
    base = flux_dev(tmp_path)
    roomy = step_memory.plan_run(config(base), on_gpu_with(monkeypatch, 139), torch.bfloat16)
    assert roomy.checkpointed == frozenset()
    assert roomy.blocks == 57
    tight = step_memory.plan_run(config(base), on_gpu_with(monkeypatch, 45), torch.bfloat16)
    assert 0 < len(tight.checkpointed) < 57
    assert tight.peak <= tight.budget < roomy.peak
    asked = step_memory.plan_run(
        config(base, gradientCheckpointing=True), on_gpu_with(monkeypatch, 139), torch.bfloat16
    )
    assert len(asked.checkpointed) == 57


def test_on_a_cpu_memory_is_not_planned_and_the_users_choice_stands(tiny_model):
    cpu = torch.device("cpu")
    unset = step_memory.plan_run(config(str(tiny_model)), cpu, torch.float32)
    assert unset.checkpointed == frozenset()
    assert "recomputing 0 of 2 blocks" in unset.describe()
    every = step_memory.plan_run(config(str(tiny_model), gradientCheckpointing=True), cpu,
                                 torch.float32)  # fmt: skip
    assert every.checkpointed == {0, 1}
