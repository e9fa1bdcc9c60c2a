"""Many events, one reaction: a Job and its pod change several times in a second, and each
change asks for the same resource to be mirrored. Like a controller's work queue, a key being
worked on is not worked on twice at once; requests that arrive meanwhile make it run once
more after, and their threads go back to the pool at once instead of queueing on a lock."""

import threading
from collections.abc import Callable, Hashable


class Coalescer:
    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._again: dict[Hashable, bool] = {}  # keys being worked on -> asked again meanwhile

    def run(self, key: Hashable, work: Callable[[], None]) -> bool:
        """Run `work` now, or have the thread running it for `key` run it once more; True when
        this call ran it."""
        with self._guard:
            if key in self._again:
                self._again[key] = True
                return False
            self._again[key] = False
        while True:
            try:
                work()
            except BaseException:
                with self._guard:
                    del self._again[key]  # the next event, or the resync, tries again
                raise
            with self._guard:
                if not self._again[key]:
                    del self._again[key]
                    return True
                self._again[key] = False
