"""Whether a run fits its GPU, and with how little recomputation: from what the step keeps in
memory (the weights, the LoRA's training state, each block's activations: step_memory.py) and
the GPU's free memory, the fewest blocks to checkpoint so the peak fits: none when everything
fits (fastest), then block by block, the ones that save the most first; when even recomputing
every block does not fit, the run fails before loading anything, saying what would fit.
Pure: no torch."""

import math
from dataclasses import dataclass, replace

GIB = 1 << 30
# What the CUDA context, cuBLAS workspaces and the allocator's fragmentation take beyond the
# tensors themselves: a share of the GPU and a floor.
HEADROOM_SHARE = 0.06
HEADROOM_BYTES = GIB
# The model is trained on square-ish buckets of these sides (multiples of 64, the API's rule).
RESOLUTION_STEP = 64
MIN_RESOLUTION = 256
LATENT_PATCH = 16  # one image token per 16x16 pixels (the VAE's 8x, packed 2x2)


def image_tokens(resolution: int) -> int:
    """Image tokens of the largest training image at `resolution` (its square bucket)."""
    return math.ceil(resolution / LATENT_PATCH) ** 2


@dataclass(frozen=True)
class Block:
    kept: int  # bytes it saves for backward when it runs normally
    inputs: int  # bytes it keeps when checkpointed


@dataclass(frozen=True)
class Footprint:
    """What one training step holds on a GPU, measured at `batch` images of `tokens` tokens
    (image and text)."""

    weights: dict[str, int]  # the transformer's weights, by base-weights precision
    base_weights: str
    lora_state: int  # LoRA weights, gradients, master copies, optimizer state, average
    blocks: tuple[Block, ...]
    outside: int  # activations saved outside the blocks
    batch: int
    tokens: int
    resolution: int

    @property
    def every_block(self) -> frozenset[int]:
        return frozenset(range(len(self.blocks)))

    def scaled(self, batch: int, resolution: int, tokens: int) -> "Footprint":
        """The same run at another batch and resolution: activations grow with batch x tokens."""
        factor = (batch * tokens) / (self.batch * self.tokens)
        blocks = tuple(Block(int(b.kept * factor), int(b.inputs * factor)) for b in self.blocks)
        return replace(self, blocks=blocks, outside=int(self.outside * factor), batch=batch,
                       tokens=tokens, resolution=resolution)  # fmt: skip


@dataclass(frozen=True)
class Plan:
    checkpointed: frozenset[int]  # indices of the blocks recomputed in the backward pass
    blocks: int  # how many blocks the transformer has
    peak: int | None = None  # estimated bytes at the step's peak; None: not planned (a CPU)
    budget: int | None = None  # bytes the step may use

    def describe(self) -> str:
        recomputed = f"recomputing {len(self.checkpointed)} of {self.blocks} blocks"
        if self.peak is None:
            return f"{recomputed} (memory is planned on GPUs)"
        limit = f" of {self.budget / GIB:.1f} GiB" if self.budget is not None else ""
        return f"{recomputed}: ≈{self.peak / GIB:.1f} GiB{limit} at the peak"


class DoesNotFit(Exception):
    """Even recomputing every block, the step needs more memory than the GPU has free."""


def budget(free_bytes: int) -> int:
    """What a step may use of a GPU with `free_bytes` free."""
    return int(free_bytes - max(HEADROOM_BYTES, free_bytes * HEADROOM_SHARE))


def peak(footprint: Footprint, checkpointed: frozenset[int]) -> int:
    """Weights, LoRA state, every activation kept until the backward pass, and the largest
    block's activations once more: the one being recomputed, or the one whose gradients the
    backward pass is computing."""
    blocks = footprint.blocks
    kept = sum(b.inputs if i in checkpointed else b.kept for i, b in enumerate(blocks))
    working = max(b.kept for b in blocks)
    weights = footprint.weights[footprint.base_weights]
    return weights + footprint.lora_state + footprint.outside + kept + working


def plan(footprint: Footprint, free_bytes: int | None, checkpointing: bool | None) -> Plan:
    """Which blocks to recompute. `checkpointing` True: every block; False: none; None: the
    fewest that fit. DoesNotFit, saying what fits, when even all of them do not."""
    every = footprint.every_block
    limit = None if free_bytes is None else budget(free_bytes)
    if limit is not None and peak(footprint, every) > limit:
        raise DoesNotFit(_what_fits(footprint, limit))
    if checkpointing is not None or limit is None:
        chosen = every if checkpointing else frozenset()
        return Plan(chosen, len(every), peak(footprint, chosen), limit)
    # The blocks that save the most when recomputed go first.
    order = sorted(every, key=lambda i: footprint.blocks[i].inputs - footprint.blocks[i].kept)
    chosen = frozenset()
    for index in [None, *order]:
        if index is not None:
            chosen = chosen | {index}
        if peak(footprint, chosen) <= limit:
            break
    return Plan(chosen, len(every), peak(footprint, chosen), limit)


def _fits(footprint: Footprint, limit: int) -> bool:
    return peak(footprint, footprint.every_block) <= limit


def _what_fits(footprint: Footprint, limit: int) -> str:
    every = footprint.every_block
    weights = footprint.weights[footprint.base_weights]
    activations = peak(footprint, every) - weights - footprint.lora_state
    need = (
        f"batchSize {footprint.batch} at resolution {footprint.resolution} with "
        f"baseWeights {footprint.base_weights} needs ≈{peak(footprint, every) / GIB:.1f} GiB "
        f"even recomputing every block (weights {weights / GIB:.1f}, LoRA training state "
        f"{footprint.lora_state / GIB:.1f}, activations {activations / GIB:.1f}); the GPU "
        f"leaves {limit / GIB:.1f} GiB to the step"
    )
    options = []
    text = footprint.tokens - image_tokens(footprint.resolution)
    for batch in range(footprint.batch - 1, 0, -1):
        smaller = footprint.scaled(batch, footprint.resolution, footprint.tokens)
        if _fits(smaller, limit):
            options.append(f"batchSize {batch}")
            break
    for resolution in range(footprint.resolution - RESOLUTION_STEP, MIN_RESOLUTION - 1,
                            -RESOLUTION_STEP):  # fmt: skip
        tokens = image_tokens(resolution) + text
        if _fits(footprint.scaled(footprint.batch, resolution, tokens), limit):
            options.append(f"resolution {resolution}")
            break
    for precision in ("int8", "nf4"):
        lighter = replace(footprint, base_weights=precision)
        if footprint.weights[precision] < weights and _fits(lighter, limit):
            options.append(f"baseWeights {precision}")
            break
    fits = "; what fits: " + " or ".join(options) if options else "; nothing smaller fits"
    return need + fits
