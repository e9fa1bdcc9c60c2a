"""The operator's reconciler against a Kubernetes API: what a user sees on the resource while the
cluster's controllers (played here over HTTP) run the trainer Job."""

import kmock
import pytest

from fluxlora_api import resource
from fluxlora_api.contract import ExitCode
from fluxlora_kube.paths import path
from fluxlora_operator import naming
from fluxlora_operator.clock import format_time, utcnow
from fluxlora_operator.reconciler import RetryLater
from tests.handlers.conftest import NAMESPACE, SETTINGS, Cluster, make_cluster
from tests.objects import job_condition, result_message, running, terminated, training_job
from tests.objects import pod as pod_object

JOB = naming.job_name("portrait")


async def start_pod(
    cluster: Cluster, state: dict, phase: str = "Running", name: str = "portrait-train-1", **extra
) -> dict:
    """What the Job controller and the kubelet do: a pod for the Job, then its state."""
    job = await cluster.get("Job", JOB)
    body = pod_object(
        name=name,
        job_uid=job["metadata"]["uid"],
        phase=phase,
        state=state,
        namespace=NAMESPACE,
        **extra,
    )
    return await cluster.apply(body)


async def test_a_new_resource_gets_its_status_and_exactly_one_job_and_nothing_else(cluster):
    created = await cluster.submit()
    await cluster.start("portrait")

    status = await cluster.status("portrait")
    assert status["phase"] == "created"
    assert status["id"] == created["metadata"]["uid"]
    assert status["model"] == "black-forest-labs/FLUX.1-dev"
    assert status["createdAt"].endswith("Z") and "." in status["createdAt"]
    assert status["jobName"] == JOB
    assert {(c["type"], c["status"], c["reason"]) for c in status["conditions"]} == {
        ("JobCreated", "True", "JobCreated")
    }

    (job,) = await cluster.jobs()
    assert job["metadata"]["name"] == JOB
    assert job["metadata"]["ownerReferences"][0]["uid"] == created["metadata"]["uid"]
    # The trainer holds no Kubernetes rights: no account, role or binding is made for it.
    for collection in (
        path("ServiceAccount", NAMESPACE),
        path("Role", NAMESPACE),
        path("RoleBinding", NAMESPACE),
    ):
        listing = await cluster.call(cluster.kube.request, "GET", collection)
        assert listing.get("items") == [], collection
    assert [e.reason for _, e in cluster.events] == ["JobCreated"]


async def test_starting_again_after_a_restart_never_makes_a_second_job(cluster):
    await cluster.submit()
    await cluster.start("portrait")
    await cluster.start("portrait")  # the operator restarted: kopf resumes every resource
    assert len(await cluster.jobs()) == 1
    assert [e.reason for _, e in cluster.events] == ["JobCreated"]


async def test_a_job_left_by_a_crash_before_the_status_was_written_is_adopted(cluster, apiserver):
    await cluster.submit()
    await cluster.start("portrait")
    # Forget what the crashed operator wrote: only its Job survives.
    await cluster.call(
        cluster.kube.patch_status,
        resource.KIND,
        NAMESPACE,
        "portrait",
        {"conditions": [], "jobName": None},
    )

    await cluster.start("portrait")
    status = await cluster.status("portrait")
    assert len(await cluster.jobs()) == 1
    assert [(c["type"], c["reason"]) for c in status["conditions"]] == [
        ("JobCreated", "JobAdopted")
    ]


async def test_a_job_of_the_same_name_owned_by_someone_else_is_reported_not_taken(cluster):
    await cluster.apply(
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": JOB, "namespace": NAMESPACE},
            "spec": {},
        }
    )
    await cluster.submit()
    with pytest.raises(RetryLater, match="already exists and does not belong"):
        await cluster.start("portrait")
    status = await cluster.status("portrait")
    conflict = status["conditions"][0]
    assert (conflict["type"], conflict["status"], conflict["reason"]) == (
        "JobCreated",
        "False",
        "NameConflict",
    )
    assert "ownerReferences" not in (await cluster.get("Job", JOB))["metadata"]


