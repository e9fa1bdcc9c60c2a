"""A namespace ready to train in on the local control plane: the output store's credentials as
a Secret, and a model-cache PersistentVolumeClaim holding the tiny model; and the operator's
settings for it, as environment or as chart values (used by the end-to-end tests and by
`make demo`)."""

import base64
import json
import shutil
import time
from pathlib import Path
from typing import Any

import yaml

from fluxlora_api import resource
from fluxlora_api.crd import CRD_FILE
from fluxlora_kube.client import Kube
from fluxlora_kube.paths import path
from fluxlora_localcluster.minio import S3Server, free_port
from fluxlora_localcluster.node import Node
from fluxlora_localcluster.node_network import HOST_ADDRESS

CRD_PATH = Path(__file__).resolve().parents[2] / "crds" / CRD_FILE
MODEL_CLAIM = "model-cache"
CREDENTIALS = "s3-credentials"
MODEL_PATH = "/models/tiny-flux"  # where the trainer pod sees the tiny model
# MinIO and the tests' dataset servers listen on the host address (where the node's pods reach
# this machine), a private one, which trainers may not reach unless the operator allows it.
HOST_DATA = {"allowedNetworks": [f"{HOST_ADDRESS}/32"]}
# What hosted-API callers cannot choose, set by the gateway: the tiny model at a CPU-sized
# resolution, without checkpoints.
GATEWAY_SPEC_DEFAULTS = {"baseModel": MODEL_PATH, "resolution": 256, "checkpointEverySteps": 0}
# Trainers report progress every second, the most often the operator takes: a test that waits
# for a step sees it within a second of training it.
PROGRESS_SECONDS = 1


# A dataset URL for runs whose trainer never fetches it (no node, or a failure before that).
EXAMPLE_DATA = "https://example.com/a.zip"


def submit(kube: Kube, namespace: str, name: str = "portrait", **spec: Any) -> dict[str, Any]:
    """Create a LoRATrainingJob as `kubectl apply` would (spec in camelCase; data defaults to
    EXAMPLE_DATA) and return it as the API server stored it."""
    body = {
        "apiVersion": resource.API_VERSION,
        "kind": resource.KIND,
        "metadata": {"name": name},
        "spec": {"data": EXAMPLE_DATA, **spec},
    }
    return kube.request("POST", path(resource.KIND, namespace), body)


def install_crd(kube: Kube) -> None:
    """Install the LoRATrainingJob CRD and wait until the API server serves it."""
    crd = yaml.safe_load(CRD_PATH.read_text())
    url = path("CustomResourceDefinition")
    kube.request("POST", url, crd)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status = kube.request("GET", f"{url}/{crd['metadata']['name']}").get("status") or {}
        if any(
            c["type"] == "Established" and c["status"] == "True"
            for c in status.get("conditions") or []
        ):
            return
        time.sleep(0.2)
    raise RuntimeError("the CRD was not established")


RESTRICTED = {"pod-security.kubernetes.io/enforce": "restricted"}


def create_namespace(kube: Kube, name: str, labels: dict[str, str] | None = None) -> None:
    """A namespace; RESTRICTED as `labels` makes the API server enforce that Pod Security
    profile on every pod in it."""
    body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
    body["metadata"]["labels"] = labels or {}
    kube.request("POST", path("Namespace"), body)


def set_quota(kube: Kube, namespace: str, name: str, hard: dict[str, str]) -> None:
    """A ResourceQuota in `namespace` (for example {"pods": "0"})."""
    quota = {"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": name},
             "spec": {"hard": hard}}  # fmt: skip
    kube.request("POST", path("ResourceQuota", namespace), quota)


def store_credentials(kube: Kube, namespace: str, s3: S3Server) -> None:
    keys = {k: v for k, v in s3.environment().items() if k != "AWS_ENDPOINT_URL"}
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": CREDENTIALS},
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in keys.items()},
    }
    kube.request("POST", path("Secret", namespace), secret)


