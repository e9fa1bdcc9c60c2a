"""SIGTERM (eviction, preemption, deletion, a suspended run): while the LoRA trains, the current
step finishes and a checkpoint of it is written before the trainer stops, so the retry resumes
at the next step and no work is lost; anywhere else (loading, caching, uploading) the trainer
stops at once, as nothing there is worth saving. Every rank stops at the same step."""

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING

from fluxlora_trainer.errors import Stopped

if TYPE_CHECKING:  # installed before torch is imported: a SIGTERM may come during that
    import torch

    from fluxlora_trainer.ranks import Ranks

_requested = threading.Event()
_deferring = False


def _on_sigterm(signum: int, frame: object) -> None:
    if _deferring:
        _requested.set()  # the training loop stops after this step's checkpoint
        return
    raise Stopped()


def install() -> None:
    """The trainer needs a handler: as its container's first process, the kernel drops a
    signal PID 1 does not handle, and the trainer would train on until the grace period's
    SIGKILL, holding the GPU and writing to an output a retry also writes."""
    signal.signal(signal.SIGTERM, _on_sigterm)


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Within: a SIGTERM is only recorded, for should_stop() to see. One that comes after the
    last check (the last steps) lets the finished LoRA be written: the best use of the grace
    period left."""
    global _deferring
    _deferring = True
    try:
        yield
    finally:
        _deferring = False


def should_stop(ranks: "Ranks", device: "torch.device") -> bool:
    """Whether a SIGTERM reached this rank or any other (they must stop at the same step)."""
    from fluxlora_trainer.ranks import any_rank

    return any_rank(_requested.is_set(), ranks, device)


def reset() -> None:
    """Forget a SIGTERM (for tests that stop more than one run in one process)."""
    _requested.clear()
