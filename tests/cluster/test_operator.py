"""The operator against the real control plane: its Job is run by the real Job controller, the
real scheduler says why the pod waits, the trainer pod can report progress and nothing else, and
the real garbage collector removes everything with the resource. (No node runs pods yet.)"""

import asyncio
import json
import urllib.error
import urllib.request

import kubernetes
import pytest

from fluxlora_api import resource
from fluxlora_api.contract import PROGRESS_AUDIENCE, PROGRESS_PATH
from fluxlora_kube.client import ApiError, Kube
from fluxlora_kube.paths import path
from fluxlora_localcluster.minio import free_port
from fluxlora_localcluster.operator import embedded_operator
from fluxlora_localcluster.training_site import set_quota, submit
from fluxlora_localcluster.waiting import eventually
from fluxlora_operator import naming
from fluxlora_operator.settings import OperatorSettings
from fluxlora_operator.snapshot import StaleSnapshot
from fluxlora_operator.start.custom_resource import TrainingJobRef

pytestmark = pytest.mark.timeout(300)
SETTINGS = OperatorSettings(
    default_output="s3://loras", trainer_image="trainer:test", resync_seconds=2, progress_port=0
)


@pytest.fixture
async def operator(control_plane, cluster_admin):
    connection = control_plane.kopf_connection()
    async with embedded_operator(cluster_admin, connection, SETTINGS) as running:
        yield running


async def failed_status(kube: Kube, namespace: str) -> dict:
    return await eventually(
        lambda: (
            (s := kube.get(resource.KIND, namespace, "portrait").get("status"))
            and s.get("phase") == "failed"
            and s
        ),
        "the resource fails",
    )


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


def client_with_token(control_plane, token: str) -> Kube:
    configuration = kubernetes.client.Configuration(host=control_plane.server)
    configuration.ssl_ca_cert = str(control_plane.ca_file)
    configuration.api_key = {"BearerToken": token}
    configuration.api_key_prefix = {"BearerToken": "Bearer"}
    return Kube(kubernetes.client.ApiClient(configuration))


def create_token(control_plane, namespace: str, *flags: str) -> str:
    """`kubectl create token` for the trainer pods' account (the namespace's default)."""
    done = control_plane.kubectl("create", "token", "default", "-n", namespace, *flags)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def post_progress(url: str, token: str, body: dict) -> int:
    request = urllib.request.Request(
        url + PROGRESS_PATH,
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


async def test_the_trainer_can_report_progress_and_nothing_else(
    control_plane, cluster_admin, namespace
):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    settings = SETTINGS.model_copy(update={"progress_port": port, "progress_url": url})
    async with embedded_operator(cluster_admin, control_plane.kopf_connection(), settings):
        submit(cluster_admin, namespace)
        (trainer_pod,) = await eventually(
            lambda: cluster_admin.list_objects(
                "Pod", namespace, f"{naming.LABEL_TRAINING_JOB}=portrait"
            ),
            "the trainer pod exists",
        )
        await eventually(
            lambda: condition(cluster_admin, namespace, "Scheduled"), "the status is written"
        )
        pod_name = trainer_pod["metadata"]["name"]
        assert trainer_pod["spec"]["automountServiceAccountToken"] is False
        before = cluster_admin.get(resource.KIND, namespace, "portrait")["status"]

        # An API token of the trainer pods' account, bound to the pod: it may change nothing.
        api_token = create_token(
            control_plane, namespace, "--bound-object-kind", "Pod",
            "--bound-object-name", pod_name,
        )  # fmt: skip
        trainer = client_with_token(control_plane, api_token)
        forged = [
            {"phase": "completed"},
            {"outputs": ["s3://loras/other-team/other-1234/lora.safetensors"]},
            {"error": "forged"},
            {"conditions": []},
            {"progress": {"step": 999}},
        ]
        for status in forged:
            with pytest.raises(ApiError) as error:
                trainer.patch_status(resource.KIND, namespace, "portrait", status)
            assert error.value.status == 403
        with pytest.raises(ApiError) as error:
            trainer.get(resource.KIND, namespace, "portrait")
        assert error.value.status == 403

        # The pod's progress token: the API server refuses it, the progress endpoint takes it.
        progress_token = create_token(
            control_plane, namespace, "--audience", PROGRESS_AUDIENCE,
            "--bound-object-kind", "Pod", "--bound-object-name", pod_name,
        )  # fmt: skip
        with pytest.raises(ApiError) as error:
            client_with_token(control_plane, progress_token).get("Pod", namespace, pod_name)
        assert error.value.status == 401
        assert post_progress(url, progress_token, {"step": 7, "totalSteps": 1000}) == 204
        status = cluster_admin.get(resource.KIND, namespace, "portrait")["status"]
        assert (status["progress"]["step"], status["progress"]["totalSteps"]) == (7, 1000)
        unchanged = {k: v for k, v in status.items() if k != "progress"}
        assert unchanged == {k: v for k, v in before.items() if k != "progress"}

        # Only progress, only from a trainer pod, only with a pod-bound progress token.
        await asyncio.sleep(1.1)  # the pod's report budget refills
        for body in forged[:4]:
            assert post_progress(url, progress_token, {"step": 8, **body}) == 400
        unbound = create_token(control_plane, namespace, "--audience", PROGRESS_AUDIENCE)
        assert post_progress(url, unbound, {"step": 9}) == 401
        assert post_progress(url, api_token, {"step": 9}) == 401
        impostor = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "impostor", "labels": trainer_pod["metadata"]["labels"]},
            "spec": {"containers": [{"name": "trainer", "image": "trainer:test"}]},
        }
        cluster_admin.request("POST", path("Pod", namespace), impostor)
        impostor_token = create_token(
            control_plane, namespace, "--audience", PROGRESS_AUDIENCE,
            "--bound-object-kind", "Pod", "--bound-object-name", "impostor",
        )  # fmt: skip
        assert post_progress(url, impostor_token, {"step": 9}) == 403
        final = cluster_admin.get(resource.KIND, namespace, "portrait")["status"]
        assert final["progress"]["step"] == 7 and final["phase"] == before["phase"]