def model_cache_claim(kube: Kube, node: Node, namespace: str, model: Path) -> None:
    """A bound PersistentVolumeClaim holding the model, as a model cache volume would: a
    hostPath volume of the node's, readable by the trainer's user."""
    folder = node.volumes / namespace / MODEL_CLAIM
    host_path = str(folder)
    shutil.copytree(model, folder / "tiny-flux")
    for item in (folder.parent, *folder.rglob("*"), folder):
        item.chmod(0o755 if item.is_dir() else 0o644)
    volume = f"{namespace}-{MODEL_CLAIM}"
    kube.request(
        "POST",
        path("PersistentVolume"),
        {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {"name": volume},
            "spec": {
                "capacity": {"storage": "1Gi"},
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": "",
                "hostPath": {"path": host_path},
                "claimRef": {"namespace": namespace, "name": MODEL_CLAIM},
            },
        },
    )
    kube.request(
        "POST",
        path("PersistentVolumeClaim", namespace),
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": MODEL_CLAIM},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": "",
                "volumeName": volume,
                "resources": {"requests": {"storage": "1Gi"}},
            },
        },
    )


def operator_environment(
    s3: S3Server, bucket: str, tolerations: tuple[dict, ...] = ()
) -> dict[str, str]:
    """The operator settings of a local site whose trainers run on the real node (as
    `fluxlora-operator` reads them): the trainer image by its default name, progress reported
    to this machine at the host address, MinIO (`s3`, at the host address) allowed as a data
    host."""
    progress_port = free_port()
    return {
        "FLUXLORA_PROGRESS_PORT": str(progress_port),
        "FLUXLORA_PROGRESS_URL": f"http://{HOST_ADDRESS}:{progress_port}",
        "FLUXLORA_PROGRESS_SECONDS": str(PROGRESS_SECONDS),
        "FLUXLORA_DEFAULT_OUTPUT": f"s3://{bucket}/loras",
        "FLUXLORA_OUTPUT_SECRET": CREDENTIALS,
        "FLUXLORA_S3_ENDPOINT": s3.endpoint,
        "FLUXLORA_MODEL_CACHE_PVC": MODEL_CLAIM,
        "FLUXLORA_CPU_REQUEST": "1",
        "FLUXLORA_MEMORY_REQUEST": "1Gi",
        "FLUXLORA_MEMORY_LIMIT": "8Gi",
        "FLUXLORA_RESYNC_SECONDS": "2",
        "FLUXLORA_DATASET_LIMITS": json.dumps(HOST_DATA),
        "FLUXLORA_TOLERATIONS": json.dumps(list(tolerations)),
    }


def chart_values(
    s3: S3Server, bucket: str, namespaces: list[str], tolerations: tuple[dict, ...] = ()
) -> list[str]:
    """The site's settings for the chart's pods on a real node: each pod has its own network
    (the chart's default ports), the progress URL is the chart's default (cluster DNS), MinIO
    is at the host address (which trainers may reach, and webhooks may call), the gateway keeps
    uploads in `bucket`, and the node's taints are tolerated by the operator, the gateway and
    the trainers."""
    return [
        "--set", "gateway.enabled=true",
        "--set-json", "gateway.reloadSeconds=0.5",
        "--set", f"gateway.s3CredentialsSecret={CREDENTIALS}",
        "--set", f"gateway.uploadsPrefix=s3://{bucket}/uploads",
        "--set-json", f"gateway.specDefaults={json.dumps(GATEWAY_SPEC_DEFAULTS)}",
        "--set", f"watchNamespaces={{{','.join(namespaces)}}}",
        "--set", f"output.default=s3://{bucket}/loras",
        "--set", f"output.s3Endpoint={s3.endpoint}",
        "--set", f"output.credentialsSecret={CREDENTIALS}",
        "--set", f"model.cachePvc={MODEL_CLAIM}",
        "--set-json", f"progress.intervalSeconds={PROGRESS_SECONDS}",
        "--set-string", "trainer.cpuRequest=1",
        "--set", "trainer.memoryRequest=1Gi",
        "--set", "trainer.memoryLimit=8Gi",
        "--set-json", f"trainer.datasetLimits={json.dumps(HOST_DATA)}",
        "--set-json", f"webhooks.allowedNetworks={json.dumps(HOST_DATA['allowedNetworks'])}",
        "--set-json", f"tolerations={json.dumps(list(tolerations))}",
        "--set-json", f"trainer.tolerations={json.dumps(list(tolerations))}",
    ]  # fmt: skip
