"""Prediction ids (resource uids) to resource names, per namespace, kept current by a watch as
an informer keeps its cache: a lookup by id then reads one object by name instead of listing
the namespace, and a sync-mode submission waits for its run's end without polling. Only the
two strings per resource (and which runs ended) are kept: 100,000 runs cost a few MiB."""

import logging
import threading
import time

from fluxlora_api import resource
from fluxlora_api.status import is_finished
from fluxlora_kube.client import ApiError, Kube
from fluxlora_kube.paths import path

logger = logging.getLogger(__name__)

PAGE_SIZE = 500
WATCH_SECONDS = 300
RETRY_SECONDS = 2.0
# How long a lookup of an id the index does not know waits for the watch to show it (a resource
# created through another gateway replica a moment ago); ids that are no uid are not waited for.
MISS_WAIT_SECONDS = 0.25
# How long the first lookup in a namespace waits for its first listing.
SYNC_WAIT_SECONDS = 30.0


def _ended(obj: dict) -> bool:
    return is_finished(obj.get("status"))


class NamespaceIndex:
    """uid -> name of one namespace's resources: listed once in pages, then watched."""

    def __init__(self, kube: Kube, namespace: str) -> None:
        self.kube, self.namespace = kube, namespace
        self._names: dict[str, str] = {}
        self._ended: set[str] = set()
        self._changed = threading.Condition()
        self._synced = False
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, daemon=True, name=f"prediction-index-{namespace}"
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def remember(self, uid: str, name: str, ended: bool = False) -> None:
        with self._changed:
            self._names[uid] = name
            if ended:
                self._ended.add(uid)
            self._changed.notify_all()

    def _forget(self, uid: str) -> None:
        with self._changed:
            self._names.pop(uid, None)
            self._ended.discard(uid)
            self._changed.notify_all()

    def ended(self, uid: str) -> bool:
        """Whether the run ended (completed or failed) or is gone, as the watch last showed."""
        with self._changed:
            return uid in self._ended or (self._synced and uid not in self._names)

    def name(self, uid: str, miss_wait: float = MISS_WAIT_SECONDS) -> str | None:
        """The name of the resource with this uid, or None; raises TimeoutError when the
        namespace could not be listed yet."""
        with self._changed:
            if not self._changed.wait_for(lambda: self._synced, SYNC_WAIT_SECONDS):
                raise TimeoutError(f"the runs of namespace {self.namespace} could not be listed")
            self._changed.wait_for(lambda: uid in self._names, miss_wait)
            return self._names.get(uid)

    def _list(self) -> str:
        """Replace the map with a fresh listing; its resourceVersion."""
        names: dict[str, str] = {}
        ended: set[str] = set()
        query = {"limit": str(PAGE_SIZE)}
        while True:
            listing = self.kube.request("GET", path(resource.KIND, self.namespace), query=query)
            for item in listing.get("items") or []:
                names[item["metadata"]["uid"]] = item["metadata"]["name"]
                if _ended(item):
                    ended.add(item["metadata"]["uid"])
            meta = listing.get("metadata") or {}
            if not meta.get("continue"):
                break
            query["continue"] = meta["continue"]
        with self._changed:
            self._names, self._ended = names, ended
            self._synced = True
            self._changed.notify_all()
        return meta["resourceVersion"]

    def _run(self) -> None:
        version = None
        while not self._stop.is_set():
            try:
                if version is None:
                    version = self._list()
                query = {"resourceVersion": version, "allowWatchBookmarks": "true"}
                url = path(resource.KIND, self.namespace)
                for kind, obj in self.kube.watch(url, query, WATCH_SECONDS):
                    meta = obj["metadata"]
                    version = meta["resourceVersion"]
                    if kind == "DELETED":
                        self._forget(meta["uid"])
                    elif kind in ("ADDED", "MODIFIED"):
                        self.remember(meta["uid"], meta["name"], _ended(obj))
            except ApiError as error:
                if error.status != 410:  # 410: too old to resume from, list again
                    logger.warning("watch of %s's runs failed: %s", self.namespace, error)
                    time.sleep(RETRY_SECONDS)
                version = None
            except Exception as error:
                logger.warning("watch of %s's runs failed: %s", self.namespace, error)
                version = None
                time.sleep(RETRY_SECONDS)


class PredictionIndex:
    """The per-namespace indexes, each started by the first lookup in its namespace."""

    def __init__(self, kube: Kube) -> None:
        self.kube = kube
        self._namespaces: dict[str, NamespaceIndex] = {}
        self._lock = threading.Lock()

    def namespace(self, namespace: str) -> NamespaceIndex:
        with self._lock:
            if namespace not in self._namespaces:
                self._namespaces[namespace] = NamespaceIndex(self.kube, namespace)
            return self._namespaces[namespace]

    def name(self, namespace: str, uid: str, miss_wait: float = MISS_WAIT_SECONDS) -> str | None:
        return self.namespace(namespace).name(uid, miss_wait)

    def remember(self, namespace: str, uid: str, name: str) -> None:
        self.namespace(namespace).remember(uid, name)
