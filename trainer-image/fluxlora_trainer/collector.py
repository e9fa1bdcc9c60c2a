"""Python's cyclic garbage collector, paused while the training libraries are imported."""

import atexit
import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def paused_collector() -> Iterator[None]:
    """No cyclic collection while the block imports, then what exists frozen out of later
    collections. Importing torch, diffusers, transformers and peft makes millions of objects
    that live as long as the process; the collector walked them again and again as they came
    (about a second of a trainer's start), and later full collections would walk them all again.
    Only for imports: memory that the block frees through cycles waits for the next collection."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        # Unfrozen at a normal exit (the trainer's command exits without it; an in-process
        # caller does not), so that the interpreter's teardown still finalizes them: native
        # extensions (triton's) report what it leaves as leaks. Registered once however often
        # the block runs (the command runs it twice).
        atexit.unregister(gc.unfreeze)
        atexit.register(gc.unfreeze)
        if was_enabled:
            gc.enable()
