"""Third-party warnings that a trainer's user cannot act on, turned off at their own loggers
and nowhere else: every other warning of these libraries still shows."""

import logging

UNACTIONABLE = {
    # bitsandbytes offers an optional CPU 4-bit kernel that it downloads from the model hub at
    # run time; the trainer never downloads code, and trains on GPUs.
    "bitsandbytes.backends.cpu.ops": logging.ERROR,
    # Its int8 matmul warns at every call that bf16/float32 inputs are cast to float16, which
    # is how LLM.int8() works; quantize.py says so once.
    "bitsandbytes.autograd._functions": logging.ERROR,
    # diffusers' FLUX pipeline module imports the image processor of FLUX's IP-Adapter, which
    # falls back to its PIL version without torchvision; training uses no image processor.
    "transformers.utils.import_utils": logging.ERROR,
}


def silence_unactionable_warnings() -> None:
    for name, level in UNACTIONABLE.items():
        logging.getLogger(name).setLevel(level)
