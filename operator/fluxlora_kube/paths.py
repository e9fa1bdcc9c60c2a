"""Where each kind the project reads or writes lives in the API: the one table of API paths."""

from dataclasses import dataclass
from urllib.parse import quote

from fluxlora_api import resource


@dataclass(frozen=True)
class Collection:
    api_version: str  # "v1", "batch/v1", "fluxlora.dev/v1alpha1"
    plural: str
    namespaced: bool = True

    @property
    def prefix(self) -> str:
        return "/api/v1" if self.api_version == "v1" else f"/apis/{self.api_version}"


COLLECTIONS = {
    "ConfigMap": Collection("v1", "configmaps"),
    "Event": Collection("v1", "events"),
    "Namespace": Collection("v1", "namespaces", namespaced=False),
    "Node": Collection("v1", "nodes", namespaced=False),
    "PersistentVolume": Collection("v1", "persistentvolumes", namespaced=False),
    "PersistentVolumeClaim": Collection("v1", "persistentvolumeclaims"),
    "Pod": Collection("v1", "pods"),
    "ResourceQuota": Collection("v1", "resourcequotas"),
    "Secret": Collection("v1", "secrets"),
    "ServiceAccount": Collection("v1", "serviceaccounts"),
    "Deployment": Collection("apps/v1", "deployments"),
    "Job": Collection("batch/v1", "jobs"),
    "Role": Collection("rbac.authorization.k8s.io/v1", "roles"),
    "RoleBinding": Collection("rbac.authorization.k8s.io/v1", "rolebindings"),
    "Lease": Collection("coordination.k8s.io/v1", "leases"),
    "TokenReview": Collection("authentication.k8s.io/v1", "tokenreviews", namespaced=False),
    "CustomResourceDefinition": Collection(
        "apiextensions.k8s.io/v1", "customresourcedefinitions", namespaced=False
    ),
    "KopfPeering": Collection("kopf.dev/v1", "kopfpeerings"),
    "ClusterKopfPeering": Collection("kopf.dev/v1", "clusterkopfpeerings", namespaced=False),
    resource.KIND: Collection(resource.API_VERSION, resource.PLURAL),
}


def path(
    kind: str, namespace: str | None = None, name: str | None = None, subresource: str = ""
) -> str:
    """The URL path of a collection, one object of it, or a subresource of that object; a
    namespaced kind without `namespace` means the collection across all namespaces."""
    collection = COLLECTIONS[kind]
    url = collection.prefix
    if collection.namespaced and namespace is not None:
        url += f"/namespaces/{quote(namespace)}"
    url += f"/{collection.plural}"
    if name is not None:
        url += f"/{quote(name)}"
    if subresource:
        url += f"/{subresource}"
    return url
