"""Events on a LoRATrainingJob (what `kubectl describe ltj` shows): built by a pure function and
posted through the operator's own client, so they can be posted from any thread (the resync
loop included), not only from inside a kopf handler."""

import logging
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fluxlora_operator import naming
from fluxlora_operator.clock import format_time, utcnow
from fluxlora_operator.kube import Kube

logger = logging.getLogger(__name__)

MESSAGE_LIMIT = 1024


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
    def __init__(self, kube: Kube) -> None:
        self.kube = kube

    def __call__(self, body: dict[str, Any], event: Event) -> None:
        obj = build_event(body, event, utcnow())
        namespace = obj["metadata"]["namespace"]
        self.kube.request("POST", f"/api/v1/namespaces/{namespace}/events", obj)
