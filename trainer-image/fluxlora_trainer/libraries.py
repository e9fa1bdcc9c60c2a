"""Which optional training libraries a run loads."""

import sys

from fluxlora_api.contract import TrainingConfig


def needs_bitsandbytes(config: TrainingConfig) -> bool:
    """Quantized base weights (int8, nf4) and the 8-bit AdamW are bitsandbytes'."""
    return config.base_weights != "bf16" or config.optimizer == "adamw8bit"


def leave_out_unused(config: TrainingConfig) -> None:
    """Keep bitsandbytes from loading in a run that does not use it. peft, transformers and
    diffusers import it whenever it is installed, and its import sets up torch.compile and
    probes optional kernels: 0.8 of the 4.5 CPU-seconds a trainer spends importing. Python
    spells "not importable" as None in sys.modules (find_spec answers None, import raises), so
    the libraries take the path they take where it is not installed. For a process about to
    import them (the trainer's command), not for one that has already."""
    if not needs_bitsandbytes(config):
        sys.modules.setdefault("bitsandbytes", None)  # type: ignore[arg-type]
