"""What a resync round reads: one namespace's resources, trainer Jobs, trainer pods and the Job
controller's FailedCreate Events, listed once (four calls however many resources, in pages),
instead of three or four reads per resource."""

from dataclasses import dataclass
from functools import cached_property
from typing import Any

from fluxlora_api import resource
from fluxlora_kube.client import Kube
from fluxlora_operator import naming

PAGE_SIZE = 250  # objects per list call: a large namespace is read without one huge answer


class StaleSnapshot(Exception):
    """The resource changed since the resync listed it: decide again from a fresh read."""


@dataclass(frozen=True)
class Snapshot:
    """One namespace's LoRATrainingJobs, trainer Jobs and trainer pods, listed once for a
    resync round."""

    resources: dict[str, dict[str, Any]]
    jobs: dict[str, dict[str, Any]]
    pods: list[dict[str, Any]]
    pod_creation_failures: dict[str, str]  # Job uid -> its FailedCreate message

    @classmethod
    def of(cls, kube: Kube, namespace: str) -> "Snapshot":
        resources = kube.list_objects(resource.KIND, namespace, "", PAGE_SIZE, slim_resource)
        jobs = kube.list_objects("Job", namespace, naming.MANAGED_SELECTOR, PAGE_SIZE, slim_job)
        pods = kube.list_objects("Pod", namespace, naming.MANAGED_SELECTOR, PAGE_SIZE, slim_pod)
        return cls(
            {item["metadata"]["name"]: item for item in resources},
            {item["metadata"]["name"]: item for item in jobs},
            pods,
            kube.pod_creation_failures(namespace),
        )

    def pods_of(self, job: dict[str, Any]) -> list[dict[str, Any]]:
        return self._pods_by_owner.get(job["metadata"]["uid"], [])

    @cached_property
    def _pods_by_owner(self) -> dict[str, list[dict[str, Any]]]:
        """Pods by the uid of each owner (one pass, not one per Job: a round has thousands)."""
        index: dict[str, list[dict[str, Any]]] = {}
        for pod in self.pods:
            for owner in pod["metadata"].get("ownerReferences") or []:
                index.setdefault(owner.get("uid"), []).append(pod)
        return index


# What the mirror reads of each object: the Jobs' and pods' specs (the trainer's environment,
# volumes) are most of their size and are never needed here. Copies: a watch event's object
# belongs to kopf.
def slim_resource(obj: dict[str, Any]) -> dict[str, Any]:
    meta = {key: value for key, value in obj.get("metadata", {}).items() if key != "managedFields"}
    return {**obj, "metadata": meta}


def slim_job(job: dict[str, Any]) -> dict[str, Any]:
    spec = job.get("spec") or {}
    kept = {key: spec[key] for key in ("suspend", "activeDeadlineSeconds") if key in spec}
    return {**slim_resource(job), "spec": kept}


def slim_pod(pod: dict[str, Any]) -> dict[str, Any]:
    spec = pod.get("spec") or {}
    kept = {"nodeName": spec["nodeName"]} if "nodeName" in spec else {}
    return {**slim_resource(pod), "spec": kept}
