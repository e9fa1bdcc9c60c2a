"""Kubernetes objects as the API server and the Job controller would show them, for tests."""

from typing import Any

from fluxlora_api import resource
from fluxlora_api.contract import TrainingResult
from fluxlora_operator import naming

T0 = "2026-11-24T10:00:00Z"


def training_job(
    name: str = "portrait",
    namespace: str = "team-a",
    uid: str = "11111111-2222-3333-4444-555555555555",
    status: dict[str, Any] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": resource.API_VERSION,
        "kind": resource.KIND,
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": uid,
            "generation": 1,
            "creationTimestamp": T0,
        },
        "spec": {"data": "s3://datasets/portrait.zip", **spec},
    }
    if status is not None:
        body["status"] = status
    return body


def job(
    name: str = "portrait",
    namespace: str = "team-a",
    uid: str = "job-uid-1",
    owner_uid: str = "11111111-2222-3333-4444-555555555555",
    conditions: list[dict[str, Any]] | None = None,
    suspend: bool = False,
    queue: str | None = None,
    **status: Any,
) -> dict[str, Any]:
    labels = naming.child_labels(name)
    if queue:
        labels[naming.KUEUE_QUEUE_LABEL] = queue
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": naming.job_name(name),
            "namespace": namespace,
            "uid": uid,
            "labels": labels,
            "ownerReferences": [
                {"apiVersion": resource.API_VERSION, "kind": resource.KIND, "uid": owner_uid}
            ],
        },
        "spec": {"suspend": suspend, "activeDeadlineSeconds": 3600},
        "status": {"conditions": conditions or [], **status},
    }


def job_condition(type_: str, reason: str = "", message: str = "") -> dict[str, Any]:
    return {
        "type": type_,
        "status": "True",
        "reason": reason,
        "message": message,
        "lastTransitionTime": "2026-11-24T11:00:00Z",
    }


def pod(
    name: str = "portrait-train-abcde",
    job_name: str = "portrait",
    job_uid: str = "job-uid-1",
    created: str = T0,
    phase: str = "Pending",
    state: dict[str, Any] | None = None,
    conditions: list[dict[str, Any]] | None = None,
    node: str | None = "gpu-node-1",
    namespace: str = "team-a",
) -> dict[str, Any]:
    labels = naming.child_labels(job_name)
    labels["batch.kubernetes.io/controller-uid"] = job_uid
    status: dict[str, Any] = {"phase": phase, "conditions": conditions or []}
    if state is not None:
        status["containerStatuses"] = [{"name": naming.TRAINER_CONTAINER, "state": state}]
    spec: dict[str, Any] = {"nodeName": node} if node else {}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "creationTimestamp": created,
            "labels": labels,
            "ownerReferences": [
                {
                    "kind": "Job",
                    "name": naming.job_name(job_name),
                    "uid": job_uid,
                    "controller": True,
                }
            ],
        },
        "spec": spec,
        "status": status,
    }


def running(started: str = "2026-11-24T10:01:00Z") -> dict[str, Any]:
    return {"running": {"startedAt": started}}


def terminated(
    exit_code: int,
    message: str = "",
    reason: str = "Error",
    started: str = "2026-11-24T10:01:00Z",
    finished: str = "2026-11-24T10:31:00Z",
) -> dict[str, Any]:
    return {
        "terminated": {
            "exitCode": exit_code,
            "reason": reason,
            "message": message,
            "startedAt": started,
            "finishedAt": finished,
        }
    }


def result_message(**fields: Any) -> str:
    return TrainingResult(**fields).to_termination_message()
