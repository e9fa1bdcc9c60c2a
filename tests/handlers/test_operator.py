"""The kopf operator itself (handlers, watches, label selectors, events) against a Kubernetes API:
the resource moves through its phases only because the operator reacts to watch events."""

import contextlib

import kmock
import kopf
import pytest

from fluxlora_api import resource
from fluxlora_kube.paths import path
from fluxlora_localcluster.operator import embedded_operator
from fluxlora_localcluster.waiting import eventually
from fluxlora_operator import naming
from fluxlora_operator.settings import OperatorSettings
from tests.handlers.conftest import NAMESPACE, SETTINGS, make_cluster
from tests.objects import job_condition, result_message, running, terminated
from tests.objects import pod as pod_object

pytestmark = pytest.mark.timeout(60)
JOB = naming.job_name("portrait")


@contextlib.asynccontextmanager
async def running_operator(apiserver, settings: OperatorSettings):
    """The operator logged in to the test API, and the test's own client of it."""
    cluster = make_cluster(apiserver, settings)
    connection = kopf.ConnectionInfo(server=str(apiserver.url).rstrip("/"))
    async with embedded_operator(cluster.kube, connection, settings, scanning=False) as (
        reconciler,
        metrics,
    ):
        cluster.reconciler = reconciler
        yield cluster, metrics


@pytest.fixture
async def operator(apiserver):
    async with running_operator(apiserver, SETTINGS) as running:
        yield running


async def finish(cluster) -> None:
    """What the kubelet and the Job controller do when the trainer exits 0 with its result."""
    message = result_message(outputs=["lora.safetensors"], timings={"inference": 5})
    finished = {"name": "trainer", "state": terminated(0, message, "Completed")}
    await cluster.patch(
        "Pod",
        "portrait-train-1",
        {"status": {"phase": "Succeeded", "containerStatuses": [finished]}},
    )
    await cluster.patch("Job", JOB, {"status": {"conditions": [job_condition("Complete")]}})


async def test_the_operator_runs_a_resource_from_created_to_completed(operator, apiserver):
    cluster, metrics = operator
    await cluster.submit()

    async def job_created():
        """the operator created the trainer Job"""
        return await cluster.get("Job", JOB)

    job = await eventually(job_created)
    assert (await cluster.status("portrait"))["phase"] == "created"

    # The Job controller starts a pod and the kubelet runs it: the pod watch reacts.
    pod = pod_object(
        name="portrait-train-1",
        job_uid=job["metadata"]["uid"],
        phase="Running",
        state=running(),
        namespace=NAMESPACE,
    )
    await cluster.apply(pod)

    async def processing():
        """the resource is processing"""
        return (await cluster.status("portrait")).get("phase") == "processing"

    await eventually(processing)

    # The trainer finishes and the Job controller marks the Job complete: the Job watch reacts.
    await finish(cluster)

    async def completed():
        """the resource is completed"""
        return (await cluster.status("portrait")).get("phase") == "completed"

    await eventually(completed)
    uid = (await cluster.get(resource.KIND, "portrait"))["metadata"]["uid"]
    own_folder = f"s3://loras/{NAMESPACE}/portrait-{uid}"
    assert (await cluster.status("portrait"))["outputs"] == [f"{own_folder}/lora.safetensors"]

    async def events_posted():
        """the operator posted Events for the transitions"""
        listing = await cluster.call(cluster.kube.request, "GET", path("Event", NAMESPACE))
        return {item.get("reason") for item in listing.get("items", [])} >= {
            "JobCreated",
            "TrainerRunning",
            "TrainingSucceeded",
        }

    await eventually(events_posted)

    async def counted():
        """the phase gauge counts the completed resource"""
        return metrics.resources.labels("completed")._value.get() == 1

    await eventually(counted)
    # kopf kept its bookkeeping out of the status, which the CRD schema would prune,
    # and added no finalizer: deleting the resource never waits for the operator.
    assert "kopf" not in await cluster.status("portrait")
    assert not (await cluster.get("LoRATrainingJob", "portrait"))["metadata"].get("finalizers")