async def test_the_whole_life_created_processing_completed(cluster):
    uid = (await cluster.submit())["metadata"]["uid"]
    await cluster.start("portrait")
    await start_pod(cluster, running("2026-11-24T10:01:00Z"))
    await cluster.mirror("portrait")
    status = await cluster.status("portrait")
    assert status["phase"] == "processing"
    assert status["startTime"] == "2026-11-24T10:01:00Z"
    assert status["attempts"] == 1

    names = ["lora.safetensors", "lora_comfyui.safetensors"]  # in the run's own folder
    message = result_message(outputs=names, timings={"inference": 1_234_000})
    await cluster.patch(
        "Pod",
        "portrait-train-1",
        {
            "status": {
                "phase": "Succeeded",
                "containerStatuses": [
                    {"name": "trainer", **{"state": terminated(0, message, "Completed")}}
                ],
            }
        },
    )
    await cluster.patch(
        "Job", JOB, {"status": {"succeeded": 1, "conditions": [job_condition("Complete")]}}
    )
    await cluster.mirror("portrait")

    status = await cluster.status("portrait")
    assert status["phase"] == "completed"
    assert status["outputs"] == [f"s3://loras/{NAMESPACE}/portrait-{uid}/{n}" for n in names]
    assert status["hasNsfwContents"] == [False, False]
    assert status["timings"] == {"inference": 1_234_000}
    assert status["error"] == ""
    assert status["completionTime"]
    reasons = [e.reason for _, e in cluster.events]
    assert reasons == ["JobCreated", "Scheduled", "TrainerRunning", "Finished", "TrainingSucceeded"]


async def test_a_completed_resource_never_gets_a_new_job(cluster):
    await cluster.submit()
    await cluster.start("portrait")
    await start_pod(
        cluster,
        terminated(0, result_message(outputs=["lora.safetensors"]), "Completed"),
        phase="Succeeded",
    )
    await cluster.patch("Job", JOB, {"status": {"conditions": [job_condition("Complete")]}})
    await cluster.mirror("portrait")
    assert (await cluster.status("portrait"))["phase"] == "completed"

    await cluster.delete("Job", JOB)  # TTL or a person cleaning up
    await cluster.mirror("portrait")
    await cluster.start("portrait")  # and an operator restart
    assert await cluster.jobs() == []
    (output,) = (await cluster.status("portrait"))["outputs"]
    assert output.endswith("/lora.safetensors")


async def test_a_job_deleted_while_training_is_created_again(cluster):
    await cluster.submit()
    await cluster.start("portrait")
    await start_pod(cluster, running())
    await cluster.mirror("portrait")
    await cluster.delete("Job", JOB)

    await cluster.mirror("portrait")  # the Job's finalizer is released: it goes
    assert await cluster.jobs() == []
    await cluster.mirror("portrait")  # (on its deletion event) and is made again
    (job,) = await cluster.jobs()
    assert job["metadata"]["name"] == JOB
    assert (await cluster.status("portrait"))["phase"] == "processing"


async def test_bad_input_fails_with_the_trainers_message(cluster):
    await cluster.submit()
    await cluster.start("portrait")
    message = result_message(error="portrait.zip: not a zip file (it starts with '<html>')")
    await start_pod(cluster, terminated(ExitCode.BAD_INPUT, message), phase="Failed")
    await cluster.patch(
        "Job",
        JOB,
        {"status": {"failed": 1, "conditions": [job_condition("Failed", "PodFailurePolicy")]}},
    )
    await cluster.mirror("portrait")

    status = await cluster.status("portrait")
    assert status["phase"] == "failed"
    assert status["error"] == "portrait.zip: not a zip file (it starts with '<html>')"
    failed = next(c for c in status["conditions"] if c["type"] == "Failed")
    assert failed["reason"] == "BadInput"
    assert ("portrait", "Warning") in [(n, e.type) for n, e in cluster.events]


async def test_an_image_that_cannot_be_pulled_fails_the_resource_and_frees_the_gpu(apiserver):
    cluster = make_cluster(apiserver, SETTINGS.model_copy(update={"image_pull_grace_seconds": 0}))
    await cluster.submit()
    await cluster.start("portrait")
    waiting = {
        "waiting": {
            "reason": "ImagePullBackOff",
            "message": 'Back-off pulling image "trainer:test"',
        }
    }
    await start_pod(cluster, waiting, phase="Pending", created="2026-01-01T00:00:00Z")
    await cluster.mirror("portrait")

    status = await cluster.status("portrait")
    assert status["phase"] == "failed"
    assert "ImagePullBackOff" in status["error"] and "trainer:test" in status["error"]
    assert await cluster.jobs() == []


