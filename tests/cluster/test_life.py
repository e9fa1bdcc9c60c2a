"""The whole life on the real control plane: the operator's Job runs the trainer image (tiny FLUX
model) on the real node, on a dataset in MinIO, and the resource goes created -> processing ->
completed with outputs that exist in MinIO; evictions, deleted Jobs, an operator that was down,
bad datasets and a busy GPU along the way."""

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from fluxlora_api import resource
from fluxlora_kube.paths import path
from fluxlora_localcluster.datasets import make_zip, photos
from fluxlora_localcluster.node_network import HOST_ADDRESS
from fluxlora_localcluster.waiting import eventually
from fluxlora_operator import naming
from tests.cluster.conftest import INTERRUPTED_RUN_STEPS

pytestmark = pytest.mark.timeout(600)


async def test_a_resource_trains_to_completed_and_goes_after_its_ttl_its_outputs_kept(
    site, tmp_path
):
    site.s3.upload_file(str(make_zip(tmp_path / "d.zip", photos(4))), site.bucket, "data/p.zip")
    site.submit("portrait", "data/p.zip", ttlSecondsAfterFinished=2)
    await eventually(
        lambda: site.status("portrait").get("phase") == "processing", "processing", timeout=120
    )
    await eventually(
        lambda: (site.status("portrait").get("progress") or {}).get("step"), "progress", timeout=120
    )
    final = await site.final("portrait")
    assert final["phase"] == "completed", final.get("error")
    prefix = f"s3://{site.bucket}/loras/{site.namespace}/portrait-{final['id']}"
    assert final["outputs"][0] == f"{prefix}/lora.safetensors"
    assert final["timings"]["inference"] > 0
    assert final["progress"]["step"] == 500
    await eventually(
        lambda: site.kube.get(resource.KIND, site.namespace, "portrait") is None,
        "the resource is deleted 2 s after it ended",
        timeout=60,
    )
    for url in final["outputs"]:  # the outputs stay
        key = url.removeprefix(f"s3://{site.bucket}/")
        assert site.s3.head_object(Bucket=site.bucket, Key=key)["ContentLength"] > 0


async def test_a_bad_dataset_fails_with_the_trainers_message_and_no_retry(site, tmp_path):
    site.s3.upload_file(
        str(make_zip(tmp_path / "d.zip", {"notes.txt": "no images"})), site.bucket, "data/bad.zip"
    )
    site.submit("broken", "data/bad.zip")
    final = await site.final("broken")
    assert final["phase"] == "failed"
    assert "has no usable image" in final["error"]
    assert next(c for c in final["conditions"] if c["type"] == "Failed")["reason"] == "BadInput"
    assert final["attempts"] == 1
    # The resource says so as the trainer exits; the Job then fails on its one pod: bad input
    # is never retried.
    job = await eventually(
        lambda: (
            (job := site.kube.get("Job", site.namespace, naming.job_name("broken")))
            and any(c["type"] == "Failed" for c in job["status"].get("conditions") or [])
            and job
        ),
        "the Job fails",
    )
    assert job["status"].get("failed") == 1
    assert (
        len(site.kube.list_objects("Pod", site.namespace, f"{naming.LABEL_TRAINING_JOB}=broken"))
        == 1
    )


