"""Third-party output that a trainer's user cannot act on, turned off at its source and nowhere
else: every other warning of these libraries still shows."""

import logging
import sys
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext

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


@contextmanager
def library_bars_off() -> Iterator[None]:
    """diffusers' and transformers' own progress bars (loading a model's parts and weights,
    writing its shards) off for a while; the hub's download bars stay."""
    from diffusers.utils import logging as diffusers_logging
    from huggingface_hub import utils as hub
    from transformers.utils import logging as transformers_logging

    bars = (diffusers_logging, transformers_logging)
    were = [each.is_progress_bar_enabled() for each in bars]
    hub_was = not hub.are_progress_bars_disabled()
    for each in bars:
        each.disable_progress_bar()
    if hub_was:
        hub.enable_progress_bars()  # transformers turns the hub's off with its own
    try:
        yield
    finally:
        for each, was in zip(bars, were, strict=True):
            if was:
                each.enable_progress_bar()
        if not hub_was:
            hub.disable_progress_bars()


def library_bars_off_in_logs(stream=None) -> AbstractContextManager[None]:
    """`library_bars_off` where the output is a log, not a terminal (a pod's log, a file): a
    bar redraws itself with carriage returns and cursor moves, which a log keeps as a line of
    escape codes per model part. The trainer logs its own progress."""
    stream = stream or sys.stderr
    return nullcontext() if stream.isatty() else library_bars_off()
