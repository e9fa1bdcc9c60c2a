"""Events on a LoRATrainingJob (what `kubectl describe ltj` shows): built by a pure function and
posted through the operator's own client from a queue, so they can be posted from any thread
(the resync loop included, not only a kopf handler) and no handler waits for one."""

import logging
import queue
import secrets
import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fluxlora_kube.client import Kube
from fluxlora_kube.paths import path
from fluxlora_operator import naming
from fluxlora_operator.clock import format_time, utcnow

logger = logging.getLogger(__name__)

MESSAGE_LIMIT = 1024
QUEUE_CAPACITY = 10_000


@dataclass(frozen=True)
class Event:
    type: str  # Normal or Warning
    reason: str
    message: str


def build_event(body: dict[str, Any], event: Event, now: datetime) -> dict[str, Any]:
    """A core/v1 Event about the resource `body`."""
    meta = body["metadata"]
    stamp = format_time(now)
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {
            "name": f"{meta['name']}.{secrets.token_hex(8)}",
            "namespace": meta["namespace"],
        },
        "involvedObject": {
            "apiVersion": body.get("apiVersion"),
            "kind": body.get("kind"),
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta["uid"],
        },
        "type": event.type,
        "reason": event.reason,
        "message": event.message[:MESSAGE_LIMIT],
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
        "source": {"component": naming.MANAGED_BY},
        "reportingComponent": naming.MANAGED_BY,
        "reportingInstance": naming.MANAGED_BY,
    }


class EventPoster:
    """Posts Events from a queue on a thread of its own, so a handler never waits for one;
    when the queue is full (the API server is far behind) an Event is dropped, and logged."""

    def __init__(self, kube: Kube, capacity: int = QUEUE_CAPACITY) -> None:
        self.kube = kube
        self._queue: queue.Queue[dict[str, Any]] = queue.Queue(capacity)
        threading.Thread(target=self._post_forever, name="events", daemon=True).start()

    def __call__(self, body: dict[str, Any], event: Event) -> None:
        try:
            self._queue.put_nowait(build_event(body, event, utcnow()))
        except queue.Full:
            logger.warning("event %s dropped: too many waiting", event.reason)

    def _post_forever(self) -> None:
        while True:
            obj = self._queue.get()
            namespace = obj["metadata"]["namespace"]
            try:
                self.kube.request("POST", path("Event", namespace), obj)
            except Exception as error:  # an Event is a courtesy: never stop for one
                logger.warning("event %s not posted: %s", obj["reason"], error)
