"""The trainer pod's identity: it may read its own LoRATrainingJob and patch its status, and
nothing else (resourceNames pins both rules to the one resource)."""

from typing import Any

from fluxlora_api import resource
from fluxlora_operator import naming
from fluxlora_operator.training_job import TrainingJobRef


def _metadata(ref: TrainingJobRef) -> dict[str, Any]:
    return {
        "name": naming.identity_name(ref.name),
        "namespace": ref.namespace,
        "labels": naming.child_labels(ref.name),
        "ownerReferences": [ref.owner_reference()],
    }


def build_service_account(ref: TrainingJobRef) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _metadata(ref)}


def build_role(ref: TrainingJobRef) -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": _metadata(ref),
        "rules": [
            {
                "apiGroups": [resource.GROUP],
                "resources": [resource.PLURAL],
                "resourceNames": [ref.name],
                "verbs": ["get"],
            },
            {
                "apiGroups": [resource.GROUP],
                "resources": [f"{resource.PLURAL}/status"],
                "resourceNames": [ref.name],
                "verbs": ["patch"],
            },
        ],
    }


def build_role_binding(ref: TrainingJobRef) -> dict[str, Any]:
    name = naming.identity_name(ref.name)
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": _metadata(ref),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": ref.namespace}],
    }


def build_identity(ref: TrainingJobRef) -> list[dict[str, Any]]:
    """In creation order: the binding refers to the account and the role."""
    return [build_service_account(ref), build_role(ref), build_role_binding(ref)]
