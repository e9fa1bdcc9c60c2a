"""The trainer's step at full size: FLUX.1-dev's transformer (its real config, random weights
made on the device), text embeddings and latents of the real shapes, through our own training
step (LoRATrainer.train_step), and beside it, in the same run, the step as diffusers'
train_dreambooth_lora_flux.py takes it with its defaults (attention-only LoRA, autocast over
bf16 weights, full gradient checkpointing, a loss read every step), so the ratio holds on any GPU.

    python benchmarks/trainer_gpu.py                       # every case, on the GPU
    (without the project installed: PYTHONPATH=operator:trainer-image)
    python benchmarks/trainer_gpu.py --resolutions 1024 --weights bf16 nf4
    python benchmarks/trainer_gpu.py --compile             # and bf16 with regional compilation
    python benchmarks/trainer_gpu.py --attention flash cudnn   # and bf16 with a kernel forced
    python benchmarks/trainer_gpu.py --tiny                # the tiny model on the CPU (the tests)

For each case: seconds per step, peak GPU memory beside the peak the trainer's memory plan
expects (step_memory.py: it decides how many blocks to recompute), and model-FLOPs
utilisation against the GPU's dense bf16 peak (--peak-tflops; 989 for an H100/H200 SXM).
FLOPs per step come from the architecture (model_flops): forward, plus backward through the
frozen weights (their inputs' gradients only) and attention (2.5x its forward), plus a second
forward with full checkpointing.
Prints a Markdown table; --json writes the rows too.
"""

import argparse
import contextlib
import gc
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from fluxlora_api.contract import TrainingConfig
from fluxlora_trainer import flow_matching as fm
from fluxlora_trainer import memory_plan
from fluxlora_trainer.architecture import FLUX_DEV_TRANSFORMER
from fluxlora_trainer.buckets import Bucket
from fluxlora_trainer.cache import MAX_SEQUENCE_LENGTH, CachedSample, TextEmbedding, TrainingData
from fluxlora_trainer.quantize import quantize_transformer
from fluxlora_trainer.step_memory import footprint
from fluxlora_trainer.tiny_model import TINY_TRANSFORMER
from fluxlora_trainer.train_loop import LoRATrainer

RANK = 16
REFERENCE_TARGETS = ["attn.to_k", "attn.to_q", "attn.to_v", "attn.to_out.0"]  # its default
MLP_RATIO = 4


@dataclass
class Case:
    step: str  # "ours" or "reference"
    resolution: int
    weights: str = "bf16"
    checkpointing: bool = True
    targets: str = "default"  # ours: the spec's default, or "attention" (the reference's layers)
    compiled: bool = False  # ours: the repeated blocks compiled (diffusers' regional compile)
    attention: str = "default"  # ours: an SDPA kernel forced (flash, cudnn) or torch's choice


@dataclass
class Row:
    case: Case
    seconds_per_step: float
    peak_gib: float
    tflop_per_step: float
    mfu: float
    planned_gib: float | None = None  # the memory plan's estimate of the peak (ours only)


