"""The kopf operator itself (handlers, watches, label selectors, events) against a Kubernetes API:
the resource moves through its phases only because the operator reacts to watch events."""

import contextlib

import kmock
import kopf
import pytest

from fluxlora_api import resource
from fluxlora_operator import naming
from fluxlora_operator.settings import OperatorSettings
from tests.handlers.conftest import NAMESPACE, SETTINGS, make_cluster
from tests.objects import job_condition, result_message, running, terminated, training_job
from tests.objects import pod as pod_object
from tests.support.operator import embedded_operator
from tests.support.waiting import eventually

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


async def submit(cluster, namespace: str = NAMESPACE, name: str = "portrait") -> None:
    body = training_job(name=name, namespace=namespace)
    del body["metadata"]["uid"]
    await cluster.apply(body)


async def test_the_operator_runs_a_resource_from_created_to_completed(operator, apiserver):
    cluster, metrics = operator
    await submit(cluster)

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
    message = result_message(outputs=["lora.safetensors"], timings={"inference": 5})
    finished = {"name": "trainer", "state": terminated(0, message, "Completed")}
    await cluster.patch(
        "Pod",
        "portrait-train-1",
        {"status": {"phase": "Succeeded", "containerStatuses": [finished]}},
    )
    await cluster.patch("Job", JOB, {"status": {"conditions": [job_condition("Complete")]}})

    async def completed():
        """the resource is completed"""
        return (await cluster.status("portrait")).get("phase") == "completed"

    await eventually(completed)
    uid = (await cluster.get(resource.KIND, "portrait"))["metadata"]["uid"]
    own_folder = f"s3://loras/{NAMESPACE}/portrait-{uid}"
    assert (await cluster.status("portrait"))["outputs"] == [f"{own_folder}/lora.safetensors"]

    async def events_posted():
        """the operator posted Events for the transitions"""
        listing = await cluster.call(
            cluster.kube.request, "GET", f"/api/v1/namespaces/{NAMESPACE}/events"
        )
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


async def test_an_operator_for_some_namespaces_leaves_the_others_alone(apiserver):
    settings = SETTINGS.model_copy(update={"namespaces": [NAMESPACE]})
    async with running_operator(apiserver, settings) as (cluster, _):
        await submit(cluster, namespace="team-b", name="elsewhere")
        await submit(cluster)

        async def job_created():
            """the operator created the trainer Job in its own namespace"""
            return await cluster.get("Job", JOB)

        await eventually(job_created)
        elsewhere = await cluster.call(cluster.kube.get, "LoRATrainingJob", "team-b", "elsewhere")
        assert "status" not in elsewhere
        assert await cluster.call(cluster.kube.get, "Job", "team-b", "elsewhere-train") is None