async def test_no_free_gpu_keeps_created_with_a_condition_that_says_why(cluster):
    await cluster.submit()
    await cluster.start("portrait")
    why = "0/2 nodes are available: 2 Insufficient nvidia.com/gpu."
    unschedulable = {
        "type": "PodScheduled",
        "status": "False",
        "reason": "Unschedulable",
        "message": why,
    }
    await start_pod(cluster, None, phase="Pending", node=None, conditions=[unschedulable])
    await cluster.mirror("portrait")

    status = await cluster.status("portrait")
    assert status["phase"] == "created"
    scheduled = next(c for c in status["conditions"] if c["type"] == "Scheduled")
    assert (scheduled["status"], scheduled["message"]) == ("False", why)


async def test_a_kueue_job_waits_suspended_and_the_operator_never_starts_it(cluster):
    await cluster.submit(queueName="gpu-queue")
    await cluster.start("portrait")
    await cluster.mirror("portrait")

    job = await cluster.get("Job", JOB)
    assert job["spec"]["suspend"] is True
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "gpu-queue"
    status = await cluster.status("portrait")
    assert status["phase"] == "created"
    queued = next(c for c in status["conditions"] if c["type"] == "Queued")
    assert (queued["status"], queued["reason"]) == ("True", "WaitingForAdmission")

    await cluster.patch("Job", JOB, {"spec": {"suspend": False}})  # Kueue admits it
    await start_pod(cluster, running())
    await cluster.mirror("portrait")
    status = await cluster.status("portrait")
    assert status["phase"] == "processing"
    assert next(c for c in status["conditions"] if c["type"] == "Queued")["status"] == "False"


async def test_a_resource_without_an_output_destination_fails_without_a_job(apiserver):
    cluster = make_cluster(apiserver, SETTINGS.model_copy(update={"default_output": None}))
    await cluster.submit()
    await cluster.start("portrait")
    status = await cluster.status("portrait")
    assert status["phase"] == "failed"
    assert status["error"].startswith("spec.output: no output destination")
    assert await cluster.jobs() == []


async def test_a_spec_that_slipped_past_the_schema_fails_naming_the_field(cluster):
    await cluster.submit(steps=10)  # an API server without our CRD's schema would store this
    await cluster.start("portrait")
    status = await cluster.status("portrait")
    assert status["phase"] == "failed"
    assert status["error"].startswith("spec.steps:")
    assert await cluster.jobs() == []


async def test_one_bad_resource_does_not_stop_the_others(cluster):
    await cluster.submit(name="broken", loraRank=1000)
    await cluster.submit(name="fine")
    await cluster.start("broken")
    await cluster.start("fine")
    assert (await cluster.status("broken"))["phase"] == "failed"
    assert [j["metadata"]["name"] for j in await cluster.jobs()] == [naming.job_name("fine")]


async def test_a_deleted_resource_is_left_alone(cluster):
    await cluster.submit()
    await cluster.call(cluster.kube.delete, resource.KIND, NAMESPACE, "portrait")
    await cluster.start("portrait")
    await cluster.mirror("portrait")
    assert await cluster.jobs() == []


async def test_the_resync_fails_a_pod_that_never_pulls_without_any_new_event(apiserver):
    cluster = make_cluster(apiserver, SETTINGS.model_copy(update={"image_pull_grace_seconds": 60}))
    await cluster.submit()
    await cluster.start("portrait")
    waiting = {"waiting": {"reason": "ErrImagePull", "message": "manifest unknown"}}
    await start_pod(cluster, waiting, phase="Pending", created="2026-01-01T00:00:00Z")
    cluster.reconciler.track(NAMESPACE, "portrait", "created")
    cluster.reconciler.track(NAMESPACE, "gone", "created")  # deleted meanwhile: skipped quietly

    await cluster.call(cluster.reconciler.resync)
    assert (await cluster.status("portrait"))["phase"] == "failed"


async def test_a_job_deleted_after_it_completed_is_recorded_never_run_again(cluster):
    """ttlSecondsAfterFinished deleted the Job (and its pods) while no operator watched: the
    Job's finalizer kept it, so its Complete condition is still there to record."""
    uid = (await cluster.submit(samplePrompts=["a lighthouse"]))["metadata"]["uid"]
    await cluster.start("portrait")
    await start_pod(cluster, running())
    await cluster.mirror("portrait")
    await cluster.patch("Job", JOB, {"status": {"conditions": [job_condition("Complete")]}})
    await cluster.delete("Pod", "portrait-train-1")
    await cluster.delete("Job", JOB)  # the TTL controller
    assert (await cluster.get("Job", JOB))["metadata"]["deletionTimestamp"]

    await cluster.mirror("portrait")
    await cluster.mirror("portrait")
    await cluster.start("portrait")  # and an operator restart
    status = await cluster.status("portrait")
    assert status["phase"] == "completed"
    folder = f"s3://loras/{NAMESPACE}/portrait-{uid}"
    assert status["outputs"][0] == f"{folder}/lora.safetensors"
    assert f"{folder}/sample_0.png" in status["outputs"]
    assert await cluster.jobs() == []  # released, and never made again


