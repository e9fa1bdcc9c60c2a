"""Runs under real Kueue (its manager built from its Go module, its CRDs and admission webhooks
installed from the same module) on the real control plane and the real node's one GPU: a queued
run waits until Kueue admits it; a higher-priority run preempts a running one, which checkpoints
on the SIGTERM and later resumes with no step lost; spec.suspend and Kueue's own suspension never
fight."""

import json

import pytest

from fluxlora_kube.paths import path
from fluxlora_localcluster.datasets import make_zip, photos
from fluxlora_localcluster.kueue import apply_objects, running_kueue
from fluxlora_localcluster.waiting import eventually
from fluxlora_operator import naming
from tests.cluster.conftest import INTERRUPTED_RUN_STEPS

pytestmark = pytest.mark.timeout(900)

QUEUE = "gpu-queue"
LOW, HIGH = "training-low", "training-high"
QUEUED = pytest.mark.operator_env(FLUXLORA_ALLOWED_PRIORITY_CLASSES=f"{LOW},{HIGH}")


@pytest.fixture(scope="module")
def kueue(control_plane, cluster_admin, tmp_path_factory):
    """Kueue with one ClusterQueue holding the real node's GPU (preempting lower priorities
    within it), and two PriorityClasses."""
    workdir = tmp_path_factory.mktemp("kueue")
    with running_kueue(control_plane, workdir):
        quota = {"cpu": 64, "memory": "512Gi", "ephemeral-storage": "1Ti", "nvidia.com/gpu": 1}
        objects = [
            {
                "apiVersion": "scheduling.k8s.io/v1",
                "kind": "PriorityClass",
                "metadata": {"name": name},
                "value": value,
            }
            for name, value in ((LOW, 100), (HIGH, 1000))
        ]
        objects += [
            {
                "apiVersion": "kueue.x-k8s.io/v1beta2",
                "kind": "ResourceFlavor",
                "metadata": {"name": "gpu-node"},
            },
            {
                "apiVersion": "kueue.x-k8s.io/v1beta2",
                "kind": "ClusterQueue",
                "metadata": {"name": "gpus"},
                "spec": {
                    "namespaceSelector": {},
                    "preemption": {"withinClusterQueue": "LowerPriority"},
                    "resourceGroups": [
                        {
                            "coveredResources": list(quota),
                            "flavors": [
                                {
                                    "name": "gpu-node",
                                    "resources": [
                                        {"name": name, "nominalQuota": value}
                                        for name, value in quota.items()
                                    ],
                                }
                            ],
                        }
                    ],
                },
            },
        ]
        apply_objects(control_plane, objects, workdir / "queue.yaml")
        yield control_plane


@pytest.fixture
def queue(kueue, namespace, tmp_path):
    """The namespace's LocalQueue on that ClusterQueue."""
    local = {
        "apiVersion": "kueue.x-k8s.io/v1beta2",
        "kind": "LocalQueue",
        "metadata": {"name": QUEUE, "namespace": namespace},
        "spec": {"clusterQueue": "gpus"},
    }
    apply_objects(kueue, [local], tmp_path / "local-queue.yaml")
    return QUEUE


def workloads(plane, namespace: str) -> list[dict]:
    listed = plane.kubectl("get", "workloads.kueue.x-k8s.io", "-n", namespace, "-o", "json")
    assert listed.returncode == 0, listed.stderr
    return json.loads(listed.stdout)["items"]


def condition(body: dict, kind: str) -> dict:
    return next((c for c in body.get("conditions") or [] if c["type"] == kind), {})


def loss_steps(site, status: dict, tmp_path) -> list[int]:
    url = next(u for u in status["outputs"] if u.endswith("/loss.csv"))
    local = tmp_path / f"{status['id']}.csv"
    site.s3.download_file(site.bucket, url.removeprefix(f"s3://{site.bucket}/"), str(local))
    return [int(row.split(",")[0]) for row in local.read_text().splitlines()[1:]]


