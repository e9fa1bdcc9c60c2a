"""The operator against the real control plane: its Job is run by the real Job controller, the
real scheduler says why the pod waits, real RBAC confines the trainer's identity, and the real
garbage collector removes everything with the resource. (No node runs pods yet.)"""

import asyncio

import kubernetes
import pytest

from fluxlora_api import resource
from fluxlora_operator import naming
from fluxlora_operator.kube import ApiError, Kube, path
from fluxlora_operator.settings import OperatorSettings
from tests.support.operator import embedded_operator
from tests.support.waiting import eventually

pytestmark = pytest.mark.timeout(300)
SETTINGS = OperatorSettings(
    default_output="s3://loras", trainer_image="trainer:test", resync_seconds=2
)


@pytest.fixture
async def operator(control_plane, cluster_admin):
    connection = control_plane.kopf_connection()
    async with embedded_operator(cluster_admin, connection, SETTINGS) as running:
        yield running


def submit(kube: Kube, namespace: str, name: str = "portrait") -> dict:
    body = {
        "apiVersion": resource.API_VERSION,
        "kind": resource.KIND,
        "metadata": {"name": name},
        "spec": {"data": "https://example.com/a.zip"},
    }
    return kube.request("POST", path(resource.KIND, namespace), body)


def condition(kube: Kube, namespace: str, type_: str) -> dict | None:
    status = (kube.get(resource.KIND, namespace, "portrait") or {}).get("status") or {}
    return next((c for c in status.get("conditions") or [] if c["type"] == type_), None)


async def test_without_a_free_gpu_the_resource_stays_created_and_says_why(
    operator, cluster_admin, namespace
):
    submit(cluster_admin, namespace)
    job = await eventually(
        lambda: cluster_admin.get("Job", namespace, naming.job_name("portrait")),
        "the operator creates the Job",
    )
    assert (
        job["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"]
        == "1"
    )
    pods = await eventually(
        lambda: cluster_admin.list_objects(
            "Pod", namespace, f"{naming.LABEL_TRAINING_JOB}=portrait"
        ),
        "the Job controller creates a pod",
    )
    assert pods[0]["spec"]["securityContext"]["runAsNonRoot"] is True
    scheduled = await eventually(
        lambda: condition(cluster_admin, namespace, "Scheduled"),
        "the scheduler's verdict reaches the status",
    )
    assert scheduled["status"] == "False" and scheduled["reason"] == "Unschedulable"
    assert "nodes" in scheduled["message"]
    status = cluster_admin.get(resource.KIND, namespace, "portrait")["status"]
    assert status["phase"] == "created" and status["jobName"] == naming.job_name("portrait")


async def test_the_trainer_identity_can_patch_only_its_own_status(
    operator, control_plane, cluster_admin, namespace
):
    submit(cluster_admin, namespace)
    submit(cluster_admin, namespace, name="other")
    account = naming.identity_name("portrait")
    await eventually(
        lambda: cluster_admin.get("RoleBinding", namespace, account), "the identity exists"
    )
    token = cluster_admin.request(
        "POST",
        f"/api/v1/namespaces/{namespace}/serviceaccounts/{account}/token",
        {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {"expirationSeconds": 600},
        },
    )["status"]["token"]
    configuration = kubernetes.client.Configuration(host=control_plane.server)
    configuration.ssl_ca_cert = str(control_plane.ca_file)
    configuration.api_key = {"BearerToken": token}
    configuration.api_key_prefix = {"BearerToken": "Bearer"}
    trainer = Kube(kubernetes.client.ApiClient(configuration))

    assert trainer.get(resource.KIND, namespace, "portrait")["metadata"]["name"] == "portrait"
    trainer.patch_status(namespace, "portrait", {"progress": {"step": 7, "totalSteps": 1000}})
    assert (
        cluster_admin.get(resource.KIND, namespace, "portrait")["status"]["progress"]["step"] == 7
    )
    denied = [
        lambda: trainer.get(resource.KIND, namespace, "other"),
        lambda: trainer.patch_status(namespace, "other", {"progress": {"step": 1}}),
        lambda: trainer.request(
            "PATCH",
            path(resource.KIND, namespace, "portrait"),
            {"metadata": {"labels": {"x": "y"}}},
            content_type="application/merge-patch+json",
        ),
        lambda: trainer.get("Job", namespace, naming.job_name("portrait")),
        lambda: trainer.list_objects("Pod", namespace, ""),
        lambda: trainer.request("GET", f"/api/v1/namespaces/{namespace}/secrets"),
    ]
    for attempt in denied:
        with pytest.raises(ApiError) as error:
            attempt()
        assert error.value.status == 403


async def test_deleting_the_resource_removes_its_job_pods_and_identity(
    operator, cluster_admin, namespace
):
    submit(cluster_admin, namespace)
    await eventually(
        lambda: cluster_admin.list_objects(
            "Pod", namespace, f"{naming.LABEL_TRAINING_JOB}=portrait"
        ),
        "a pod exists",
    )
    cluster_admin.delete(resource.KIND, namespace, "portrait")

    def all_gone() -> bool:
        children = [
            cluster_admin.get("Job", namespace, naming.job_name("portrait")),
            *(
                cluster_admin.get(kind, namespace, naming.identity_name("portrait"))
                for kind in ("ServiceAccount", "Role", "RoleBinding")
            ),
        ]
        pods = cluster_admin.list_objects("Pod", namespace, f"{naming.LABEL_TRAINING_JOB}=portrait")
        return not any(children) and not pods

    await eventually(all_gone, "the garbage collector removes the Job, pods and identity")


