"""The whole life on the real control plane: the operator's Job runs the real trainer (tiny FLUX
model, on the node agent) on a dataset in MinIO, and the resource goes created -> processing ->
completed with outputs that exist in MinIO."""

import base64
import shutil
import uuid
from pathlib import Path

import kopf
import pytest

from fluxlora_api import resource
from fluxlora_operator.kube import path
from fluxlora_operator.settings import OperatorSettings
from tests.support.binaries import CACHE
from tests.support.node_agent import NodeAgent
from tests.support.operator import embedded_operator
from tests.support.waiting import eventually
from tests.trainer.datasets import make_zip, photos

pytestmark = pytest.mark.timeout(600)
MODEL_CLAIM = "model-cache"
CREDENTIALS = "s3-credentials"


@pytest.fixture
def node(control_plane, cluster_admin, tiny_model):
    # Outside /tmp: the pods get their own /tmp, which would hide the agent's folders.
    workdir = CACHE / "node-agent" / uuid.uuid4().hex[:8]
    agent = NodeAgent(
        cluster_admin, "gpu-node-1", workdir, control_plane.server, control_plane.ca_file
    )
    agent.start()
    yield agent
    agent.stop()
    shutil.rmtree(workdir, ignore_errors=True)


def model_cache_claim(kube, agent: NodeAgent, namespace: str, model: Path) -> None:
    """A bound PersistentVolumeClaim holding the model, as a model cache volume would."""
    shutil.copytree(model, agent.workdir / "claims" / namespace / MODEL_CLAIM / "tiny-flux")
    volume = f"{namespace}-{MODEL_CLAIM}"
    kube.request(
        "POST",
        "/api/v1/persistentvolumes",
        {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {"name": volume},
            "spec": {
                "capacity": {"storage": "1Gi"},
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": "",
                "hostPath": {"path": f"/models/{namespace}"},
                "claimRef": {"namespace": namespace, "name": MODEL_CLAIM},
            },
        },
    )
    kube.request(
        "POST",
        f"/api/v1/namespaces/{namespace}/persistentvolumeclaims",
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


async def test_a_resource_trains_to_completed_with_outputs_in_minio(
    control_plane, cluster_admin, namespace, node, tiny_model, s3_server, tmp_path
):
    bucket = f"e2e-{uuid.uuid4().hex[:8]}"
    s3 = s3_server.client()
    s3.create_bucket(Bucket=bucket)
    s3.upload_file(str(make_zip(tmp_path / "d.zip", photos(4))), bucket, "data/portrait.zip")
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": CREDENTIALS},
        "data": {
            key: base64.b64encode(value.encode()).decode()
            for key, value in s3_server.environment().items()
            if key.startswith("AWS_") and key != "AWS_ENDPOINT_URL"
        },
    }
    cluster_admin.request("POST", f"/api/v1/namespaces/{namespace}/secrets", secret)
    model_cache_claim(cluster_admin, node, namespace, tiny_model)
    settings = OperatorSettings(
        trainer_image="flux-lora-trainer:test",
        default_output=f"s3://{bucket}/loras",
        output_secret=CREDENTIALS,
        s3_endpoint=s3_server.endpoint,
        model_cache_pvc=MODEL_CLAIM,
        cpu_request="1",
        memory_request="1Gi",
        memory_limit="8Gi",
        resync_seconds=2,
    )
    connection = kopf.ConnectionInfo(
        server=control_plane.server,
        ca_path=str(control_plane.ca_file),
        token=control_plane.admin_token,
        scheme="Bearer",
    )
    body = {
        "apiVersion": resource.API_VERSION,
        "kind": resource.KIND,
        "metadata": {"name": "portrait"},
        "spec": {
            "data": f"s3://{bucket}/data/portrait.zip",
            "baseModel": "/models/tiny-flux",
            "steps": 500,
            "resolution": 256,
            "checkpointEverySteps": 0,
        },
    }

    def status() -> dict:
        return (cluster_admin.get(resource.KIND, namespace, "portrait") or {}).get("status") or {}

    async with embedded_operator(cluster_admin, connection, settings):
        cluster_admin.request("POST", path(resource.KIND, namespace), body)
        await eventually(lambda: status().get("phase") == "processing", "processing", timeout=120)
        await eventually(
            lambda: (status().get("progress") or {}).get("step"), "progress", timeout=120
        )
        final = await eventually(
            lambda: status().get("phase") in ("completed", "failed") and status(),
            "the end",
            timeout=400,
        )
    assert final["phase"] == "completed", final.get("error")
    assert (
        final["outputs"][0]
        == f"s3://{bucket}/loras/{namespace}/portrait-{final['id']}/lora.safetensors"
    )
    assert final["timings"]["inference"] > 0
    assert final["progress"]["step"] == 500
    for url in final["outputs"]:
        key = url.removeprefix(f"s3://{bucket}/")
        assert s3.head_object(Bucket=bucket, Key=key)["ContentLength"] > 0
