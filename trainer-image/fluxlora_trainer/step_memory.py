"""What a training step holds on its GPU, and the run's memory plan (memory_plan.py) made from
it before anything is loaded. What the step keeps for its backward pass is measured block by
block without using any memory: the transformer is built from its config on the meta device
(shapes, no weights), given the run's LoRA, and run forward once at the run's batch and largest
image; each tensor autograd saves is counted, then dropped, under the block that saved it.
Attention is counted as the GPU kernels (flash, memory-efficient) keep it: queries, keys,
values, output and one float per row, never the score matrix the meta device's reference
kernel would keep."""

from collections.abc import Iterator
from contextlib import contextmanager
from unittest import mock

import torch
import torch.utils.checkpoint

from fluxlora_api.contract import TrainingConfig
from fluxlora_trainer.cache import MAX_SEQUENCE_LENGTH
from fluxlora_trainer.errors import BadInput
from fluxlora_trainer.lora import lora_config
from fluxlora_trainer.memory_plan import Block, DoesNotFit, Footprint, Plan, image_tokens, plan
from fluxlora_trainer.quantize import QUANTIZED_BLOCKS

# FLUX.1-dev's 512 T5 tokens: a base model with a shorter window (cache.text_tokens) needs less.
TEXT_TOKENS = MAX_SEQUENCE_LENGTH
# Bytes per weight of the blocks' linear layers by base weights (bitsandbytes: int8 keeps a
# float scale per row, about nothing; nf4 packs two weights a byte, and a float32 scale per
# 64 weights), and of every other weight (bf16).
LINEAR_WEIGHT_BYTES = {"bf16": 2.0, "int8": 1.0, "nf4": 0.5 + 4 / 64}
OTHER_WEIGHT_BYTES = 2
# Bytes per LoRA parameter besides the optimizer's: its bf16 weight and gradient in the model,
# and the float32 master copy and its gradient that the optimizer steps.
LORA_PARAMETER_BYTES = 2 + 2 + 4 + 4
OPTIMIZER_STATE_BYTES = {"adamw": 8, "adamw8bit": 2, "prodigy": 16}
AVERAGE_BYTES = 4  # emaDecay's float32 average


def plan_run(config: TrainingConfig, device: torch.device, dtype: torch.dtype) -> Plan:
    """Which blocks to recompute on this device. On a GPU, from its free memory (BadInput,
    saying what fits, when nothing does); elsewhere memory is not planned: every block with
    gradientCheckpointing true, else none."""
    from diffusers import FluxTransformer2DModel

    transformer_config = FluxTransformer2DModel.load_config(
        config.base_model, subfolder="transformer"
    )
    if device.type != "cuda":
        count = transformer_config["num_layers"] + transformer_config["num_single_layers"]
        chosen = range(count) if config.gradient_checkpointing else ()
        return Plan(frozenset(chosen), count)
    step = footprint(config, transformer_config, dtype)
    try:
        return plan(step, torch.cuda.mem_get_info(device)[0], config.gradient_checkpointing)
    except DoesNotFit as error:
        raise BadInput(f"the run does not fit this GPU: {error}") from None


def footprint(config: TrainingConfig, transformer_config: dict, dtype: torch.dtype) -> Footprint:
    """What a step of this run holds, from the transformer's config alone (nothing loaded)."""
    transformer = meta_transformer(
        transformer_config, list(config.lora_targets), config.lora_rank,
        config.effective_lora_alpha,
    )  # fmt: skip
    tokens = image_tokens(config.resolution)
    blocks, outside = measure(transformer, config.batch_size, tokens, dtype)
    return Footprint(
        weights={
            precision: weight_bytes(transformer, precision) for precision in LINEAR_WEIGHT_BYTES
        },
        base_weights=config.base_weights,
        lora_state=lora_state_bytes(transformer, config),
        blocks=blocks,
        outside=outside,
        batch=config.batch_size,
        tokens=tokens + TEXT_TOKENS,
        resolution=config.resolution,
    )


def weight_bytes(transformer: torch.nn.Module, precision: str) -> int:
    """The frozen weights' bytes on the GPU with the blocks' linear layers at `precision`."""
    linear = {
        id(module.weight)
        for name in QUANTIZED_BLOCKS
        for module in getattr(transformer, name).modules()
        if type(module) is torch.nn.Linear
    }
    total = 0.0
    for parameter in transformer.parameters():
        if parameter.requires_grad:
            continue  # the LoRA's: lora_state_bytes
        per = LINEAR_WEIGHT_BYTES[precision] if id(parameter) in linear else OTHER_WEIGHT_BYTES
        total += parameter.numel() * per
    return int(total)


def lora_state_bytes(transformer: torch.nn.Module, config: TrainingConfig) -> int:
    count = sum(p.numel() for p in transformer.parameters() if p.requires_grad)
    per = LORA_PARAMETER_BYTES + OPTIMIZER_STATE_BYTES[config.optimizer]
    per += AVERAGE_BYTES if config.ema_decay is not None else 0
    return count * per


def blocks_of(transformer: torch.nn.Module) -> list[torch.nn.Module]:
    """The repeated blocks, double then single, in the order checkpointing numbers them."""
    return [block for name in QUANTIZED_BLOCKS for block in getattr(transformer, name)]


