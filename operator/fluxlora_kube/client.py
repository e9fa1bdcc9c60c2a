"""A small dict-in, dict-out client for the few API calls the operator and gateway make.

The official client loads the credentials (kubeconfig, in-cluster token, exec plugins) and
carries the requests; objects stay plain dicts, as kopf hands them to handlers and as the pure
builders produce them.
"""

import contextlib
import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import kubernetes

from fluxlora_kube.paths import path

logger = logging.getLogger(__name__)

REQUEST_TIMEOUT_SECONDS = 30
# Set by the Job controller on every pod it creates.
JOB_CONTROLLER_UID_LABEL = "batch.kubernetes.io/controller-uid"


class ApiError(Exception):
    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message


class ForeignObjectError(Exception):
    """An object with the name we need exists but belongs to something else."""


def load_api_client(connections: int | None = None) -> kubernetes.client.ApiClient:
    """In-cluster credentials when running in a pod, the kubeconfig otherwise; `connections`
    kept alive for the threads that share the client (past that, every request makes a TLS
    connection and drops it after; default: five per CPU)."""
    try:
        kubernetes.config.load_incluster_config()
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config()
    config = kubernetes.client.Configuration.get_default_copy()
    if connections:
        config.connection_pool_maxsize = connections
    return kubernetes.client.ApiClient(config)


