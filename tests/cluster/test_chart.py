"""The Helm chart on the real control plane: every documented variant is accepted by the API
server, and `helm install` gives an operator and a gateway that train a LoRA end to end as the
chart's Deployment pods on the real node, from the images, under the chart's ServiceAccounts (so
a missing RBAC rule fails the run)."""

import json
import urllib.request
import uuid

import pytest
import wavespeed

from fluxlora_api import resource
from fluxlora_api.prediction import RESULT_PATH
from fluxlora_gateway.dataset_check import INSPECT_PATH
from fluxlora_gateway.hosted import SUBMIT_PATH
from fluxlora_gateway.keys import new_key
from fluxlora_kube.paths import path
from fluxlora_localcluster.datasets import make_zip, photos
from fluxlora_localcluster.gateway_client import GatewayClient
from fluxlora_localcluster.helm import CHART, helm, render, uninstall
from fluxlora_localcluster.training_site import (
    RESTRICTED,
    chart_values,
    create_namespace,
    model_cache_claim,
    store_credentials,
)
from fluxlora_localcluster.waiting import eventually
from fluxlora_operator import naming
from fluxlora_operator.settings import OPERATOR_VERSION
from tests.cluster.conftest import REAL_NODE_TOLERATION

pytestmark = pytest.mark.timeout(600)

VARIANTS = {
    "defaults": [],
    "namespaced RBAC": ["watchNamespaces={NS}"],
    "PVC output": ["output.pvc=lora-outputs", "output.default=/output/loras"],
    "Kueue default": ["kueue.defaultQueue=gpu-queue"],
    "peering": ["peering.enabled=true", "replicaCount=2"],
    "namespaced peering": ["peering.enabled=true", "replicaCount=2", "watchNamespaces={NS}"],
    "gateway": ["gateway.enabled=true", "gateway.specDefaults.resolution=512"],
    "namespaced gateway with ingress": [
        "gateway.enabled=true",
        "watchNamespaces={NS}",
        "gateway.ingress.enabled=true",
        "gateway.ingress.host=loras.example.com",
        "gateway.ingress.tlsSecret=loras-tls",
        "gateway.s3CredentialsSecret=s3-credentials",
    ],
    "everything set": [
        "trainer.image=registry.example/trainer:1",
        "trainer.imagePullSecrets={pull}",
        "trainer.tolerations[0].key=nvidia.com/gpu",
        "trainer.tolerations[0].operator=Exists",
        "trainer.allowedTolerationKeys={spot}",
        "trainer.allowedPriorityClasses={training-low}",
        "trainer.networkPolicy.namespaces={NS}",
        "trainer.networkPolicy.extraEgress[0].to[0].ipBlock.cidr=10.0.0.9/32",
        "trainer.runtimeClassName=nvidia",
        "model.cachePvc=hf-cache",
        "model.hfTokenSecret=hf-token",
        "imagePullSecrets={pull}",
        "affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution"
        ".nodeSelectorTerms[0].matchExpressions[0].key=role",
        "affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution"
        ".nodeSelectorTerms[0].matchExpressions[0].operator=Exists",
    ],
}


@pytest.fixture(scope="module")
def peering_crds(control_plane):
    applied = control_plane.kubectl("apply", "-f", str(CHART / "crds" / "kopf-peering.yaml"))
    assert applied.returncode == 0, applied.stderr


@pytest.mark.parametrize("variant", VARIANTS)
def test_each_documented_variant_is_accepted_by_the_api_server(
    control_plane, cluster_admin, namespace, peering_crds, tmp_path, variant
):
    release_namespace = f"{namespace}-ops"
    create_namespace(cluster_admin, release_namespace)
    values = [v.replace("{NS}", "{" + namespace + "}") for v in VARIANTS[variant]]
    manifest = tmp_path / "rendered.yaml"
    manifest.write_text(render(*values).replace("fluxlora-system", release_namespace))
    result = control_plane.kubectl("apply", "--dry-run=server", "-f", str(manifest))
    cluster_admin.request("DELETE", path("Namespace", name=release_namespace))
    assert result.returncode == 0, result.stderr
    assert "deployment.apps/fluxlora-flux-lora-operator created (server dry run)" in result.stdout


def pod_log(plane, pod: dict) -> str:
    namespace, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
    done = plane.kubectl("logs", "-n", namespace, name)
    assert done.returncode == 0, done.stderr
    return done.stdout


def can_i(control_plane, account: str, *question: str) -> str:
    answer = control_plane.kubectl("auth", "can-i", *question, "--as", account)
    return answer.stdout.strip()


