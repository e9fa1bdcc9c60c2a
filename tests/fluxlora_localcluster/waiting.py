"""Waiting for the cluster to get somewhere, in tests."""

import asyncio
import inspect
import time
from collections.abc import Callable
from typing import Any


async def eventually(check: Callable, what: str | None = None, timeout: float = 30.0) -> Any:
    """Poll `check` (a coroutine function, or a blocking function run in a thread) until it
    returns something true, and return that; fail naming `what` (or check's docstring)."""
    deadline = time.monotonic() + timeout
    while True:
        if inspect.iscoroutinefunction(check):
            value = await check()
        else:
            value = await asyncio.to_thread(check)
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what or check.__doc__}")
        await asyncio.sleep(0.2)