async def test_a_trainer_lists_its_stored_snapshots_whose_files_the_operator_names(
    control_plane, cluster_admin, namespace
):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    settings = SETTINGS.model_copy(update={"progress_port": port, "progress_url": url})
    async with embedded_operator(cluster_admin, control_plane.kopf_connection(), settings):
        created = submit(cluster_admin, namespace, steps=1000, saveEverySteps=250,
                         sampleEverySteps=400, samplePrompts=["a", "b"])  # fmt: skip
        (trainer_pod,) = await eventually(
            lambda: cluster_admin.list_objects(
                "Pod", namespace, f"{naming.LABEL_TRAINING_JOB}=portrait"
            ),
            "the trainer pod exists",
        )
        token = create_token(
            control_plane, namespace, "--audience", PROGRESS_AUDIENCE,
            "--bound-object-kind", "Pod", "--bound-object-name", trainer_pod["metadata"]["name"],
        )  # fmt: skip
        for step, samples in ((500, 0), (250, 0), (400, 2)):
            snapshot = {"step": step, "loss": 0.4, "samples": samples}
            report = {"step": step, "totalSteps": 1000, "snapshot": snapshot}
            assert post_progress(url, token, report) == 204
            await asyncio.sleep(1.1)  # the pod's report budget refills
        # Not a step this run saves at; more samples than prompts, or at a step that does not
        # sample; a field of its own choosing: refused.
        assert post_progress(url, token, {"step": 300, "snapshot": {"step": 300}}) == 400
        too_many = {"step": 800, "samples": 3}
        assert post_progress(url, token, {"step": 800, "snapshot": too_many}) == 400
        not_sampled = {"step": 750, "samples": 1}
        assert post_progress(url, token, {"step": 750, "snapshot": not_sampled}) == 400
        forged = {"step": 750, "files": ["s3://loras/other/lora.safetensors"]}
        assert post_progress(url, token, {"step": 750, "snapshot": forged}) == 400
        status = cluster_admin.get(resource.KIND, namespace, "portrait")["status"]
    folder = f"s3://loras/{namespace}/portrait-{created['metadata']['uid']}"
    lora = [f"{folder}/lora-step-{{:06d}}.safetensors",
            f"{folder}/lora_comfyui-step-{{:06d}}.safetensors"]  # fmt: skip
    assert status["snapshots"] == [
        {"step": 250, "loss": 0.4, "files": [name.format(250) for name in lora], "samples": []},
        {"step": 400, "loss": 0.4, "files": [], "samples": [
            f"{folder}/sample_0-step-000400.png", f"{folder}/sample_1-step-000400.png"
        ]},
        {"step": 500, "loss": 0.4, "files": [name.format(500) for name in lora], "samples": []},
    ]  # fmt: skip


async def test_deleting_the_resource_removes_its_job_and_pods(operator, cluster_admin, namespace):
    submit(cluster_admin, namespace)
    await eventually(
        lambda: cluster_admin.list_objects(
            "Pod", namespace, f"{naming.LABEL_TRAINING_JOB}=portrait"
        ),
        "a pod exists",
    )
    cluster_admin.delete(resource.KIND, namespace, "portrait")

    def all_gone() -> bool:
        job = cluster_admin.get("Job", namespace, naming.job_name("portrait"))
        pods = cluster_admin.list_objects("Pod", namespace, f"{naming.LABEL_TRAINING_JOB}=portrait")
        return job is None and not pods

    await eventually(all_gone, "the garbage collector removes the Job and pods")