async def test_a_resync_round_costs_four_reads_per_namespace_not_per_resource(cluster, apiserver):
    names = [f"run-{index}" for index in range(10)]
    for name in names:
        await cluster.submit(name=name)
        await cluster.start(name)
        job = await cluster.get("Job", naming.job_name(name))
        await cluster.apply(
            pod_object(
                name=f"{name}-pod",
                job_name=name,
                job_uid=job["metadata"]["uid"],
                phase="Running",
                state=running(),
                namespace=NAMESPACE,
            )
        )
        await cluster.mirror(name)
        cluster.reconciler.track(NAMESPACE, name, "processing")
    reads = len(apiserver[kmock.method.GET])
    writes = len(apiserver[kmock.method.PATCH])

    await cluster.call(cluster.reconciler.resync)  # nothing changed since each was mirrored
    # resources, Jobs, pods, and the Job controller's FailedCreate Events
    assert len(apiserver[kmock.method.GET]) - reads == 4
    assert len(apiserver[kmock.method.PATCH]) == writes


async def test_the_resync_starts_a_run_whose_start_failed_but_not_one_just_made(apiserver):
    """A start that failed (the API server was away) is tried again by a later resync; a
    resource created moments ago is being started by its own event, and a second start from a
    resync listing would only cost calls."""
    # A period no loaded machine outlasts between the creation and the resync below.
    cluster = make_cluster(apiserver, SETTINGS.model_copy(update={"resync_seconds": 60}))
    stuck = training_job(name="stuck", namespace=NAMESPACE)  # created long ago, never started
    del stuck["metadata"]["uid"]
    await cluster.apply(stuck)
    fresh = training_job(name="fresh", namespace=NAMESPACE)
    del fresh["metadata"]["uid"]
    fresh["metadata"]["creationTimestamp"] = format_time(utcnow())
    await cluster.apply(fresh)
    for name in ("stuck", "fresh"):
        cluster.reconciler.track(NAMESPACE, name, None)

    await cluster.call(cluster.reconciler.resync)

    assert (await cluster.status("stuck"))["phase"] == "created"
    assert await cluster.get("Job", naming.job_name("stuck"))
    assert await cluster.status("fresh") == {}
    assert await cluster.get("Job", naming.job_name("fresh")) is None


async def test_starting_a_run_costs_three_api_calls_and_an_event(cluster, apiserver):
    """Read the resource, make the Job, write the status that records it: nothing else."""
    await cluster.submit()
    before = {method: len(apiserver[method]) for method in ("GET", "POST", "PATCH")}
    await cluster.start("portrait")
    made = {method: len(apiserver[method]) - before[method] for method in before}
    assert made == {"GET": 1, "POST": 1, "PATCH": 1}  # POST: the Job
    assert [e.reason for _, e in cluster.events] == ["JobCreated"]  # and one Event
    status = await cluster.status("portrait")
    assert status["phase"] == "created" and status["jobName"] == naming.job_name("portrait")
    assert [c["reason"] for c in status["conditions"]] == ["JobCreated"]


async def test_starting_from_a_watch_event_reads_nothing(cluster, apiserver):
    listed = await cluster.submit()
    before = {method: len(apiserver[method]) for method in ("GET", "POST", "PATCH")}
    await cluster.call(cluster.reconciler.start, NAMESPACE, "portrait", listed)
    made = {method: len(apiserver[method]) - before[method] for method in before}
    assert made == {"GET": 0, "POST": 1, "PATCH": 1}
    assert (await cluster.status("portrait"))["phase"] == "created"


async def test_a_start_from_an_outdated_event_reads_afresh_and_makes_no_second_job(cluster):
    """The event's version is not the server's any more (the run was started meanwhile): the
    guarded write is refused, and the fresh read adopts the Job instead of making another."""
    listed = await cluster.submit()
    await cluster.start("portrait")
    started = await cluster.status("portrait")
    await cluster.call(cluster.reconciler.start, NAMESPACE, "portrait", listed)
    assert len(await cluster.jobs()) == 1
    status = await cluster.status("portrait")
    assert status["conditions"] == started["conditions"]  # created, not "adopted" as well
    assert [e.reason for _, e in cluster.events] == ["JobCreated"]