def model_flops(config: dict, resolution: int, batch: int, recompute: bool) -> float:
    """FLOPs of one training step of the base model (LoRA's own are under 1%)."""
    hidden = config["num_attention_heads"] * config["attention_head_dim"]
    image = (resolution // 16) ** 2  # 8x VAE, then 2x2 patches
    text = MAX_SEQUENCE_LENGTH
    tokens = image + text
    # Per token, one stream of a double block: q, k, v, out, and the MLP; a single block: q, k,
    # v, its MLP input and the output projection over both.
    double_stream = 4 * hidden * hidden + 2 * MLP_RATIO * hidden * hidden
    single = 3 * hidden * hidden + MLP_RATIO * hidden * hidden + (1 + MLP_RATIO) * hidden * hidden
    linear = 2 * (
        config["num_layers"] * double_stream * (image + text)
        + config["num_single_layers"] * single * tokens
    )
    blocks = config["num_layers"] + config["num_single_layers"]
    attention = 4 * tokens * tokens * hidden * blocks
    forward = linear + attention
    backward = linear + 2.5 * attention
    return batch * (forward + backward + (forward if recompute else 0))


def random_transformer(config: dict, device: torch.device, dtype: torch.dtype):
    """The architecture with random weights, made directly on `device` in `dtype`."""
    from diffusers import FluxTransformer2DModel

    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device("meta"):
            transformer = FluxTransformer2DModel(**config)
    finally:
        torch.set_default_dtype(previous)
    transformer.to_empty(device=device)
    generator = torch.Generator(device=device).manual_seed(0)
    with torch.no_grad():
        for name, tensor in [*transformer.named_parameters(), *transformer.named_buffers()]:
            if name.endswith("bias"):
                tensor.zero_()
            elif tensor.dim() < 2:  # norm scales
                tensor.fill_(1.0)
            else:
                tensor.normal_(0.0, 0.02, generator=generator)
    return transformer


def training_data(config: dict, resolution: int, device: torch.device) -> TrainingData:
    """Four cached samples of one bucket and their captions, in the real shapes."""
    channels = config["in_channels"] // 4
    side = resolution // 8
    bucket = Bucket(resolution, resolution)
    samples = [
        CachedSample(torch.randn(channels, side, side), f"photo {i}", bucket) for i in range(4)
    ]
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    captions = {
        caption: TextEmbedding(
            torch.randn(MAX_SEQUENCE_LENGTH, config["joint_attention_dim"], dtype=dtype),
            torch.randn(config["pooled_projection_dim"], dtype=dtype),
        )
        for caption in ["", *(s.caption for s in samples)]
    }
    return TrainingData(samples, captions)


def our_config(case: Case) -> TrainingConfig:
    targets = ["attention"] if case.targets == "attention" else None
    return TrainingConfig.model_validate(
        {
            "data": "https://example.com/a.zip",
            "output": "/tmp/unused",
            "resolution": case.resolution,
            "loraRank": RANK,
            "baseWeights": case.weights,
            "gradientCheckpointing": case.checkpointing,
            "seed": 0,
            **({"loraTargets": targets} if targets else {}),
        }
    )


def our_step(case: Case, transformer, data, device, dtype):
    config = our_config(case)
    if case.weights != "bf16":
        quantize_transformer(transformer, case.weights, device, dtype)
    trainer = LoRATrainer(transformer, data, config, 0, device, dtype)
    if case.compiled:  # after the LoRA layers are in: they are compiled with their block
        transformer.compile_repeated_blocks()
    return trainer.train_step


def reference_step(case: Case, transformer, data, device, dtype):
    """One step as train_dreambooth_lora_flux.py takes it, with its defaults."""
    from peft import LoraConfig

    transformer.requires_grad_(False)
    transformer.add_adapter(
        LoraConfig(r=RANK, lora_alpha=RANK, init_lora_weights="gaussian",
                   target_modules=REFERENCE_TARGETS)
    )  # fmt: skip
    parameters = [p for p in transformer.parameters() if p.requires_grad]
    for parameter in parameters:  # cast_training_params(..., dtype=torch.float32)
        parameter.data = parameter.data.float()
    transformer.enable_gradient_checkpointing()
    transformer.train()
    optimizer = torch.optim.AdamW(parameters, lr=1e-4, weight_decay=1e-4)
    sample = data.samples[0]
    latents = sample.latents.unsqueeze(0).to(device, dtype)
    embedding = data.captions[sample.caption]
    prompt = embedding.prompt.unsqueeze(0).to(device, dtype)
    pooled = embedding.pooled.unsqueeze(0).to(device, dtype)
    _, _, height, width = latents.shape
    image_ids = fm.image_ids(height, width, device, dtype)
    text_ids = torch.zeros(prompt.shape[1], 3, device=device, dtype=dtype)

    def step() -> torch.Tensor:
        noise = torch.randn_like(latents)
        sigmas = torch.sigmoid(torch.randn(1, device=device)).view(-1, 1, 1, 1)
        noisy = (1.0 - sigmas) * latents + sigmas * noise
        with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
            prediction = transformer(
                hidden_states=fm.pack(noisy),
                timestep=sigmas.flatten(),
                guidance=torch.ones(1, device=device, dtype=dtype),
                pooled_projections=pooled,
                encoder_hidden_states=prompt,
                txt_ids=text_ids,
                img_ids=image_ids,
                return_dict=False,
            )[0]
        target = noise - latents
        difference = fm.unpack(prediction, height, width).float() - target.float()
        loss = (difference**2).reshape(1, -1).mean(1).mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, 1.0)
        optimizer.step()
        optimizer.zero_grad()
        loss.detach().item()  # its progress bar reads the loss every step
        return loss

    return step


def measure(case: Case, config: dict, device: torch.device, warmup: int, steps: int) -> Row:
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    transformer = random_transformer(config, device, dtype)
    data = training_data(config, case.resolution, device)
    build = our_step if case.step == "ours" else reference_step
    step = build(case, transformer, data, device, dtype)
    with attention_kernel(case.attention):
        for _ in range(warmup):
            step()
        synchronize(device)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        started = time.perf_counter()
        for _ in range(steps):
            step()
        synchronize(device)
    seconds = (time.perf_counter() - started) / steps
    peak = torch.cuda.max_memory_allocated(device) / 1024**3 if device.type == "cuda" else 0.0
    recompute = case.checkpointing or case.step == "reference"
    flops = model_flops(config, case.resolution, 1, recompute)
    del step, transformer, data
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return Row(case, seconds, peak, flops / 1e12, 0.0, planned_gib(case, config, dtype))