async def test_a_finished_resource_never_gets_a_new_job(operator, cluster_admin, namespace):
    submit(cluster_admin, namespace)
    job_name = naming.job_name("portrait")
    await eventually(lambda: cluster_admin.get("Job", namespace, job_name), "the Job exists")
    cluster_admin.patch_status(
        resource.KIND,
        namespace,
        "portrait",
        {"phase": "completed", "outputs": ["s3://loras/x/lora.safetensors"]},
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


@pytest.mark.parametrize("reference", ["none", "not-controller"])
async def test_a_job_of_the_same_name_not_controlled_by_the_resource_is_reported_not_taken(
    control_plane, cluster_admin, namespace, reference
):
    """Anyone may add an ownerReference to a Job they create; only the controller reference
    with the resource's uid makes the Job the resource's own."""
    created = submit(cluster_admin, namespace)  # while no operator runs
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
    if reference == "not-controller":
        owner = TrainingJobRef.of(created).owner_reference()
        foreign["metadata"]["ownerReferences"] = [{**owner, "controller": False}]
    cluster_admin.request("POST", path("Job", namespace), foreign)
    async with embedded_operator(cluster_admin, control_plane.kopf_connection(), SETTINGS):
        conflict = await eventually(
            lambda: condition(cluster_admin, namespace, "JobCreated"), "the conflict is reported"
        )
    assert (conflict["status"], conflict["reason"]) == ("False", "NameConflict")
    assert "already exists and does not belong" in conflict["message"]
    job = cluster_admin.get("Job", namespace, job_name)
    assert job["metadata"].get("ownerReferences") == foreign["metadata"].get("ownerReferences")
    assert job["spec"]["template"]["spec"]["containers"][0]["name"] == "other"
    assert job["spec"]["suspend"] is True  # left as it was


async def test_without_an_output_destination_the_resource_fails_and_gets_no_job(
    control_plane, cluster_admin, namespace
):
    connection = control_plane.kopf_connection()
    settings = SETTINGS.model_copy(update={"default_output": None})
    async with embedded_operator(cluster_admin, connection, settings):
        submit(cluster_admin, namespace)
        status = await failed_status(cluster_admin, namespace)
    assert status["error"].startswith("spec.output: no output destination")
    assert cluster_admin.list_objects("Job", namespace, naming.MANAGED_SELECTOR) == []


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"tolerations": [{"key": "node-role.kubernetes.io/control-plane"}]}, "spec.tolerations"),
        ({"priorityClassName": "urgent"}, "spec.priorityClassName"),
        ({"nodeSelector": {"pool": "control-plane"}}, "spec.nodeSelector.pool"),
    ],
    ids=["toleration", "priority-class", "pinned-node-selector"],
)
async def test_scheduling_the_operator_does_not_allow_fails_the_resource_without_a_pod(
    control_plane, cluster_admin, namespace, spec, field
):
    settings = SETTINGS.model_copy(
        update={
            "node_selector": {"pool": "gpu"},
            "allowed_toleration_keys": ["nvidia.com/gpu"],
            "allowed_priority_classes": ["training-low"],
        }
    )
    async with embedded_operator(cluster_admin, control_plane.kopf_connection(), settings):
        submit(cluster_admin, namespace, **spec)
        status = await failed_status(cluster_admin, namespace)
    assert status["error"].startswith(field)
    assert "not allowed" in status["error"] or "pins it" in status["error"]
    failed = next(c for c in status["conditions"] if c["type"] == "Failed")
    assert failed["reason"] == "InvalidSpec"
    assert cluster_admin.list_objects("Job", namespace, naming.MANAGED_SELECTOR) == []


async def test_a_pod_the_quota_refuses_is_explained_in_the_status(
    operator, cluster_admin, namespace
):
    set_quota(cluster_admin, namespace, "no-pods", {"pods": "0"})
    submit(cluster_admin, namespace)
    refused = await eventually(
        lambda: (
            (c := condition(cluster_admin, namespace, "Scheduled"))
            and c["reason"] == "FailedCreate"
            and c
        ),
        "the Job's FailedCreate reason reaches the status",
        timeout=60,
    )
    assert refused["status"] == "False"
    assert "exceeded quota: no-pods" in refused["message"]
    status = cluster_admin.get(resource.KIND, namespace, "portrait")["status"]
    assert status["phase"] == "created"


async def test_a_resync_write_decided_from_an_old_listing_is_refused(
    operator, cluster_admin, namespace
):
    """The resync decides from one listing per namespace; a resource changed since then (by an
    event handled meanwhile) is not overwritten with the older decision."""
    reconciler, _ = operator
    listed = submit(cluster_admin, namespace)
    await eventually(lambda: condition(cluster_admin, namespace, "JobCreated"), "started")
    with pytest.raises(StaleSnapshot):
        reconciler._write(listed, {"trainerPod": "from-an-old-listing"}, [], from_snapshot=True)
    status = cluster_admin.get(resource.KIND, namespace, "portrait")["status"]
    assert status.get("trainerPod") != "from-an-old-listing"