async def test_a_finished_resource_never_gets_a_new_job(operator, cluster_admin, namespace):
    submit(cluster_admin, namespace)
    job_name = naming.job_name("portrait")
    await eventually(lambda: cluster_admin.get("Job", namespace, job_name), "the Job exists")
    cluster_admin.patch_status(
        namespace, "portrait", {"phase": "completed", "outputs": ["s3://loras/x/lora.safetensors"]}
    )
    cluster_admin.delete("Job", namespace, job_name)
    await eventually(
        lambda: cluster_admin.get("Job", namespace, job_name) is None, "the Job is deleted"
    )
    await asyncio.sleep(SETTINGS.resync_seconds * 3)  # resync rounds and Job/pod events pass
    assert cluster_admin.get("Job", namespace, job_name) is None
    assert cluster_admin.get(resource.KIND, namespace, "portrait")["status"]["phase"] == "completed"


async def test_a_queued_resource_waits_suspended_until_its_job_is_admitted(
    operator, cluster_admin, namespace
):
    body = {
        "apiVersion": resource.API_VERSION,
        "kind": resource.KIND,
        "metadata": {"name": "portrait"},
        "spec": {"data": "https://example.com/a.zip", "queueName": "gpu-queue"},
    }
    cluster_admin.request("POST", path(resource.KIND, namespace), body)
    job_name = naming.job_name("portrait")
    queued = await eventually(
        lambda: condition(cluster_admin, namespace, "Queued"), "the resource says it is queued"
    )
    assert (queued["status"], queued["reason"]) == ("True", "WaitingForAdmission")
    job = cluster_admin.get("Job", namespace, job_name)
    assert job["spec"]["suspend"] is True
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "gpu-queue"
    await asyncio.sleep(SETTINGS.resync_seconds * 2)
    assert (
        cluster_admin.list_objects("Pod", namespace, f"{naming.LABEL_TRAINING_JOB}=portrait") == []
    )
    assert cluster_admin.get("Job", namespace, job_name)["spec"]["suspend"] is True  # not by us

    cluster_admin.request(  # what Kueue does when it admits the Job
        "PATCH",
        path("Job", namespace, job_name),
        {"spec": {"suspend": False}},
        content_type="application/merge-patch+json",
    )
    await eventually(
        lambda: cluster_admin.list_objects(
            "Pod", namespace, f"{naming.LABEL_TRAINING_JOB}=portrait"
        ),
        "the admitted Job starts a pod",
    )
    admitted = await eventually(
        lambda: (
            (c := condition(cluster_admin, namespace, "Queued")) and c["status"] == "False" and c
        ),
        "the resource says it was admitted",
    )
    assert admitted["reason"] == "Admitted"


async def test_an_operator_restarted_mid_flight_adopts_the_job_it_made(
    control_plane, cluster_admin, namespace
):
    connection = control_plane.kopf_connection()
    job_name = naming.job_name("portrait")
    async with embedded_operator(cluster_admin, connection, SETTINGS):
        submit(cluster_admin, namespace)
        first = await eventually(lambda: cluster_admin.get("Job", namespace, job_name), "a Job")
    # The operator is gone; it comes back and resumes every resource.
    async with embedded_operator(cluster_admin, connection, SETTINGS):
        await eventually(
            lambda: condition(cluster_admin, namespace, "Scheduled"), "the status converges"
        )
        jobs = cluster_admin.list_objects("Job", namespace, naming.MANAGED_SELECTOR)
    assert [j["metadata"]["uid"] for j in jobs] == [first["metadata"]["uid"]]


async def test_a_job_of_the_same_name_owned_by_someone_else_is_reported_not_taken(
    operator, cluster_admin, namespace
):
    job_name = naming.job_name("portrait")
    foreign = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": job_name},
        "spec": {
            "suspend": True,  # someone else's, never run here
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "other", "image": "other:1"}],
                }
            },
        },
    }
    cluster_admin.request("POST", path("Job", namespace), foreign)
    submit(cluster_admin, namespace)
    conflict = await eventually(
        lambda: condition(cluster_admin, namespace, "JobCreated"), "the conflict is reported"
    )
    assert (conflict["status"], conflict["reason"]) == ("False", "NameConflict")
    assert "already exists and does not belong" in conflict["message"]
    job = cluster_admin.get("Job", namespace, job_name)
    assert "ownerReferences" not in job["metadata"]  # left as it was
    assert job["spec"]["template"]["spec"]["containers"][0]["name"] == "other"


async def test_without_an_output_destination_the_resource_fails_and_gets_no_job(
    control_plane, cluster_admin, namespace
):
    connection = control_plane.kopf_connection()
    settings = SETTINGS.model_copy(update={"default_output": None})
    async with embedded_operator(cluster_admin, connection, settings):
        submit(cluster_admin, namespace)
        status = await eventually(
            lambda: (
                (s := cluster_admin.get(resource.KIND, namespace, "portrait").get("status"))
                and s.get("phase") == "failed"
                and s
            ),
            "the resource fails",
        )
    assert status["error"].startswith("spec.output: no output destination")
    assert cluster_admin.list_objects("Job", namespace, naming.MANAGED_SELECTOR) == []
