"""A run that neither quantizes nor uses the 8-bit optimizer never loads bitsandbytes; the
libraries then take their no-bitsandbytes path, and a run that needs it still gets it."""

import json
import subprocess
import sys

import pytest

from fluxlora_api.contract import TrainingConfig
from fluxlora_trainer.libraries import needs_bitsandbytes

BASE = {"data": "https://example.com/d.zip", "output": "/out", "steps": 500}

# What a trainer loads, after leave_out_unused: which of the libraries think bitsandbytes is
# there, and whether it was imported.
LOADING = """
import json, sys
from fluxlora_api.contract import TrainingConfig
from fluxlora_trainer.libraries import leave_out_unused
leave_out_unused(TrainingConfig.model_validate_json(sys.argv[1]))
import peft.import_utils
from diffusers import FluxPipeline
from diffusers.utils import is_bitsandbytes_available as diffusers_sees
from transformers.utils import is_bitsandbytes_available as transformers_sees
import fluxlora_trainer.run
print(json.dumps({
    "imported": sys.modules.get("bitsandbytes") is not None,
    "peft": peft.import_utils.is_bnb_available(),
    "diffusers": diffusers_sees(),
    "transformers": transformers_sees(),
}))
"""


@pytest.mark.parametrize(
    ("changes", "needed"),
    [
        ({}, False),
        ({"optimizer": "prodigy"}, False),
        ({"optimizer": "adamw8bit"}, True),
        ({"baseWeights": "int8"}, True),
        ({"baseWeights": "nf4"}, True),
    ],
)
def test_bitsandbytes_is_needed_for_quantized_weights_and_the_8bit_optimizer(changes, needed):
    assert needs_bitsandbytes(TrainingConfig.model_validate({**BASE, **changes})) is needed


def loaded(changes: dict) -> dict:
    config = json.dumps({**BASE, **changes})
    done = subprocess.run(
        [sys.executable, "-c", LOADING, config], capture_output=True, text=True, timeout=240
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def test_a_bf16_run_imports_no_bitsandbytes_and_no_library_looks_for_it():
    assert loaded({}) == {
        "imported": False, "peft": False, "diffusers": False, "transformers": False
    }  # fmt: skip


def test_a_quantized_run_has_bitsandbytes():
    assert loaded({"baseWeights": "nf4"}) == {
        "imported": True, "peft": True, "diffusers": True, "transformers": True
    }  # fmt: skip
