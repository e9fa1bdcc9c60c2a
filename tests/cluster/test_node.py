"""The real node: a kubelet and containerd run the project's images, as a cluster would."""

import json
import time
import urllib.request
import uuid

import pytest

from fluxlora_api import resource
from fluxlora_gateway.hosted import RESULT_PATH, SUBMIT_PATH
from fluxlora_gateway.keys import new_key
from fluxlora_operator import naming
from fluxlora_operator.kube import Kube
from tests.cluster.conftest import REAL_NODE_TOLERATION
from tests.support.control_plane import ControlPlane
from tests.support.gateway_client import GatewayClient
from tests.support.helm import CHART, helm
from tests.support.minio import S3Server
from tests.support.node import Node
from tests.support.training_site import (
    RESTRICTED,
    create_namespace,
    model_cache_claim,
    real_node_chart_values,
    store_credentials,
)
from tests.support.waiting import eventually
from tests.trainer.datasets import make_zip, photos

pytestmark = pytest.mark.timeout(600)

OPERATOR_IMAGE = "flux-lora-operator:0.1.0"
TRAINER_IMAGE = "flux-lora-trainer:0.1.0"
# What the restricted Pod Security profile demands, as the operator's Jobs set it.
RESTRICTED_CONTAINER = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "runAsNonRoot": True,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


def _pod(name: str, image: str, command: list[str] | None, args: list[str]) -> dict:
    container = {"name": "main", "image": image, "args": args}
    if command:
        container["command"] = command
    container["securityContext"] = RESTRICTED_CONTAINER
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "restartPolicy": "Never",
            "tolerations": [REAL_NODE_TOLERATION],
            "nodeSelector": {"kubernetes.io/hostname": "gpu-node-2"},
            "containers": [container],
        },
    }


def _finished(kube: Kube, namespace: str, name: str, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pod = kube.get("Pod", namespace, name)
        if pod and pod["status"].get("phase") in ("Succeeded", "Failed"):
            return pod
        time.sleep(0.5)
    raise AssertionError(f"pod {name} did not finish within {timeout} s: {pod}")


@pytest.fixture
def restricted_namespace(cluster_admin: Kube, namespace: str) -> str:
    cluster_admin.request(
        "PATCH",
        f"/api/v1/namespaces/{namespace}",
        {"metadata": {"labels": RESTRICTED}},
        content_type="application/merge-patch+json",
    )
    return namespace


@pytest.mark.parametrize(
    ("image", "program", "user"),
    [(OPERATOR_IMAGE, "fluxlora-operator", 65532), (TRAINER_IMAGE, "fluxlora-trainer", 1000)],
)
def test_each_image_runs_its_program_as_its_non_root_user_under_restricted_pod_security(
    real_node: Node,
    control_plane: ControlPlane,
    cluster_admin: Kube,
    restricted_namespace: str,
    image: str,
    program: str,
    user: int,
):
    namespace = restricted_namespace
    check = (
        "import os, shutil, importlib.util as u; print(json.dumps({'uid': os.getuid(), "
        "'program': shutil.which(sys.argv[1]), 'compilers': [c for c in ('gcc', 'cc', 'g++', "
        "'clang') if shutil.which(c)], 'test_tools': [m for m in ('pytest', 'kmock', 'ruff') "
        "if u.find_spec(m)]}))"
    )
    cluster_admin.request(
        "POST",
        f"/api/v1/namespaces/{namespace}/pods",
        _pod("inside", image, ["python3", "-c", f"import json, sys; {check}"], [program]),
    )
    cluster_admin.request(
        "POST", f"/api/v1/namespaces/{namespace}/pods", _pod("help", image, None, ["--help"])
    )

    inside = _finished(cluster_admin, namespace, "inside")
    assert inside["status"]["phase"] == "Succeeded", inside["status"]
    found = json.loads(control_plane.kubectl("logs", "-n", namespace, "inside").stdout)
    assert found["uid"] == user
    assert found["program"] == f"/opt/venv/bin/{program}"
    assert found["compilers"] == [] and found["test_tools"] == []

    # The image's own entrypoint, with only the pod's args.
    helped = _finished(cluster_admin, namespace, "help")
    assert helped["status"]["phase"] == "Succeeded", helped["status"]
    logs = control_plane.kubectl("logs", "-n", namespace, "help")
    assert logs.returncode == 0 and f"usage: {program}" in logs.stdout


def test_a_crashing_container_is_restarted_in_place_with_back_off(
    real_node: Node, control_plane: ControlPlane, cluster_admin: Kube, namespace: str
):
    """A Deployment's failing container restarts in its pod (CrashLoopBackOff); its
    ReplicaSet makes no new pods (the stand-in node made 380 in four minutes)."""
    pod = _pod("crash", OPERATOR_IMAGE, ["python3", "-c", "print('down'); raise SystemExit(3)"], [])
    template = {
        "metadata": {"labels": {"app": "crash"}},
        "spec": pod["spec"] | {"restartPolicy": "Always"},
    }
    cluster_admin.request(
        "POST",
        f"/apis/apps/v1/namespaces/{namespace}/deployments",
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "crash"},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": "crash"}},
                "template": template,
            },
        },
    )

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        pods = cluster_admin.request("GET", f"/api/v1/namespaces/{namespace}/pods")["items"]
        statuses = [s for p in pods for s in p["status"].get("containerStatuses", [])]
        if statuses and statuses[0]["restartCount"] >= 2:
            break
        time.sleep(1)
    else:
        raise AssertionError(f"no second restart within 120 s: {pods}")

    assert len(pods) == 1 and pods[0]["status"]["phase"] == "Running"
    last = statuses[0]["lastState"]["terminated"]
    assert last["exitCode"] == 3
    state = statuses[0]["state"]  # running again, just ended, or backing off: nothing else
    assert state.get("waiting", {}).get("reason", "CrashLoopBackOff") == "CrashLoopBackOff"
    # The last ended run's output (asked again if a restart replaced that run meanwhile).
    for _ in range(20):
        logs = control_plane.kubectl(
            "logs", "-n", namespace, pods[0]["metadata"]["name"], "--previous"
        )
        if logs.returncode == 0 and "unable to retrieve" not in logs.stdout:
            break
        time.sleep(0.5)
    assert logs.stdout.strip() == "down"


