"""Importing the trainer's model stack prints nothing a user cannot act on, and leaves the
libraries' other warnings on."""

import subprocess
import sys

IMPORTS = """
import logging
logging.basicConfig(level=logging.INFO)
import fluxlora_trainer.model, fluxlora_trainer.train_loop, fluxlora_trainer.quantize, peft
import diffusers.pipelines.flux.pipeline_flux
print("transformers", logging.getLogger("transformers").getEffectiveLevel())
print("bitsandbytes", logging.getLogger("bitsandbytes").getEffectiveLevel())
"""


def test_importing_the_trainer_prints_no_unactionable_library_warning():
    result = subprocess.run(
        [sys.executable, "-c", IMPORTS], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert "gemm_4bit_forward" not in result.stderr
    assert "requires torchvision" not in result.stderr
    # Only the two named loggers are quieted: the libraries' own levels are untouched.
    assert "transformers 30" in result.stdout or "transformers 20" in result.stdout
    assert "bitsandbytes 20" in result.stdout