async def test_an_evicted_trainer_checkpoints_its_step_is_retried_and_loses_nothing(site, tmp_path):
    site.s3.upload_file(str(make_zip(tmp_path / "d.zip", photos(4))), site.bucket, "data/p.zip")
    # No periodic checkpoint: only the SIGTERM of the eviction makes one. Snapshots and samples
    # on the way.
    site.submit(
        "portrait", "data/p.zip", steps=INTERRUPTED_RUN_STEPS, checkpointEverySteps=0,
        saveEverySteps=200, sampleEverySteps=400, samplePrompts=["a photo of p3r5on"],
    )  # fmt: skip
    selector = f"{naming.LABEL_TRAINING_JOB}=portrait"

    def training_on() -> bool:  # past its first snapshot, which the status already lists
        status = site.status("portrait")
        assert status.get("phase") != "failed", status.get("error")
        step = (status.get("progress") or {}).get("step", 0)
        return step >= 250 and bool(status.get("snapshots"))

    await eventually(training_on, "training is past its first snapshot", timeout=180)
    (pod,) = site.kube.list_objects("Pod", site.namespace, selector)
    eviction = {
        "apiVersion": "policy/v1",
        "kind": "Eviction",
        "metadata": {"name": pod["metadata"]["name"], "namespace": site.namespace},
    }
    site.kube.request(
        "POST",
        path("Pod", site.namespace, pod["metadata"]["name"], "eviction"),
        eviction,
    )
    final = await site.final("portrait")
    assert final["phase"] == "completed", final.get("error")
    assert final["attempts"] == 2
    job = site.kube.get("Job", site.namespace, naming.job_name("portrait"))
    assert not job["status"].get("failed")  # the eviction did not count against backoffLimit
    logs = site.logs("portrait")  # the second pod's: the evicted one is gone
    resumed_at = int(logs.split("resuming from the checkpoint at step ")[1].split()[0])
    assert resumed_at >= 250  # the step the evicted pod stopped at, checkpointed on SIGTERM
    # The pod asked for one CPU (the site's cpuRequest): torch trains on one thread.
    assert "(CPU threads: 1)" in logs
    loss = tmp_path / "loss.csv"
    key = next(u for u in final["outputs"] if u.endswith("/loss.csv")).removeprefix(
        f"s3://{site.bucket}/"
    )
    site.s3.download_file(site.bucket, key, str(loss))
    steps = [int(row.split(",")[0]) for row in loss.read_text().splitlines()[1:]]
    assert steps == list(range(1, INTERRUPTED_RUN_STEPS + 1))  # no step lost, none repeated
    # Snapshots, before and after the eviction, listed in the status and stored.
    assert [snapshot["step"] for snapshot in final["snapshots"]] == [200, 400, 600, 800]
    prefix = f"s3://{site.bucket}/loras/{site.namespace}/portrait-{final['id']}"
    assert final["snapshots"][0]["files"] == [
        f"{prefix}/lora-step-000200.safetensors", f"{prefix}/lora_comfyui-step-000200.safetensors"
    ]  # fmt: skip
    assert final["outputs"][0] == f"{prefix}/lora.safetensors"
    assert [s["samples"] for s in final["snapshots"] if s["samples"]] == [
        [f"{prefix}/sample_0-step-000400.png"], [f"{prefix}/sample_0-step-000800.png"]
    ]  # fmt: skip
    assert f"{prefix}/sample_0.png" in final["outputs"]
    assert final["progress"]["samplingSeconds"] > 0
    for snapshot in final["snapshots"]:
        assert set(snapshot["files"]) <= set(final["outputs"])
        for url in snapshot["files"] + snapshot["samples"]:
            key = url.removeprefix(f"s3://{site.bucket}/")
            assert site.s3.head_object(Bucket=site.bucket, Key=key)["ContentLength"] > 0


async def test_a_second_resource_waits_for_the_only_gpu_then_trains(site, tmp_path):
    site.s3.upload_file(str(make_zip(tmp_path / "d.zip", photos(3))), site.bucket, "data/p.zip")
    site.submit("first", "data/p.zip")
    await site.until("first", lambda s: s.get("phase") == "processing", "first trains", 120)
    site.submit("second", "data/p.zip")

    def waiting_for_a_gpu() -> dict | None:
        status = site.status("second")
        conditions = {c["type"]: c for c in status.get("conditions") or []}
        scheduled = conditions.get("Scheduled") or {}
        return status if scheduled.get("reason") == "Unschedulable" else None

    second = await eventually(waiting_for_a_gpu, "the second waits for the GPU", timeout=60)
    assert second["phase"] == "created"
    scheduled = next(c for c in second["conditions"] if c["type"] == "Scheduled")
    assert "Insufficient nvidia.com/gpu" in scheduled["message"]
    # The device plugin gave the first trainer the node's only GPU.
    (first_pod,) = site.kube.list_objects(
        "Pod", site.namespace, f"{naming.LABEL_TRAINING_JOB}=first"
    )
    assert (
        "NVIDIA_VISIBLE_DEVICES=gpu-0"
        in site.plane.kubectl(
            "exec", "-n", site.namespace, first_pod["metadata"]["name"], "--", "env"
        ).stdout
    )

    first = await site.final("first")
    assert first["phase"] == "completed", first.get("error")
    second = await site.final("second")
    assert second["phase"] == "completed", second.get("error")
    # It got the GPU once the first trainer's pod had ended.
    (first_pod,) = site.kube.list_objects(
        "Pod", site.namespace, f"{naming.LABEL_TRAINING_JOB}=first"
    )
    (second_pod,) = site.kube.list_objects(
        "Pod", site.namespace, f"{naming.LABEL_TRAINING_JOB}=second"
    )
    ended = first_pod["status"]["containerStatuses"][0]["state"]["terminated"]["finishedAt"]
    assert second_pod["status"]["startTime"] >= ended
    scheduled = next(c for c in second["conditions"] if c["type"] == "Scheduled")
    assert scheduled["status"] == "True"