async def test_the_chart_trains_a_lora_with_both_images_on_the_real_node(
    real_node: Node,
    control_plane: ControlPlane,
    cluster_admin: Kube,
    namespace: str,
    tiny_model,
    host_s3: S3Server,
    tmp_path,
):
    """`helm install` as a user does it: the operator and the gateway run from the operator
    image, the trainer from the trainer image, as their non-root users under restricted Pod
    Security, reaching the API server through the kubernetes Service and the operator's
    progress endpoint by its cluster DNS name."""
    kube, plane = cluster_admin, control_plane
    store_credentials(kube, namespace, host_s3)
    model_cache_claim(kube, real_node, namespace, tiny_model)
    bucket = f"node-{uuid.uuid4().hex[:8]}"
    host_s3.client().create_bucket(Bucket=bucket)
    host_s3.client().upload_file(str(make_zip(tmp_path / "d.zip", photos(3))), bucket, "p.zip")
    release_namespace = f"{namespace}-ops"
    create_namespace(kube, release_namespace, RESTRICTED)
    kube.request(
        "PATCH", f"/api/v1/namespaces/{namespace}", {"metadata": {"labels": RESTRICTED}},
        content_type="application/merge-patch+json",
    )  # fmt: skip
    store_credentials(kube, release_namespace, host_s3)  # for the gateway
    values = real_node_chart_values(host_s3, bucket, [namespace], REAL_NODE_TOLERATION)
    installed = helm(
        "install", "fluxlora", str(CHART), "--namespace", release_namespace,
        "--wait", "--timeout", "180s", *values, kubeconfig=plane.kubeconfig,
    )  # fmt: skip
    assert installed.returncode == 0, installed.stderr
    try:
        (operator_pod,) = kube.list_objects(
            "Pod", release_namespace, "app.kubernetes.io/component=operator"
        )
        (gateway_pod,) = kube.list_objects(
            "Pod", release_namespace, "app.kubernetes.io/component=gateway"
        )
        assert operator_pod["spec"]["nodeName"] == gateway_pod["spec"]["nodeName"] == "gpu-node-2"
        port = gateway_pod["spec"]["containers"][0]["ports"][0]["containerPort"]
        # This machine routes to the node's pod range (node_network.py).
        gateway = GatewayClient(
            f"http://{gateway_pod['status']['podIP']}:{port}", kube, release_namespace
        )
        key = new_key()
        gateway.set_keys(team=(key, namespace))
        assert gateway.ready()

        request = json.dumps({"data": f"s3://{bucket}/p.zip", "steps": 500}).encode()
        status, submitted = gateway.call("POST", SUBMIT_PATH, key, request)
        assert status == 200, submitted
        result_path = RESULT_PATH.format(id=submitted["data"]["id"])

        def final() -> dict | None:
            data = gateway.call("GET", result_path, key)[1]["data"]
            return data if data["status"] in ("completed", "failed") else None

        data = await eventually(final, "the run on the real node finishes", timeout=400)
        assert data["status"] == "completed", data["error"]
        (run,) = kube.list_objects(resource.KIND, namespace, "")
        assert run["status"]["progress"]["step"] == 500  # reported to the operator by DNS name
        with urllib.request.urlopen(
            urllib.request.Request(data["outputs"][0], headers={"Authorization": f"Bearer {key}"})
        ) as download:
            assert download.read(4096)

        # The trainer ran in its image, as its user, with the Job's CPU request as threads.
        job = naming.job_name(run["metadata"]["name"])
        (trainer_pod,) = kube.list_objects("Pod", namespace, f"job-name={job}")
        assert trainer_pod["spec"]["nodeName"] == "gpu-node-2"
        (trainer,) = trainer_pod["status"]["containerStatuses"]
        assert trainer["image"].endswith("flux-lora-trainer:0.1.0")
        assert trainer["state"]["terminated"]["exitCode"] == 0
        trainer_log = plane.kubectl("logs", "-n", namespace, f"job/{job}").stdout
        assert "CPU threads: 1" in trainer_log
        operator_log = plane.kubectl(
            "logs", "-n", release_namespace, operator_pod["metadata"]["name"]
        ).stdout
        assert "Forbidden" not in operator_log and "kopf" in operator_log
    finally:
        uninstalled = helm(
            "uninstall", "fluxlora", "--namespace", release_namespace, "--wait",
            kubeconfig=plane.kubeconfig,
        )  # fmt: skip
        kube.request("DELETE", f"/api/v1/namespaces/{release_namespace}")
    assert uninstalled.returncode == 0, uninstalled.stderr
