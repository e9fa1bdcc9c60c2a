"""KMock's Kubernetes emulator plus the API-server behaviour the operator and kopf rely on:
uids, generated names, creation timestamps, generations and resource versions; label selectors on
lists and watches; 422 for a failed JSON-patch test; 409 for a merge patch whose
metadata.resourceVersion is not the stored one (the operator's guarded writes).

It stands in for the real API server until the control-plane tests run these scenarios against
one; it checks no schema, so schema behaviour is tested in tests/unit/test_crd.py.
"""

import itertools
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import jsonpatch
import kmock

from fluxlora_api import resource
from fluxlora_kube.paths import COLLECTIONS


def _served(kind: str, **info: Any) -> tuple[str, dict[str, Any]]:
    """The emulator's key and description of a kind, from the one table of API paths."""
    collection = COLLECTIONS[kind]
    key = f"{collection.api_version}/{collection.plural}"
    return key, {
        "kind": kind,
        "singular": kind.lower(),
        "namespaced": collection.namespaced,
        **info,
    }


RESOURCES: dict[str, dict[str, Any]] = dict(
    [
        _served("Job", subresources=["status"]),
        _served("Pod", subresources=["status"]),
        _served("ServiceAccount"),
        _served("Event"),
        _served("Role"),
        _served("RoleBinding"),
        _served(
            resource.KIND,
            shortnames=list(resource.SHORT_NAMES),
            categories=list(resource.CATEGORIES),
            subresources=["status"],
        ),
        # Cluster-scoped kinds kopf's discovery waits for (it starts no watch before it sees them).
        _served("Namespace"),
        _served("CustomResourceDefinition"),
    ]
)
VERBS = ["create", "delete", "get", "list", "patch", "update", "watch"]


def matches(obj: dict[str, Any], selector: str | None) -> bool:
    """Equality-based label selectors (k=v,k2=v2), the only kind the operator sends."""
    if not selector:
        return True
    labels = (obj.get("metadata") or {}).get("labels") or {}
    for term in selector.split(","):
        key, _, value = term.partition("=")
        if labels.get(key.strip()) != value.strip():
            return False
    return True


class ApiServerEmulator(kmock.KubernetesEmulator):
    _revision = itertools.count(1)

    def declare_resources(self) -> None:
        for key, info in RESOURCES.items():
            self.resources[key] = {
                "verbs": VERBS,
                "shortnames": [],
                "categories": [],
                "subresources": [],
                **info,
            }

    async def _handle(self, request: kmock.Request):  # type: ignore[override]
        if request.action == kmock.action.CREATE and isinstance(request.data, dict):
            meta = request.data.setdefault("metadata", {})
            if not meta.get("name") and meta.get("generateName"):
                meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
            meta.setdefault("uid", str(uuid.uuid4()))
            meta.setdefault("creationTimestamp", datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
            meta.setdefault("generation", 1)
            if request.namespace:
                meta.setdefault("namespace", request.namespace)
            meta["resourceVersion"] = str(next(self._revision))
        elif request.action == kmock.action.UPDATE:
            self._check_precondition(request)
            # Every write makes a new resourceVersion (kopf's JSON patches test it).
            revision = str(next(self._revision))
            if isinstance(request.data, dict):
                request.data.setdefault("metadata", {})["resourceVersion"] = revision
            elif isinstance(request.data, list):
                request.data.append(
                    {"op": "add", "path": "/metadata/resourceVersion", "value": revision}
                )
        try:
            return await super()._handle(request)
        except jsonpatch.JsonPatchTestFailed as error:
            # The API server's answer to a failed "test" op: kopf retries on a fresher body.
            raise kmock.KubernetesError(422, "Invalid", str(error), {}) from None

    def _check_precondition(self, request: kmock.Request) -> None:
        expected = None
        if isinstance(request.data, dict):
            expected = (request.data.get("metadata") or {}).get("resourceVersion")
        key = (request.resource, request.namespace, request.name)
        if expected is None or key not in self._objects or self._objects[key].deleted:
            return
        stored = self._objects[key].raw.get("metadata", {}).get("resourceVersion")
        if stored != expected:
            raise kmock.KubernetesError(
                409,
                "Conflict",
                "the object has been modified; apply your changes to the latest version",
                {},
            )

    async def _serve_list(self, request: kmock.Request) -> Any:
        listing = await super()._serve_list(request)
        selector = request.params.get("labelSelector")
        listing["items"] = [item for item in listing["items"] if matches(item, selector)]
        return listing

    async def _serve_watch(self, request: kmock.Request) -> AsyncIterator[Any]:
        selector = request.params.get("labelSelector")
        async for event in super()._serve_watch(request):
            if isinstance(event, dict) and not matches(event.get("object") or {}, selector):
                continue
            yield event