async def test_a_suspended_run_frees_the_gpu_and_resumes_where_it_stopped(site, tmp_path):
    site.s3.upload_file(str(make_zip(tmp_path / "d.zip", photos(3))), site.bucket, "data/p.zip")
    site.submit("first", "data/p.zip", steps=INTERRUPTED_RUN_STEPS)  # no periodic checkpoint
    await site.until(
        "first", lambda s: (s.get("progress") or {}).get("step", 0) >= 100, "first trains", 180
    )
    site.suspend("first")
    selector = f"{naming.LABEL_TRAINING_JOB}=first"
    await eventually(
        lambda: not site.kube.list_objects("Pod", site.namespace, selector), "its pod is gone"
    )
    status = site.status("first")
    suspended = next(c for c in status["conditions"] if c["type"] == "Suspended")
    assert (suspended["status"], suspended["reason"]) == ("True", "Suspended")
    assert status["phase"] == "processing"  # it has started: its hosted status stays
    assert site.kube.get("Job", site.namespace, naming.job_name("first")) is None

    # The GPU is free: another run takes it and completes while the first one waits.
    site.submit("second", "data/p.zip")
    second = await site.final("second")
    assert second["phase"] == "completed", second.get("error")
    assert site.status("first")["phase"] == "processing"

    site.suspend("first", suspended=False)
    first = await site.final("first")
    assert first["phase"] == "completed", first.get("error")
    resumed = next(c for c in first["conditions"] if c["type"] == "Suspended")
    assert (resumed["status"], resumed["reason"]) == ("False", "Resumed")
    logs = site.logs("first")  # the resumed pod's
    assert int(logs.split("resuming from the checkpoint at step ")[1].split()[0]) >= 100
    loss = tmp_path / "loss.csv"
    key = next(u for u in first["outputs"] if u.endswith("/loss.csv"))
    site.s3.download_file(site.bucket, key.removeprefix(f"s3://{site.bucket}/"), str(loss))
    steps = [int(row.split(",")[0]) for row in loss.read_text().splitlines()[1:]]
    assert steps == list(range(1, INTERRUPTED_RUN_STEPS + 1))  # nothing lost to the suspension


@pytest.mark.operator_env(
    # A registry that refuses at once (a name no DNS answers makes containerd wait ~50 s for
    # its lookups before the kubelet reports the pull error).
    FLUXLORA_TRAINER_IMAGE="127.0.0.1:1/flux-lora-trainer:no-such-tag",
    FLUXLORA_IMAGE_PULL_GRACE_SECONDS="2",
)
async def test_an_image_that_cannot_be_pulled_fails_and_frees_the_gpu(site):
    site.submit("portrait", "data/never-read.zip")
    final = await site.final("portrait")
    assert final["phase"] == "failed"
    assert "ErrImagePull" in final["error"] or "ImagePullBackOff" in final["error"]
    assert "127.0.0.1:1/flux-lora-trainer:no-such-tag" in final["error"]
    # The Job is deleted so its pod stops holding the node's only GPU.
    await eventually(
        lambda: (
            not site.kube.list_objects(
                "Pod", site.namespace, f"{naming.LABEL_TRAINING_JOB}=portrait"
            )
        ),
        "the pod is gone",
    )
    assert site.kube.get("Job", site.namespace, naming.job_name("portrait")) is None


async def test_a_job_deleted_while_training_is_made_again_and_resumes(site, tmp_path):
    site.s3.upload_file(str(make_zip(tmp_path / "d.zip", photos(3))), site.bucket, "data/p.zip")
    site.submit("portrait", "data/p.zip", steps=INTERRUPTED_RUN_STEPS, checkpointEverySteps=100)
    job_name = naming.job_name("portrait")
    await eventually(
        lambda: (site.status("portrait").get("progress") or {}).get("step", 0) >= 150,
        "training is past its first checkpoint",
        timeout=180,
    )
    first = site.kube.get("Job", site.namespace, job_name)
    site.kube.delete("Job", site.namespace, job_name)  # a person or a cleanup script

    final = await site.final("portrait")
    assert final["phase"] == "completed", final.get("error")
    second = site.kube.get("Job", site.namespace, job_name)
    assert second["metadata"]["uid"] != first["metadata"]["uid"]
    assert "resuming from the checkpoint at step" in site.logs("portrait")