async def test_helm_install_runs_the_operator_that_trains_upgrades_and_uninstalls(
    control_plane, cluster_admin, namespace, real_node, tiny_model, host_s3, tmp_path
):
    """`helm install` as a user does it, on the real node: the operator and the gateway run
    from the operator image, the trainer from the trainer image, as their non-root users under
    restricted Pod Security, reaching the API server through the kubernetes Service and the
    operator's progress endpoint by its cluster DNS name."""
    # The training namespace, as the chart's NOTES describe it.
    store_credentials(cluster_admin, namespace, host_s3)
    model_cache_claim(cluster_admin, real_node, namespace, tiny_model)
    bucket = f"chart-{uuid.uuid4().hex[:8]}"
    host_s3.client().create_bucket(Bucket=bucket)
    release_namespace = f"{namespace}-ops"
    # Both the operator's and the trainer's pods must pass the restricted Pod Security profile.
    create_namespace(cluster_admin, release_namespace, RESTRICTED)
    cluster_admin.request(
        "PATCH",
        path("Namespace", name=namespace),
        {"metadata": {"labels": RESTRICTED}},
        content_type="application/merge-patch+json",
    )
    store_credentials(cluster_admin, release_namespace, host_s3)  # for the gateway
    values = chart_values(host_s3, bucket, [namespace], (REAL_NODE_TOLERATION,))
    kube, plane = cluster_admin, control_plane
    installed = helm(
        "install", "fluxlora", str(CHART), "--namespace", release_namespace,
        "--wait", "--timeout", "180s", *values,
        kubeconfig=plane.kubeconfig,
    )  # fmt: skip
    assert installed.returncode == 0, installed.stderr
    assert "kubectl -n loras get ltj -w" in installed.stdout  # NOTES tell what to do next
    account = f"system:serviceaccount:{release_namespace}:fluxlora-flux-lora-operator"
    gateway_account = f"{account}-gateway"
    (operator_pod,) = kube.list_objects(
        "Pod", release_namespace, "app.kubernetes.io/component=operator"
    )
    assert operator_pod["spec"]["serviceAccountName"] == "fluxlora-flux-lora-operator"
    (gateway_pod,) = kube.list_objects(
        "Pod", release_namespace, "app.kubernetes.io/component=gateway"
    )
    assert operator_pod["spec"]["nodeName"] == gateway_pod["spec"]["nodeName"] == real_node.name
    port = gateway_pod["spec"]["containers"][0]["ports"][0]["containerPort"]
    # This machine routes to the node's pod range (node_network.py).
    gateway = GatewayClient(
        f"http://{gateway_pod['status']['podIP']}:{port}", kube, release_namespace
    )
    key = new_key()
    gateway.set_keys(team=(key, namespace))
    assert gateway.ready()
    # The image holds the web page (package data), served with its security headers.
    with urllib.request.urlopen(f"{gateway.url}/ui/") as page:
        assert "default-src 'self'" in page.headers["Content-Security-Policy"]
        assert b'src="/ui/static/app.js"' in page.read()
    with urllib.request.urlopen(f"{gateway.url}/ui/static/vendor/uPlot.iife.min.js") as script:
        assert script.status == 200 and len(script.read()) > 10_000

    try:
        # A hosted-API client uploads its dataset with the platform's SDK and submits it
        # through the chart's gateway; the trainer pod fetches the upload from S3 itself.
        sdk = wavespeed.Client(api_key=key, base_url=gateway.url, max_retries=0)
        uploaded = sdk.upload(str(make_zip(tmp_path / "portrait.zip", photos(3))))
        # The image checks it by the trainer's rules (its dataset modules and Pillow are there).
        check = json.dumps({"data": uploaded}).encode()
        status, checked = gateway.call("POST", INSPECT_PATH, key, check)
        assert status == 200 and len(checked["data"]["images"]) == 3, checked
        request = json.dumps({"data": uploaded, "steps": 500}).encode()
        status, submitted = gateway.call("POST", SUBMIT_PATH, key, request)
        assert status == 200, submitted
        result_path = RESULT_PATH.format(id=submitted["data"]["id"])

        def final() -> dict | None:
            data = gateway.call("GET", result_path, key)[1]["data"]
            return data if data["status"] in ("completed", "failed") else None

        data = await eventually(final, "the chart's operator finishes the run", timeout=400)
        assert data["status"] == "completed", data["error"]
        (run,) = kube.list_objects(resource.KIND, namespace, "")
        assert run["status"]["progress"]["step"] == 500  # reported to the operator by DNS name
        with urllib.request.urlopen(
            urllib.request.Request(data["outputs"][0], headers={"Authorization": f"Bearer {key}"})
        ) as download:
            assert download.read(4096)  # the LoRA streams from MinIO through the gateway

        # A second prediction, deleted through the chart's gateway (its rights allow it).
        status, second = gateway.call("POST", SUBMIT_PATH, key, request)
        assert status == 200, second
        prediction_path = f"/api/v3/predictions/{second['data']['id']}"
        status, deleted = gateway.call("DELETE", prediction_path, key)
        assert (status, deleted["data"]["status"]) == (200, "deleted"), deleted
        assert gateway.call("GET", prediction_path, key)[0] == 404

        # The trainer ran in its image, as its user, with the Job's CPU request as threads.
        job = naming.job_name(run["metadata"]["name"])
        (trainer_pod,) = kube.list_objects("Pod", namespace, f"job-name={job}")
        assert trainer_pod["spec"]["nodeName"] == real_node.name
        (trainer,) = trainer_pod["status"]["containerStatuses"]
        assert trainer["image"].endswith(f"flux-lora-trainer:{OPERATOR_VERSION}")
        assert trainer["state"]["terminated"]["exitCode"] == 0
        assert "CPU threads: 1" in plane.kubectl("logs", "-n", namespace, f"job/{job}").stdout

        # The operator never ran into a missing right (kopf retries those quietly).
        log = pod_log(plane, operator_pod)
        assert "Forbidden" not in log and "kopf" in log
        log = pod_log(plane, gateway_pod)
        assert "Kubernetes API error" not in log and "POST /api/v3/" in log
        assert key not in log

        # The gateway makes the namespace's webhook secret; the admission policy lets the
        # operator and the gateway create that Secret and no other.
        status, answer = gateway.call("GET", "/api/v3/webhook/secret", key)
        assert status == 200 and answer["data"]["secret"].startswith("whsec_"), answer
        for who in (account, gateway_account):
            refused = plane.kubectl("create", "secret", "generic", "not-a-webhook-secret",
                                    "-n", namespace, "--as", who)  # fmt: skip
            assert refused.returncode != 0
            assert "may write only the Opaque Secret fluxlora-webhook" in refused.stderr
            assert can_i(plane, who, "get", "secrets/fluxlora-webhook", "-n", namespace) == "yes"

        # What the operator's ServiceAccount may not do.
        assert can_i(plane, account, "create", "jobs", "-n", namespace) == "yes"
        assert can_i(plane, account, "get", "secrets", "-n", namespace) == "no"
        # Finished runs go after their ttlSecondsAfterFinished.
        assert can_i(plane, account, "delete", "loratrainingjobs", "-n", namespace) == "yes"
        assert can_i(plane, account, "delete", "pods", "-n", namespace) == "no"
        assert can_i(plane, account, "create", "deployments", "-n", namespace) == "no"
        assert can_i(plane, account, "list", "loratrainingjobs", "--all-namespaces") == "no"
        assert can_i(plane, account, "create", "jobs", "-n", "default") == "no"
        assert can_i(plane, account, "create", "clusterroles") == "no"
        assert can_i(plane, account, "create", "tokenreviews") == "yes"  # its one cluster right
        for kind in ("serviceaccounts", "roles", "rolebindings"):
            assert can_i(plane, account, "create", kind, "-n", namespace) == "no"
        # And what the gateway's may not: anything but submitting, reading and deleting
        # predictions, and reading its keys.
        ns = ["-n", namespace]
        assert can_i(plane, gateway_account, "create", "loratrainingjobs", *ns) == "yes"
        assert can_i(plane, gateway_account, "delete", "loratrainingjobs", *ns) == "yes"
        assert can_i(plane, gateway_account, "delete", "jobs", *ns) == "no"
        assert can_i(plane, gateway_account, "update", "loratrainingjobs", *ns) == "no"
        assert can_i(plane, gateway_account, "patch", "loratrainingjobs/status", *ns) == "no"
        assert can_i(plane, gateway_account, "list", "pods", *ns) == "no"
        assert can_i(plane, gateway_account, "get", "secrets", *ns) == "no"
        keys = ["secrets/fluxlora-gateway-keys", "-n", release_namespace]
        assert can_i(plane, gateway_account, "get", *keys) == "yes"
        credentials = ["secrets/s3-credentials", "-n", release_namespace]
        assert can_i(plane, gateway_account, "get", *credentials) == "no"
        assert can_i(plane, gateway_account, "create", "loratrainingjobs", "-n", "default") == "no"

        # An upgrade with changed values rolls the operator (Recreate: the old pod goes first).
        upgraded = helm(
            "upgrade", "fluxlora", str(CHART), "--namespace", release_namespace,
            "--wait", "--timeout", "180s", *values, "--set", "logLevel=DEBUG",
            kubeconfig=plane.kubeconfig,
        )  # fmt: skip
        assert upgraded.returncode == 0, upgraded.stderr

        def rolled() -> dict | None:
            pods = kube.list_objects(
                "Pod", release_namespace, "app.kubernetes.io/component=operator"
            )
            live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
            if len(pods) == 1 and live and live[0]["status"].get("phase") == "Running":
                return live[0]
            return None

        new_pod = await eventually(rolled, "one new operator pod runs", timeout=120)
        assert new_pod["metadata"]["uid"] != operator_pod["metadata"]["uid"]
        env = {e["name"]: e.get("value") for e in new_pod["spec"]["containers"][0]["env"]}
        assert env["FLUXLORA_LOG_LEVEL"] == "DEBUG"
    finally:
        uninstalled = uninstall(kube, plane.kubeconfig, release_namespace)
    assert uninstalled.returncode == 0, uninstalled.stderr
    # Helm leaves the CRD and the users' resources (and their outputs) in place.
    (item,) = kube.list_objects(resource.KIND, namespace, "")
    assert item["status"]["phase"] == "completed"
    crd_name = f"{resource.PLURAL}.{resource.GROUP}"
    crd = kube.request("GET", path("CustomResourceDefinition", name=crd_name))
    assert crd["metadata"]["name"] == crd_name
    assert kube.get("Job", namespace, naming.job_name(item["metadata"]["name"])) is not None
