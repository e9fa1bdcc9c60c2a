"""Finished runs that clean up after themselves: a resource whose run ended
ttlSecondsAfterFinished ago (its own, or the operator's default) is deleted; its outputs stay in
storage. A run whose webhook is still being delivered waits for that. Every resource event
offers the resource (consider), so a restart finds the ones due while it was down."""

import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from fluxlora_api import resource
from fluxlora_api.status import is_finished
from fluxlora_kube.client import ApiError, Kube
from fluxlora_kube.paths import path
from fluxlora_operator.clock import parse_time, utcnow
from fluxlora_operator.due import DueWorker
from fluxlora_operator.settings import OperatorSettings
from fluxlora_operator.webhook_delivery import wants_delivery

logger = logging.getLogger(__name__)

WEBHOOK_WAIT_SECONDS = 30.0  # how often a run kept for its webhook is looked at again


def ttl_of(obj: dict[str, Any], default: int | None) -> int | None:
    ttl = (obj.get("spec") or {}).get("ttlSecondsAfterFinished")
    return ttl if ttl is not None else default


def seconds_until_due(obj: dict[str, Any], default: int | None) -> float | None:
    """How long until `obj` may be deleted (0 or less: now), or None when never."""
    status = obj.get("status") or {}
    ttl = ttl_of(obj, default)
    if ttl is None or not is_finished(status) or not status.get("completionTime"):
        return None
    deadline = parse_time(status["completionTime"]) + timedelta(seconds=ttl)
    return (deadline - utcnow()).total_seconds()


class FinishedRunCleaner(DueWorker):
    def __init__(
        self, kube: Kube, settings: OperatorSettings, active: Callable[[], bool] = lambda: True
    ) -> None:
        super().__init__("cleanup")
        self.kube, self.default, self.active = kube, settings.ttl_seconds_after_finished, active

    def consider(self, obj: dict[str, Any]) -> None:
        wait = seconds_until_due(obj, self.default)
        if wait is not None:
            meta = obj["metadata"]
            self.due.plan_in((meta["namespace"], meta["name"]), wait)

    def handle(self, namespace: str, name: str) -> None:
        if not self.active():
            self.due.plan_in((namespace, name), self.IDLE_SECONDS)
            return
        obj = self.kube.get(resource.KIND, namespace, name)
        if obj is None:
            return
        wait = seconds_until_due(obj, self.default)
        if wait is None:
            return
        if wait > 0:
            self.due.plan_in((namespace, name), wait)
            return
        if wants_delivery(obj):  # its webhook is still being delivered: it keeps the record
            self.due.plan_in((namespace, name), WEBHOOK_WAIT_SECONDS)
            return
        uid = obj["metadata"]["uid"]
        try:
            self.kube.request(
                "DELETE",
                path(resource.KIND, namespace, name),
                {"propagationPolicy": "Background", "preconditions": {"uid": uid}},
            )
        except ApiError as error:
            if error.status not in (404, 409):  # gone, or a new resource of the same name
                raise
            return
        logger.info("%s/%s deleted %d s after it ended (ttlSecondsAfterFinished); its outputs "
                    "stay in storage", namespace, name, ttl_of(obj, self.default))  # fmt: skip