@pytest.mark.operator_env(FLUXLORA_JOB_TTL_SECONDS="0")
async def test_a_run_that_ends_while_the_operator_is_down_is_recorded_never_rerun(
    quiet_site, tmp_path
):
    """ttlSecondsAfterFinished: 0 deletes the Job and its pods the moment training ends; with
    no operator watching, only the Job's finalizer keeps the proof that it completed."""
    site = quiet_site
    site.s3.upload_file(str(make_zip(tmp_path / "d.zip", photos(3))), site.bucket, "data/p.zip")
    job_name = naming.job_name("portrait")
    async with site.operator():
        site.submit("portrait", "data/p.zip")
        await eventually(
            lambda: site.status("portrait").get("phase") == "processing", "trains", timeout=120
        )
    first = site.kube.get("Job", site.namespace, job_name)
    ended = await eventually(
        lambda: (
            (job := site.kube.get("Job", site.namespace, job_name))
            and job["metadata"].get("deletionTimestamp")
            and job
        ),
        "training ends and the TTL controller deletes the Job",
        timeout=300,
    )
    assert any(c["type"] == "Complete" for c in ended["status"]["conditions"])
    assert site.status("portrait")["phase"] == "processing"  # nobody recorded it yet

    async with site.operator():
        final = await site.final("portrait")
        await eventually(
            lambda: site.kube.get("Job", site.namespace, job_name) is None, "the Job is released"
        )
    assert final["phase"] == "completed"
    folder = f"s3://{site.bucket}/loras/{site.namespace}/portrait-{final['id']}"
    assert final["outputs"][0] == f"{folder}/lora.safetensors"
    for url in final["outputs"]:
        assert site.s3.head_object(Bucket=site.bucket, Key=url.removeprefix(f"s3://{site.bucket}/"))
    jobs = site.kube.list_objects("Job", site.namespace, naming.MANAGED_SELECTOR)
    assert jobs == [] and first["metadata"]["uid"] == ended["metadata"]["uid"]  # never re-run


class DatasetHost:
    """A dataset server at the host address (where the node's pods reach this machine) that
    counts every connection it accepts."""

    def __init__(self, redirect_to: str | None = None) -> None:
        host = self
        self.connections = 0

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(302 if redirect_to else 404)
                if redirect_to:
                    self.send_header("Location", redirect_to)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        class Server(ThreadingHTTPServer):
            def verify_request(self, request, client_address):
                host.connections += 1
                return True

        self.server = Server((HOST_ADDRESS, 0), Handler)
        self.url = f"http://{HOST_ADDRESS}:{self.server.server_address[1]}/data.zip"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.mark.operator_env(FLUXLORA_DATASET_LIMITS="{}")  # the default: private hosts refused
async def test_a_dataset_on_a_refused_address_fails_without_a_single_connection(site):
    host = DatasetHost()
    site.submit("portrait", "unused", data=host.url)
    final = await site.final("portrait")
    assert final["phase"] == "failed"
    assert final["error"].startswith(f"data: {HOST_ADDRESS} is a private address")
    assert next(c for c in final["conditions"] if c["type"] == "Failed")["reason"] == "BadInput"
    assert host.connections == 0
    host.server.shutdown()


async def test_a_redirect_to_the_metadata_service_is_refused(site):
    host = DatasetHost(redirect_to="http://169.254.169.254/latest/meta-data/iam/")
    site.submit("portrait", "unused", data=host.url)
    final = await site.final("portrait")
    assert final["phase"] == "failed"
    assert "169.254.169.254, a cloud metadata address" in final["error"]
    assert "meta-data" not in final["error"]  # nothing of where it pointed beyond the address
    assert host.connections == 1  # the allowed host itself, once: no retry storm
    host.server.shutdown()


async def test_a_run_deleted_as_its_pod_starts_frees_the_gpu_in_seconds(site, tmp_path):
    """A SIGTERM in the trainer's first second, before its handler is installed (a run
    cancelled, preempted or suspended as its pod starts), ends it: seen once as a cancelled
    4,000-step run whose trainer, its container's PID 1, dropped the signal and trained on
    for 43 s, holding the only GPU."""
    site.s3.upload_file(str(make_zip(tmp_path / "d.zip", photos(3))), site.bucket, "data/p.zip")
    site.submit("early", "data/p.zip", steps=4000)
    selector = f"{naming.LABEL_TRAINING_JOB}=early"

    def starting() -> bool:
        return any(
            status.get("state", {}).get("running") or "waiting" in status.get("state", {})
            for pod in site.kube.list_objects("Pod", site.namespace, selector)
            for status in pod["status"].get("containerStatuses") or []
        )

    await eventually(starting, "the trainer's container is being started", timeout=120)
    site.kube.delete(resource.KIND, site.namespace, "early")  # as the gateway's cancel does
    await eventually(
        lambda: not site.kube.list_objects("Pod", site.namespace, selector),
        "the cancelled run's pod is gone",
        timeout=15,  # its training alone would take 25 s or more, its grace period minutes
    )
