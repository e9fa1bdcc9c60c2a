"""What fits on which GPU: the trainer's memory plan (step_memory.py, memory_plan.py) for
FLUX.1-dev at rank 16 with the default LoRA layers, batch 1, adamw, by resolution and base
weights, on common GPUs. An estimate made on the CPU from the architecture (no weights, no GPU);
benchmarks/trainer_gpu.py measures the real peak beside the plan's on a GPU.

    python benchmarks/memory_table.py       (without the project installed:
                                             PYTHONPATH=operator:trainer-image)
"""

import argparse

import torch

from fluxlora_api.contract import TrainingConfig
from fluxlora_trainer import memory_plan
from fluxlora_trainer.architecture import FLUX_DEV_TRANSFORMER
from fluxlora_trainer.step_memory import footprint

# Total memory as the driver reports it (MiB), less what a CUDA context takes (about 500 MiB).
GPUS = {
    "24 GB (RTX 4090, L4)": 24_564,
    "40 GB (A100 40GB)": 40_960,
    "48 GB (L40S, A6000)": 46_068,
    "80 GB (A100 80GB, H100)": 81_559,
    "141 GB (H200)": 143_771,
}
CONTEXT_MIB = 500
MIB = 1 << 20


def cell(step: memory_plan.Footprint, free: int) -> str:
    try:
        chosen = memory_plan.plan(step, free, None)
    except memory_plan.DoesNotFit:
        return "does not fit"
    recomputed = len(chosen.checkpointed)
    how = "no recompute" if recomputed == 0 else f"recompute {recomputed}/{chosen.blocks}"
    return f"{how}, ≈{chosen.peak / memory_plan.GIB:.0f} GiB"


def rows(resolutions: list[int], weights: list[str]) -> list[list[str]]:
    found = []
    for resolution in resolutions:
        for precision in weights:
            config = TrainingConfig.model_validate({
                "data": "https://example.com/a.zip", "output": "s3://a/b",
                "resolution": resolution, "baseWeights": precision, "loraRank": 16,
            })  # fmt: skip
            step = footprint(config, FLUX_DEV_TRANSFORMER, torch.bfloat16)
            extremes = [
                memory_plan.peak(step, frozenset()),
                memory_plan.peak(step, step.every_block),
            ]
            found.append([
                f"{resolution}²", precision,
                *(f"{value / memory_plan.GIB:.1f}" for value in extremes),
                *(cell(step, (total - CONTEXT_MIB) * MIB) for total in GPUS.values()),
            ])  # fmt: skip
    return found


def table(found: list[list[str]]) -> str:
    header = ["resolution", "base weights", "GiB, no recompute", "GiB, all recomputed",
              *GPUS]  # fmt: skip
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in found]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolutions", type=int, nargs="+", default=[512, 768, 1024])
    parser.add_argument("--weights", nargs="+", default=["bf16", "int8", "nf4"])
    args = parser.parse_args(argv)
    print(table(rows(args.resolutions, args.weights)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
