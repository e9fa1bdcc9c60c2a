"""The memory plan: the fewest blocks recomputed that fit the GPU, the ones that save the most
first; the user's choice kept; a run that cannot fit refused, saying what would."""

import pytest

from fluxlora_trainer.memory_plan import (
    GIB,
    Block,
    DoesNotFit,
    Footprint,
    budget,
    image_tokens,
    peak,
    plan,
)


def step(batch: int = 1, resolution: int = 1024, base_weights: str = "bf16") -> Footprint:
    """Four blocks; the last two keep twice as much as the first two (single vs double)."""
    return Footprint(
        weights={"bf16": 20 * GIB, "int8": 10 * GIB, "nf4": 5 * GIB},
        base_weights=base_weights,
        lora_state=1 * GIB,
        blocks=tuple(Block(kept * GIB, GIB // 10) for kept in (2, 2, 4, 4)),
        outside=GIB // 10,
        batch=batch,
        tokens=image_tokens(resolution) + 512,
        resolution=resolution,
    )


def test_everything_fits_so_nothing_is_recomputed():
    # 20 + 1 + 0.1 + 12 kept + 4 working = 37.1 GiB
    chosen = plan(step(), 60 * GIB, None)
    assert chosen.checkpointed == frozenset()
    assert chosen.peak == pytest.approx(37.1 * GIB, rel=1e-3)
    assert chosen.peak <= chosen.budget


def test_the_fewest_blocks_that_fit_are_recomputed_the_biggest_savers_first():
    limit = 34 * GIB  # recomputing one of the 4-GiB blocks (33.2 GiB) is enough
    chosen = plan(step(), limit + max(GIB, int(limit * 0.07)), None)
    assert len(chosen.checkpointed) == 1
    assert chosen.checkpointed <= {2, 3}
    assert peak(step(), chosen.checkpointed) <= chosen.budget < peak(step(), frozenset())


def test_the_users_choice_is_kept_when_it_fits():
    assert plan(step(), 200 * GIB, True).checkpointed == {0, 1, 2, 3}
    assert plan(step(), 30 * GIB, False).checkpointed == frozenset()  # true by itself fits
    assert plan(step(), None, None).checkpointed == frozenset()  # not planned (a CPU)
    assert plan(step(), None, True).checkpointed == {0, 1, 2, 3}


def test_a_run_that_cannot_fit_says_what_would():
    # Every block recomputed: 20 + 1 + 0.1 + 0.4 + 4 = 25.5 GiB; a 24-GB card leaves ~22.
    with pytest.raises(DoesNotFit) as refused:
        plan(step(batch=2), 24 * GIB, None)
    message = str(refused.value)
    assert "batchSize 2 at resolution 1024 with baseWeights bf16" in message
    assert "weights 20.0" in message
    assert "baseWeights int8" in message  # 10 GiB of weights fit


def test_a_smaller_batch_or_image_is_offered_when_the_weights_fit():
    # nf4 (5 GiB): batch 4 at 1024 keeps 4x the activations (24 GiB, every block recomputed);
    # batch 3 (19.5 GiB) or a smaller image fits.
    one = step(base_weights="nf4")
    heavy = one.scaled(4, 1024, one.tokens)
    with pytest.raises(DoesNotFit) as refused:
        plan(heavy, 24 * GIB, None)
    message = str(refused.value)
    assert "what fits: batchSize 3 or resolution " in message


def test_the_headroom_grows_with_the_gpu():
    assert budget(8 * GIB) == 7 * GIB  # the 1-GiB floor
    assert budget(140 * GIB) == pytest.approx(140 * GIB * 0.94)
