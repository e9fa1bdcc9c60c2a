"""Which replica is active, when two or more share a kopf peering object.

kopf pauses its handlers in every replica but the one with the highest priority (and pauses
all of them when priorities are equal), so each replica takes a priority of its own. The
operator's own loops (the resync) must pause with them: `PeeringGate` answers, from the same
peering object kopf keeps, whether this replica is the one that acts.
"""

import logging
import os
import secrets
from datetime import datetime, timedelta
from typing import Any

from fluxlora_kube.client import ApiError, Kube
from fluxlora_kube.paths import path
from fluxlora_operator.clock import parse_time, utcnow
from fluxlora_operator.settings import OperatorSettings

logger = logging.getLogger(__name__)

POD_ID_ENV = "POD_ID"  # kopf names this replica after it in the peering object


def replica_identity() -> str:
    """This replica's peering identity: the pod's name (the chart sets POD_ID), else a fresh
    random one, exported so kopf uses the same."""
    identity = os.environ.get(POD_ID_ENV) or f"fluxlora-{secrets.token_hex(6)}"
    os.environ[POD_ID_ENV] = identity
    return identity


def replica_priority(settings: OperatorSettings) -> int:
    """The setting, else a random one: equal priorities would pause every replica."""
    if settings.peering_priority is not None:
        return settings.peering_priority
    return 1 + secrets.randbelow(2**31 - 2)


def is_active(peers: dict[str, Any], identity: str, priority: int, now: datetime) -> bool:
    """Whether no other live peer has our priority or a higher one (kopf's own rule)."""
    for peer, info in peers.items():
        if peer == identity or not isinstance(info, dict):
            continue
        lastseen = info.get("lastseen")
        lifetime = timedelta(seconds=int(info.get("lifetime") or 60))
        if lastseen is None or parse_time(lastseen) + lifetime <= now:
            continue  # dead: kopf ignores it too
        if int(info.get("priority") or 0) >= priority:
            return False
    return True


class PeeringGate:
    """Callable: True when this replica should act. Standalone replicas always act."""

    def __init__(self, kube: Kube, settings: OperatorSettings, identity: str, priority: int):
        self.kube, self.settings = kube, settings
        self.identity, self.priority = identity, priority

    def _peering_path(self) -> str:
        name = self.settings.peering
        if self.settings.all_namespaces:
            return path("ClusterKopfPeering", name=name)
        return path("KopfPeering", self.settings.namespaces[0], name)

    def __call__(self) -> bool:
        if self.settings.peering is None:
            return True
        try:
            peering = self.kube.request("GET", self._peering_path())
        except ApiError as error:
            logger.warning("peering object unreadable (%s): this replica waits", error)
            return False  # kopf pauses without it too
        return is_active(peering.get("status") or {}, self.identity, self.priority, utcnow())
