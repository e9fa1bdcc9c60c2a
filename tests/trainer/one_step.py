"""One optimisation step on the tiny model, as every rank of a launch takes it; rank 0 saves the
LoRA it leads to. `python -m tests.trainer.one_step TINY_MODEL IMAGES OUT BATCH_SIZE`, alone or
under torch.distributed.run (tests/trainer/test_ranks.py compares the two)."""

import sys
from pathlib import Path

import torch

from fluxlora_api.contract import TrainingConfig
from fluxlora_trainer.cache import prepare_training_data
from fluxlora_trainer.dataset import Sample
from fluxlora_trainer.ranks import join, leave, this_process
from fluxlora_trainer.train_loop import LoRATrainer

CPU = torch.device("cpu")


def main(tiny_model: str, images: str, out: str, batch_size: str) -> None:
    from diffusers import FluxPipeline

    ranks = this_process()
    join(ranks, CPU)
    torch.manual_seed(0)
    pipeline = FluxPipeline.from_pretrained(tiny_model)
    samples = [
        Sample(path, path.name, f"photo {index}", 96, 64)
        for index, path in enumerate(sorted(Path(images).glob("*.png")))
    ]
    data = prepare_training_data(pipeline, samples, [256], 10**8, CPU, seed=0)
    config = TrainingConfig.model_validate(
        {"data": "https://example.com/a.zip", "output": out, "steps": 500,
         "batchSize": int(batch_size), "captionDropout": 0.5, "seed": 0}
    )  # fmt: skip
    trainer = LoRATrainer(pipeline.transformer, data, config, 0, CPU, torch.float32, ranks)
    loss = trainer.train_step()
    if ranks.main:
        torch.save({"lora": trainer.lora_state_dict(), "loss": loss.item()}, out)
    leave()


if __name__ == "__main__":
    main(*sys.argv[1:])