async def test_the_operator_watches_only_its_own_jobs_and_pods(operator, apiserver):
    async def watching():
        """the operator watches jobs and pods"""
        return {"jobs", "pods"} <= {
            request.resource.plural for request in apiserver[kmock.action.WATCH]
        }

    await eventually(watching)
    for request in apiserver[kmock.action.WATCH]:
        if request.resource.plural in ("jobs", "pods"):
            assert request.params.get("labelSelector") == naming.MANAGED_SELECTOR


async def test_a_deleted_resources_job_is_deleted_at_once_not_left_to_the_collector(
    operator, apiserver
):
    """This API runs no garbage collector: only the operator can remove the Job (and with it the
    pod that holds the GPU). A Job of the same name that another resource controls stays."""
    cluster, _ = operator
    await cluster.submit()

    async def job_created():
        """the operator created the trainer Job"""
        return await cluster.get("Job", JOB)

    await eventually(job_created)
    await cluster.delete(resource.KIND, "portrait")

    async def job_gone():
        """the operator deleted the deleted resource's Job"""
        return await cluster.get("Job", JOB) is None

    await eventually(job_gone)
    deletes = [r for r in apiserver[kmock.method.DELETE] if r.resource.plural == "jobs"]
    assert [(r.name, r.data["preconditions"]["uid"] is not None) for r in deletes] == [(JOB, True)]

    # A new resource of the name made its Job before the old one's deletion was seen: the old
    # one's deletion leaves the new Job alone.
    await cluster.submit()
    replacement = await eventually(job_created)
    await eventually(
        lambda: cluster.reconciler.cache.view(NAMESPACE, "portrait").jobs, "the Job is watched"
    )
    stale = {"metadata": {"namespace": NAMESPACE, "name": "portrait", "uid": "an-older-one"}}
    await cluster.call(cluster.reconciler.release, stale)
    assert (await cluster.get("Job", JOB))["metadata"]["uid"] == replacement["metadata"]["uid"]


async def test_an_operator_for_some_namespaces_leaves_the_others_alone(apiserver):
    settings = SETTINGS.model_copy(update={"namespaces": [NAMESPACE]})
    async with running_operator(apiserver, settings) as (cluster, _):
        await cluster.submit(namespace="team-b", name="elsewhere")
        await cluster.submit()

        async def job_created():
            """the operator created the trainer Job in its own namespace"""
            return await cluster.get("Job", JOB)

        await eventually(job_created)
        elsewhere = await cluster.call(cluster.kube.get, "LoRATrainingJob", "team-b", "elsewhere")
        assert "status" not in elsewhere
        assert await cluster.call(cluster.kube.get, "Job", "team-b", "elsewhere-train") is None


async def test_a_run_driven_by_watch_events_reads_no_object_back(apiserver):
    """Like an informer-based controller, the operator decides from what its watches show: from
    submission to completion it fetches no single resource, Job or pod (the test itself waits
    on lists, so every single-object read would be the operator's)."""
    settings = SETTINGS.model_copy(update={"resync_seconds": 3600})
    async with running_operator(apiserver, settings) as (cluster, _):
        await cluster.submit()

        async def first(kind: str) -> dict | None:
            selector = "" if kind == resource.KIND else naming.MANAGED_SELECTOR
            items = await cluster.call(cluster.kube.list_objects, kind, NAMESPACE, selector)
            return items[0] if items else None

        def reaches(phase: str):
            async def check() -> bool:
                return ((await first(resource.KIND) or {}).get("status") or {}).get(
                    "phase"
                ) == phase

            return check

        async def job_listed() -> dict | None:
            return await first("Job")

        job = await eventually(job_listed, "the operator created the trainer Job")
        await cluster.apply(
            pod_object(
                name="portrait-train-1",
                job_uid=job["metadata"]["uid"],
                phase="Running",
                state=running(),
                namespace=NAMESPACE,
            )
        )
        await eventually(reaches("processing"), "the resource is processing")
        await finish(cluster)
        await eventually(reaches("completed"), "the resource is completed")
        status = (await first(resource.KIND))["status"]
        assert status["outputs"][0].endswith("/lora.safetensors")
        assert status["timings"] == {"inference": 5}  # from the pod, not a guess

    fetched = [
        (request.resource.plural, request.name)
        for request in apiserver[kmock.method.GET]
        if request.name and request.resource and request.resource.plural != "kopfpeerings"
    ]
    assert fetched == []
