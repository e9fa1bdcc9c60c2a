"""Work planned for later, by key: each key is due at the earliest time it was planned for, and
a worker takes the due keys in order (the webhook sender's retries, finished runs' TTLs)."""

import heapq
import logging
import threading
import time
from collections.abc import Hashable
from typing import Generic, TypeVar

Key = TypeVar("Key", bound=Hashable)

logger = logging.getLogger(__name__)


class DueQueue(Generic[Key]):
    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Key]] = []
        self._planned: dict[Key, float] = {}
        self._order = 0  # keeps heap entries comparable whatever the keys are
        self._changed = threading.Condition()
        self._woken = False

    def plan(self, key: Key, when: float) -> None:
        """`key` due at monotonic time `when`, unless it is already due sooner."""
        with self._changed:
            if self._planned.get(key, float("inf")) <= when:
                return
            self._planned[key] = when
            self._order += 1
            heapq.heappush(self._heap, (when, self._order, key))
            self._changed.notify_all()

    def plan_in(self, key: Key, seconds: float) -> None:
        self.plan(key, time.monotonic() + max(seconds, 0.0))

    def take(self, timeout: float) -> Key | None:
        """The next due key (no longer planned), or None when none is due within `timeout`
        or wake() was called."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                if self._woken:
                    self._woken = False
                    return None
                now = time.monotonic()
                while self._heap and self._planned.get(self._heap[0][2]) != self._heap[0][0]:
                    heapq.heappop(self._heap)  # planned again since, sooner
                if self._heap and self._heap[0][0] <= now:
                    _, _, key = heapq.heappop(self._heap)
                    del self._planned[key]
                    return key
                if now >= deadline:
                    return None
                wake = self._heap[0][0] if self._heap else deadline
                self._changed.wait(min(wake, deadline) - now)

    def wake(self) -> None:
        """Make a waiting take() return None (its worker is stopping)."""
        with self._changed:
            self._woken = True
            self._changed.notify_all()


class DueWorker:
    """A thread that takes the due (namespace, name) keys of a DueQueue and hands each to
    handle(); a key whose handling raises is planned again RETRY_SECONDS later."""

    IDLE_SECONDS = 5.0  # how long a take() waits before it looks at the stop flag again
    RETRY_SECONDS = 5.0

    def __init__(self, name: str) -> None:
        self.due: DueQueue[tuple[str, str]] = DueQueue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name=name)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.due.wake()
        self._thread.join(timeout=5)

    def handle(self, namespace: str, name: str) -> None:
        raise NotImplementedError

    def _run(self) -> None:
        while not self._stop.is_set():
            key = self.due.take(self.IDLE_SECONDS)
            if key is None:
                continue
            try:
                self.handle(*key)
            except Exception:
                logger.exception("%s of %s/%s failed; tried again", self._thread.name, *key)
                self.due.plan_in(key, self.RETRY_SECONDS)