class Kube:
    def __init__(self, api_client: kubernetes.client.ApiClient) -> None:
        self._client = api_client

    def request(
        self,
        method: str,
        url: str,
        body: dict[str, Any] | list[Any] | None = None,
        query: dict[str, str] | None = None,
        content_type: str = "application/json",
    ) -> dict[str, Any]:
        headers = {"Accept": "application/json", "Content-Type": content_type}
        serialized = self._client.param_serialize(
            method=method,
            resource_path=url,
            query_params=list((query or {}).items()),
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        try:
            response = self._client.call_api(*serialized, _request_timeout=REQUEST_TIMEOUT_SECONDS)
            response.read()
        except kubernetes.client.ApiException as error:
            raise _api_error(error.status or 0, error.reason or "", error.body) from None
        if response.status >= 400:
            raise _api_error(response.status, response.reason or "", response.data)
        return json.loads(response.data) if response.data else {}

    def watch(
        self, url: str, query: dict[str, str], timeout_seconds: int = 5
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """(type, object) for each change the API server reports at `url` from
        `query["resourceVersion"]`, until it closes the watch after `timeout_seconds`. A
        version too old to resume from raises ApiError 410: list again."""
        query = {**query, "watch": "true", "timeoutSeconds": str(timeout_seconds)}
        serialized = self._client.param_serialize(
            method="GET",
            resource_path=url,
            query_params=list(query.items()),
            header_params={"Accept": "application/json"},
            auth_settings=["BearerToken"],
        )
        try:
            response = self._client.call_api(*serialized, _request_timeout=timeout_seconds + 10)
        except kubernetes.client.ApiException as error:
            raise _api_error(error.status or 0, error.reason or "", error.body) from None
        stream = response.response
        try:
            if response.status >= 400:
                raise _api_error(response.status, response.reason or "", stream.read())
            for line in stream:
                if not line.strip():
                    continue
                event = json.loads(line)
                if event["type"] == "ERROR":
                    status = event["object"]
                    raise ApiError(status.get("code", 0), status.get("reason", ""), str(status))
                yield event["type"], event["object"]
        finally:
            stream.release_conn()

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return self.request("GET", path(kind, namespace, name))
        except ApiError as error:
            if error.status == 404:
                return None
            raise

    def delete(self, kind: str, namespace: str, name: str, uid: str | None = None) -> None:
        """Deletes in the background (dependents too); a missing object is fine. With `uid`,
        only that object: another of the same name made meanwhile is left alone."""
        body: dict[str, Any] = {"propagationPolicy": "Background"}
        if uid is not None:
            body["preconditions"] = {"uid": uid}
        try:
            self.request("DELETE", path(kind, namespace, name), body=body)
        except ApiError as error:
            if error.status != 404 and not (uid is not None and error.status == 409):
                raise

    def patch_status(
        self,
        kind: str,
        namespace: str,
        name: str,
        status: dict[str, Any],
        resource_version: str | None = None,
    ) -> dict[str, Any]:
        """Merge `status` in; with `resource_version`, only into that version (409 otherwise)."""
        body: dict[str, Any] = {"status": status}
        if resource_version is not None:
            body["metadata"] = {"resourceVersion": resource_version}
        return self.request(
            "PATCH",
            path(kind, namespace, name, "status"),
            body=body,
            content_type="application/merge-patch+json",
        )

    def remove_finalizer(
        self, kind: str, namespace: str, name: str, finalizer: str, known: dict | None = None
    ) -> None:
        """Take `finalizer` off the object (gone already is fine). A JSON patch that first tests
        the entry it removes: what others change meanwhile (a controller writing the status)
        does not refuse it; a change to the list itself does. `known` is the object as a watch
        last showed it: nothing is read, and if its list has changed since, nothing is done
        (the change's own watch event brings the newer version, and with it the next try);
        without it, the object is read (again, while its list keeps changing)."""
        for _ in range(5):
            obj = known or self.get(kind, namespace, name)
            finalizers = (obj or {}).get("metadata", {}).get("finalizers") or []
            if obj is None or finalizer not in finalizers:
                return
            entry = f"/metadata/finalizers/{finalizers.index(finalizer)}"
            patch = [
                {"op": "test", "path": entry, "value": finalizer},
                {"op": "remove", "path": entry},
            ]
            try:
                self.request(
                    "PATCH", path(kind, namespace, name), patch,
                    content_type="application/json-patch+json",
                )  # fmt: skip
                return
            except ApiError as error:
                if error.status == 404 or (error.status == 422 and known is not None):
                    return
                if error.status != 422:  # 422: the test failed, the list has changed
                    raise
        raise ApiError(409, "Conflict", f"{kind} {namespace}/{name} kept changing")

    def create_or_adopt(
        self, obj: dict[str, Any], owns: Callable[[dict[str, Any]], bool], owner: str
    ) -> tuple[dict[str, Any], bool]:
        """Creates `obj`, or returns the existing one when `owns` says it is the caller's (a
        restart mid-way); `owner` names the caller in the error otherwise. Returns (object,
        created)."""
        meta = obj["metadata"]
        try:
            return self.request("POST", path(obj["kind"], meta["namespace"]), body=obj), True
        except ApiError as error:
            if error.status != 409:
                raise
        existing = self.get(obj["kind"], meta["namespace"], meta["name"])
        if existing is None:
            raise ApiError(409, "Conflict", f"{obj['kind']} {meta['name']} is being deleted")
        if not owns(existing):
            raise ForeignObjectError(
                f"{obj['kind']} {meta['namespace']}/{meta['name']} already exists and does not "
                f"belong to {owner}: delete it or use another name"
            )
        return existing, False

    def pod_creation_failures(self, namespace: str) -> dict[str, str]:
        """Job uid -> why the Job controller last failed to create a pod for it (a quota, a
        LimitRange, Pod Security), from the namespace's FailedCreate Events: one call."""
        listing = self.request(
            "GET", path("Event", namespace),
            query={"fieldSelector": "reason=FailedCreate,involvedObject.kind=Job"},
        )  # fmt: skip
        events = sorted(
            listing.get("items") or [],
            key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or "",
        )
        return {
            e["involvedObject"].get("uid", ""): e.get("message") or "FailedCreate" for e in events
        }

    def list_objects(
        self,
        kind: str,
        namespace: str,
        label_selector: str,
        page_size: int = 0,
        keep: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    ) -> list[dict[str, Any]]:
        """Every object of `kind` matching the selector; with `page_size`, read in pages of
        that many, and with `keep`, only what it keeps of each object (a large namespace is
        then never held whole in memory)."""
        items: list[dict[str, Any]] = []
        query = {"labelSelector": label_selector}
        if page_size:
            query["limit"] = str(page_size)
        while True:
            listing = self.request("GET", path(kind, namespace), query=query)
            items += [keep(item) if keep else item for item in listing.get("items") or []]
            token = (listing.get("metadata") or {}).get("continue")
            if not page_size or not token:
                return items
            query["continue"] = token

    def job_pods(self, job: dict[str, Any]) -> list[dict[str, Any]]:
        """The pods of exactly this Job (not of an earlier Job that had the same name)."""
        meta = job["metadata"]
        selector = f"{JOB_CONTROLLER_UID_LABEL}={meta['uid']}"
        pods = self.list_objects("Pod", meta["namespace"], selector)
        return [pod for pod in pods if is_pod_of(pod, job)]


def _api_error(status: int, reason: str, data: Any) -> ApiError:
    message = data.decode() if isinstance(data, bytes) else str(data or "")
    with contextlib.suppress(ValueError, AttributeError):
        message = json.loads(message).get("message", message)
    return ApiError(status, reason, message)


def is_pod_of(pod: dict[str, Any], job: dict[str, Any]) -> bool:
    """Whether `pod` belongs to exactly this Job (not to an earlier one of the same name)."""
    uid = job["metadata"]["uid"]
    return any(owner.get("uid") == uid for owner in pod["metadata"].get("ownerReferences") or [])
