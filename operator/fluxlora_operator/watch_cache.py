"""What the watches have shown of each LoRATrainingJob, trainer Job and trainer pod, kept so
that a watch event mirrors its resource without reading anything back (the informer cache that
controller-runtime's controllers read from).

A decision made from the cache is written only to the resource version it saw (StaleSnapshot
otherwise, and the mirror reads afresh), so a cache behind the server costs a read, never a
wrong status; a resync round lists everything again anyway.
"""

import threading
from typing import Any

from fluxlora_api import resource
from fluxlora_operator import naming
from fluxlora_operator.snapshot import Snapshot, slim_job, slim_pod, slim_resource

Key = tuple[str, str]  # (namespace, LoRATrainingJob name)


class WatchCache:
    """The newest version seen of each object, slimmed to what the mirror reads."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._resources: dict[Key, dict[str, Any]] = {}
        self._jobs: dict[Key, dict[str, Any]] = {}  # by the owning resource
        self._pods: dict[Key, dict[str, dict[str, Any]]] = {}  # owner -> pod name -> pod

    def record(self, obj: dict[str, Any], deleted: bool = False) -> None:
        """Keep (or, `deleted`, drop) an object from a watch event or a write's answer."""
        kind = obj.get("kind")
        meta = obj.get("metadata") or {}
        namespace, name = meta.get("namespace", ""), meta.get("name", "")
        with self._guard:
            if kind == resource.KIND:
                _keep(self._resources, (namespace, name), obj, deleted, slim_resource)
                return
            owner = (namespace, (meta.get("labels") or {}).get(naming.LABEL_TRAINING_JOB, ""))
            if not owner[1]:
                return
            if kind == "Job":
                _keep(self._jobs, owner, obj, deleted, slim_job)
            elif kind == "Pod":
                pods = self._pods.setdefault(owner, {})
                _keep(pods, name, obj, deleted, slim_pod)
                if not pods:
                    del self._pods[owner]

    def forget(self, namespace: str, name: str) -> None:
        """Drop a resource found gone, with its Job and pods (their deletion may have been
        missed while the watch was disconnected)."""
        with self._guard:
            for store in (self._resources, self._jobs, self._pods):
                store.pop((namespace, name), None)

    def resource(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The newest version seen of a resource (an event may bring an older one than the
        operator's own last write answered with)."""
        with self._guard:
            return self._resources.get((namespace, name))

    def view(self, namespace: str, name: str) -> Snapshot:
        """One resource with its Job and pods, as a snapshot the mirror decides from."""
        key = (namespace, name)
        with self._guard:
            body = self._resources.get(key)
            job = self._jobs.get(key)
            pods = list(self._pods.get(key, {}).values())
        return Snapshot(
            resources={name: body} if body is not None else {},
            jobs={naming.job_name(name): job} if job is not None else {},
            pods=pods,
            pod_creation_failures={},  # only a resync lists the Job controller's Events
        )

    def __len__(self) -> int:
        with self._guard:
            return len(self._resources) + len(self._jobs) + sum(map(len, self._pods.values()))


def _keep(store: dict, key: Any, obj: dict[str, Any], deleted: bool, slim) -> None:
    if deleted:
        store.pop(key, None)
    elif key not in store or not _older(obj, store[key]):
        store[key] = slim(obj)


def _older(obj: dict[str, Any], than: dict[str, Any]) -> bool:
    """Whether `obj` is an older version than `than`: a write's answer can arrive before the
    watch event of an earlier write. Resource versions are etcd revisions (integers) on every
    API server we know; anything else is taken as newer."""
    try:
        return int(obj["metadata"]["resourceVersion"]) < int(than["metadata"]["resourceVersion"])
    except (KeyError, TypeError, ValueError):
        return False