def recompute_in_backward(block: torch.nn.Module) -> None:
    """Checkpoint one block: while training, it keeps only its inputs and runs its forward pass
    again in the backward pass (diffusers' gradient checkpointing does this for every block
    at once). Its weights keep their names, so the saved LoRA is the same."""
    forward = block.forward

    def checkpointed(*args, **kwargs):
        if not torch.is_grad_enabled():
            return forward(*args, **kwargs)
        return torch.utils.checkpoint.checkpoint(forward, *args, use_reentrant=False, **kwargs)

    block.forward = checkpointed


def meta_transformer(transformer_config: dict, targets: list[str], rank: int, alpha: float):
    """The transformer as training sees it (frozen base, the run's LoRA), without weights."""
    from diffusers import FluxTransformer2DModel

    with torch.device("meta"):
        transformer = FluxTransformer2DModel.from_config(transformer_config)
    transformer.requires_grad_(False)
    transformer.add_adapter(lora_config(rank, alpha, targets))
    return transformer


def _cast(transformer: torch.nn.Module, dtype: torch.dtype) -> None:
    """Every weight in the step's precision, as training holds them (meta tensors: no copy)."""
    for parameter in transformer.parameters():
        parameter.data = parameter.data.to(dtype)


def measure(
    transformer: torch.nn.Module, batch: int, tokens: int, dtype: torch.dtype
) -> tuple[tuple[Block, ...], int]:
    """Bytes saved for backward by one forward pass of `transformer` (on the meta device) at
    `batch` images of `tokens` image tokens each: each block's, double blocks then single
    blocks, and those saved outside the blocks (embeddings, the final norm and projection)."""
    config = transformer.config
    blocks = blocks_of(transformer)
    index = {id(block): number for number, block in enumerate(blocks)}
    kept = [0] * len(blocks)
    inputs = [0] * len(blocks)
    current: list[int | None] = [None]
    parameters = {id(p) for p in transformer.parameters()}
    outside = [0]
    shared: dict[int, torch.Tensor] = {}  # inputs every block gets (rotary embedding, temb)

    def enter(module, args, kwargs):
        number = index[id(module)]
        current[0] = number
        for value in _tensors([*args, *kwargs.values()]):
            if id(value) not in shared:
                inputs[number] += _nbytes(value)
            shared[id(value)] = value  # kept alive, so that its id stays its own

    def leave(module, args, kwargs, output):
        current[0] = None

    def pack(tensor: torch.Tensor) -> None:
        if id(tensor) in parameters or id(tensor._base) in parameters:
            return None  # a weight (or a view of one): it is in memory anyway
        if current[0] is None:
            outside[0] += _nbytes(tensor)
        else:
            kept[current[0]] += _nbytes(tensor)
        return None

    def unpack(_) -> torch.Tensor:
        raise RuntimeError("the activation probe never runs backward")

    hooks = [b.register_forward_pre_hook(enter, with_kwargs=True) for b in blocks]
    hooks += [b.register_forward_hook(leave, with_kwargs=True) for b in blocks]
    _cast(transformer, dtype)
    try:
        with _flash_like_attention(), torch.autograd.graph.saved_tensors_hooks(pack, unpack):
            _forward(transformer, config, batch, tokens, dtype)
    finally:
        for hook in hooks:
            hook.remove()
    return tuple(Block(k, i) for k, i in zip(kept, inputs, strict=True)), outside[0]


def _forward(transformer, config, batch: int, tokens: int, dtype: torch.dtype) -> None:
    def zeros(*shape, kind=dtype):
        return torch.zeros(*shape, device="meta", dtype=kind)

    transformer(
        hidden_states=zeros(batch, tokens, config.in_channels),
        encoder_hidden_states=zeros(batch, TEXT_TOKENS, config.joint_attention_dim),
        pooled_projections=zeros(batch, config.pooled_projection_dim),
        timestep=zeros(batch),
        img_ids=zeros(tokens, 3, kind=torch.float32),
        txt_ids=zeros(TEXT_TOKENS, 3, kind=torch.float32),
        guidance=zeros(batch) if config.guidance_embeds else None,
        return_dict=False,
    )


class _FlashLikeAttention(torch.autograd.Function):
    """Saves what flash attention saves: q, k, v, the output and a log-sum-exp per row."""

    @staticmethod
    def forward(ctx, query, key, value):
        out = torch.empty_like(query)
        rows = query.new_empty(query.shape[:-1], dtype=torch.float32)
        ctx.save_for_backward(query, key, value, out, rows)
        return out

    @staticmethod
    def backward(ctx, grad):
        raise RuntimeError("the activation probe never runs backward")


@contextmanager
def _flash_like_attention() -> Iterator[None]:
    def attention(query, key, value, *args, **kwargs):
        return _FlashLikeAttention.apply(query, key, value)

    with mock.patch.object(torch.nn.functional, "scaled_dot_product_attention", attention):
        yield


def _tensors(values) -> Iterator[torch.Tensor]:
    for value in values:
        if isinstance(value, torch.Tensor):
            yield value
        elif isinstance(value, (tuple, list)):
            yield from _tensors(value)


def _nbytes(tensor: torch.Tensor) -> int:
    return tensor.numel() * tensor.element_size()