def planned_gib(case: Case, config: dict, dtype: torch.dtype) -> float | None:
    """What the trainer's memory plan (step_memory.py) expects this case's peak to be."""
    if case.step != "ours":
        return None
    step = footprint(our_config(case), config, dtype)
    recomputed = step.every_block if case.checkpointing else frozenset()
    return memory_plan.peak(step, recomputed) / memory_plan.GIB


def attention_kernel(name: str):
    """torch's own choice of attention kernel, or one forced (an error where it cannot run)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    if name == "default":
        return contextlib.nullcontext()
    return sdpa_kernel([{"flash": SDPBackend.FLASH_ATTENTION,
                         "cudnn": SDPBackend.CUDNN_ATTENTION}[name]])  # fmt: skip


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def cases(args: argparse.Namespace) -> list[Case]:
    found = []
    for resolution in args.resolutions:
        found.append(Case("reference", resolution))
        for weights in args.weights:
            for checkpointing in args.checkpointing:
                found.append(Case("ours", resolution, weights, checkpointing == "full"))
        found.append(Case("ours", resolution, "bf16", True, "attention"))
        for kernel in args.attention:
            found.append(Case("ours", resolution, "bf16", False, attention=kernel))
        if args.compile:
            for checkpointing in args.checkpointing:
                found.append(Case("ours", resolution, "bf16", checkpointing == "full",
                                  compiled=True))  # fmt: skip
    return found


def table(rows: list[Row], device: str) -> str:
    lines = [
        f"Device: {device}",
        "",
        "| step | resolution | weights | checkpointing | LoRA layers | s/step | peak GiB | "
        "planned GiB | TFLOP/step | MFU |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        case = row.case
        layers = "attention (q/k/v/out)" if case.step == "reference" else case.targets
        layers += ", compiled" if case.compiled else ""
        layers += f", {case.attention} attention" if case.attention != "default" else ""
        checkpointing = "full" if case.checkpointing or case.step == "reference" else "off"
        planned = "" if row.planned_gib is None else f"{row.planned_gib:.1f}"
        lines.append(
            f"| {case.step} | {case.resolution}² | {case.weights} | {checkpointing} | {layers} | "
            f"{row.seconds_per_step:.3f} | {row.peak_gib:.1f} | {planned} | "
            f"{row.tflop_per_step:.1f} | "
            f"{row.mfu:.0%} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="the tiny model, on the CPU")
    parser.add_argument("--resolutions", type=int, nargs="+", default=[512, 1024])
    parser.add_argument("--weights", nargs="+", default=["bf16", "int8", "nf4"])
    parser.add_argument("--checkpointing", nargs="+", default=["off", "full"])
    parser.add_argument(
        "--compile",
        action="store_true",
        help="also bf16 with the repeated blocks compiled (the warmup compiles)",
    )
    parser.add_argument(
        "--attention",
        nargs="*",
        default=[],
        choices=["flash", "cudnn"],
        help="also bf16 without recompute with this SDPA kernel forced",
    )
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--peak-tflops", type=float, default=989.0)
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args(argv)
    if args.tiny:
        config, device = TINY_TRANSFORMER, torch.device("cpu")
        args.resolutions, args.warmup, args.steps = [256], 1, 2
    else:
        if not torch.cuda.is_available():
            parser.error("no GPU here: run with --tiny, or on a GPU machine")
        config, device = FLUX_DEV_TRANSFORMER, torch.device("cuda")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU (tiny model)"
    rows = []
    for case in cases(args):
        try:
            row = measure(case, config, device, args.warmup, args.steps)
        except torch.OutOfMemoryError:
            print(f"{case}: out of memory", flush=True)
            gc.collect()
            torch.cuda.empty_cache()
            continue
        row.mfu = row.tflop_per_step / row.seconds_per_step / args.peak_tflops
        rows.append(row)
        print(f"{case}: {row.seconds_per_step:.3f} s/step, {row.peak_gib:.1f} GiB", flush=True)
    print()
    print(table(rows, name))
    if args.json:
        args.json.write_text(json.dumps([asdict(row) for row in rows], indent=2))
    return 0 if rows and all(math.isfinite(r.seconds_per_step) for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