def test_kueues_own_webhook_suspends_a_queued_job_at_admission(kueue, queue, namespace):
    """Kueue is whole here: the API server calls its webhooks (a Job sent to a queue unsuspended
    is suspended on the way in, and waits for admission)."""
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "plain", "labels": {naming.KUEUE_QUEUE_LABEL: queue}},
        "spec": {
            "suspend": False,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "c", "image": "never-pulled", "command": ["true"]}],
                }
            },
        },
    }
    admin = kueue.admin()
    created = admin.request("POST", path("Job", namespace), job)
    assert created["spec"]["suspend"] is True


@QUEUED
async def test_a_higher_priority_run_preempts_a_queued_one_which_resumes_losing_no_step(
    site, queue, tmp_path
):
    site.s3.upload_file(str(make_zip(tmp_path / "d.zip", photos(3))), site.bucket, "data/p.zip")
    site.submit(
        "low", "data/p.zip", steps=INTERRUPTED_RUN_STEPS, queueName=queue, priorityClassName=LOW
    )
    await eventually(
        lambda: (site.status("low").get("progress") or {}).get("step", 0) >= 100,
        "the low-priority run is admitted and trains",
        timeout=240,
    )
    assert condition(site.status("low"), "Queued")["reason"] == "Admitted"

    site.submit("high", "data/p.zip", queueName=queue, priorityClassName=HIGH)
    low_selector = f"{naming.LABEL_TRAINING_JOB}=low"

    def preempted() -> bool:
        job = site.kube.get("Job", site.namespace, naming.job_name("low"))
        pods = site.kube.list_objects("Pod", site.namespace, low_selector)
        return job["spec"]["suspend"] and not pods

    await eventually(preempted, "Kueue suspends the low-priority Job and its pod goes", 180)
    evicted = [
        condition(w["status"], "Evicted")
        for w in workloads(site.plane, site.namespace)
        if w["metadata"]["ownerReferences"][0]["name"] == naming.job_name("low")
    ]
    assert [e.get("reason") for e in evicted] == ["Preempted"]
    # It waits in the queue again, keeping its hosted status (it has started).
    status = site.status("low")
    assert status["phase"] == "processing"
    queued = condition(status, "Queued")
    assert (queued["status"], queued["reason"]) == ("True", "WaitingForAdmission")

    high = await site.final("high")
    assert high["phase"] == "completed", high.get("error")
    low = await site.final("low")
    assert low["phase"] == "completed", low.get("error")
    logs = site.logs("low")  # the re-admitted pod's
    resumed_at = int(logs.split("resuming from the checkpoint at step ")[1].split()[0])
    assert resumed_at >= 100  # the step it stopped at on the SIGTERM: no periodic checkpoint
    # no step lost or repeated
    assert loss_steps(site, low, tmp_path) == list(range(1, INTERRUPTED_RUN_STEPS + 1))
    assert low["attempts"] == 2


@QUEUED
async def test_spec_suspend_and_kueues_suspension_never_fight(site, queue, tmp_path):
    site.s3.upload_file(str(make_zip(tmp_path / "d.zip", photos(3))), site.bucket, "data/p.zip")
    site.submit("paused", "data/p.zip", steps=600, queueName=queue, priorityClassName=LOW)
    await eventually(
        lambda: (site.status("paused").get("progress") or {}).get("step", 0) >= 50,
        "the run is admitted and trains",
        timeout=240,
    )
    site.suspend("paused")
    # Our suspension removes the Job, and so Kueue's Workload with it: the quota is free.
    await eventually(
        lambda: (
            not workloads(site.plane, site.namespace)
            and site.kube.get("Job", site.namespace, naming.job_name("paused")) is None
        ),
        "the Job and its Workload are gone",
        timeout=180,
    )
    assert condition(site.status("paused"), "Suspended")["status"] == "True"

    site.suspend("paused", suspended=False)
    # Resumed: a new Job, suspended for Kueue, which admits and starts it (never the operator).
    job = await eventually(
        lambda: site.kube.get("Job", site.namespace, naming.job_name("paused")),
        "a new Job",
    )
    assert job["metadata"]["labels"][naming.KUEUE_QUEUE_LABEL] == queue
    final = await site.final("paused")
    assert final["phase"] == "completed", final.get("error")
    (workload,) = workloads(site.plane, site.namespace)
    assert condition(workload["status"], "Admitted")["status"] == "True"
    assert loss_steps(site, final, tmp_path) == list(range(1, 601))
