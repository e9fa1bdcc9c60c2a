"""The hosted API served by the cluster: `fluxlora-gateway serve` (the installed module, in a
process of its own) against the real API server. The reference's curl commands, with only the
base URL and key changed, train a LoRA to `completed` and its output downloads with the same
key; every error answers in the hosted envelope; tenants never see each other's predictions."""

import json
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import wavespeed

from fluxlora_api import resource
from fluxlora_api.resource import CRD_NAME
from fluxlora_gateway.hosted import MODEL_ID
from fluxlora_gateway.keys import new_key
from fluxlora_kube.paths import path
from fluxlora_localcluster.datasets import make_zip, photos
from fluxlora_localcluster.operator import embedded_operator, settings_from
from fluxlora_localcluster.training_site import (
    MODEL_PATH,
    create_namespace,
    model_cache_claim,
    operator_environment,
    set_quota,
    store_credentials,
)
from fluxlora_localcluster.waiting import eventually
from tests.cluster.conftest import RATE_BURST, REAL_NODE_TOLERATION

pytestmark = pytest.mark.timeout(600)

SUBMIT = "/api/v3/wavespeed-ai/flux-dev-lora-trainer"


def curl(*args: str) -> str:
    result = subprocess.run(["curl", "--silent", "--show-error", *args], capture_output=True,
                            text=True, timeout=60, check=True)  # fmt: skip
    return result.stdout


# The reference's submission body, as its curl command sends it.
REFERENCE_BODY = (
    '{\n"trigger_word": "p3r5on",\n"steps": 1000,\n"learning_rate": 0.0004,\n"lora_rank": 16\n}'
)


def reference_submit(base_url: str, key: str, body: str) -> dict:
    """The reference's first curl command with only the base URL, the key (and body) changed."""
    command = [
        "--location", "--request", "POST", f"{base_url}{SUBMIT}",
        "--header", "Content-Type: application/json",
        "--header", f"Authorization: Bearer {key}",
        "--data-raw", body,
    ]  # fmt: skip
    return json.loads(curl(*command))


def test_the_reference_request_without_data_is_refused_naming_data(gateway, namespace):
    key = new_key()
    gateway.set_keys(team=(key, namespace))
    # The reference's first curl command, verbatim but for the base URL and the key: its body
    # has no `data`, which its own parameter table requires.
    answer = reference_submit(gateway.url, key, REFERENCE_BODY)
    assert answer == {"code": 400, "message": "data: is required", "data": {}}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"data": "https://x/a.zip", "steps": 10}', "steps: Input should be greater than"),
        (b'{"data": "https://x/a.zip", "lora_rank": "big"}', "lora_rank: Input should be"),
        (b'{"data": "https://x/a.zip", "resolution": 512}', "resolution: unknown field"),
        (b'{"data": "https://x/a.zip",', "body: not valid JSON"),
        (b'{"data": "' + b"x" * 70000 + b'"}', "body: larger than"),
    ],
)
def test_bad_bodies_get_400_naming_the_field(gateway, namespace, body, message):
    key = new_key()
    gateway.set_keys(team=(key, namespace))
    status, answer = gateway.call("POST", SUBMIT, key, body)
    assert (status, answer["code"]) == (400, 400)
    assert answer["message"].startswith(message)


def test_keys_are_required_and_a_changed_secret_applies_without_a_restart(gateway, namespace):
    old, new = new_key(), new_key()
    gateway.set_keys(team=(old, namespace))
    body = b'{"data": "https://example.com/a.zip"}'
    assert gateway.call("POST", SUBMIT, None, body)[1] == {
        "code": 401,
        "message": "missing API key: send Authorization: Bearer <key>",
        "data": {},
    }
    assert gateway.call("POST", SUBMIT, new_key(), body)[0] == 401
    assert gateway.call("POST", SUBMIT, old, body)[0] == 200

    gateway.set_keys(team=(new, namespace))  # rotate: the old key stops, the new one works
    time.sleep(1)
    assert gateway.call("POST", SUBMIT, old, body)[0] == 401
    assert gateway.call("POST", SUBMIT, new, body)[0] == 200


def test_tenants_never_see_each_others_predictions(gateway, cluster_admin, namespace, two_tenants):
    mine, theirs, other = two_tenants
    status, answer = gateway.call(
        "POST", SUBMIT, mine, b'{"data": "https://example.com/a.zip", "trigger_word": null}'
    )
    assert status == 200 and answer["message"] == "success"
    prediction = answer["data"]
    assert prediction["status"] == "created" and prediction["outputs"] == []
    result = f"/api/v3/predictions/{prediction['id']}/result"
    assert prediction["urls"]["get"] == gateway.url + result

    status, again = gateway.call("GET", result, mine)
    assert status == 200 and again["data"]["id"] == prediction["id"]
    # The same id with another tenant's key is as unknown as a made-up id.
    unknown = {"code": 404, "message": f"prediction {prediction['id']} not found", "data": {}}
    assert gateway.call("GET", result, theirs) == (404, unknown)
    made_up = str(uuid.uuid4())
    assert gateway.call("GET", f"/api/v3/predictions/{made_up}/result", mine)[0] == 404

    (item,) = cluster_admin.list_objects("LoRATrainingJob", namespace, "")
    assert item["metadata"]["uid"] == prediction["id"]
    assert item["spec"]["triggerWord"] is None  # null kept: no trigger word
    assert item["spec"]["steps"] == 1000  # the API server's default, as for kubectl
    assert item["spec"]["baseModel"] == MODEL_PATH  # the gateway's spec defaults
    assert cluster_admin.list_objects("LoRATrainingJob", other, "") == []


def test_a_prediction_is_read_and_deleted_by_its_id_by_its_tenant_alone(
    gateway, cluster_admin, namespace, two_tenants
):
    mine, theirs, other = two_tenants
    body = b'{"data": "https://example.com/a.zip"}'
    ids = [gateway.call("POST", SUBMIT, mine, body)[1]["data"]["id"] for _ in range(3)]
    first = f"/api/v3/predictions/{ids[0]}"
    # The platform's general spelling answers as /result does.
    (status, got), (_, result) = (
        gateway.call("GET", first, mine),
        gateway.call("GET", first + "/result", mine),
    )
    assert status == 200 and got["data"] == result["data"]

    # Another tenant can neither read nor delete it; its owner can, once.
    assert gateway.call("GET", first, theirs)[0] == 404
    assert gateway.call("DELETE", first, theirs)[0] == 404
    deleted = {"code": 200, "message": "success", "data": {"id": ids[0], "status": "deleted"}}
    assert gateway.call("DELETE", first, mine) == (200, deleted)
    assert gateway.call("GET", first, mine)[0] == 404
    assert gateway.call("DELETE", first, mine)[0] == 404

    # A batch: unknown ids, deleted ones and another tenant's are ignored.
    theirs_id = gateway.call("POST", SUBMIT, theirs, body)[1]["data"]["id"]
    asked = {"ids": [ids[1], ids[2], str(uuid.uuid4()), theirs_id, ids[0]]}
    status, answer = gateway.call(
        "POST", "/api/v3/predictions/delete", mine, json.dumps(asked).encode()
    )
    assert (status, answer["data"]) == (200, {"deleted_count": 2})
    assert cluster_admin.list_objects("LoRATrainingJob", namespace, "") == []
    left = cluster_admin.list_objects("LoRATrainingJob", other, "")
    assert [item["metadata"]["uid"] for item in left] == [theirs_id]
    status, answer = gateway.call("POST", "/api/v3/predictions/delete", mine, b'{"id": 1}')
    assert status == 400 and answer["message"].startswith("ids: ")


def test_the_history_lists_the_keys_own_predictions_in_pages(gateway, two_tenants):
    mine, theirs, _ = two_tenants
    body = b'{"data": "https://example.com/a.zip"}'
    ids = {gateway.call("POST", SUBMIT, mine, body)[1]["data"]["id"] for _ in range(3)}
    gateway.call("POST", SUBMIT, theirs, body)
    listing = "/api/v3/predictions"
    status, first = gateway.call("POST", listing, mine, b'{"page_size": 2}')
    _, second = gateway.call("POST", listing, mine, b'{"page": 2, "page_size": 2}')
    assert status == 200 and (first["data"]["total"], second["data"]["total"]) == (3, 3)
    pages = first["data"]["items"] + second["data"]["items"]
    assert {item["id"] for item in pages} == ids and len(pages) == 3
    created = [item["created_at"] for item in pages]
    assert created == sorted(created, reverse=True)  # newest first
    assert all(item["executionTime"] == 0 and item["status"] == "created" for item in pages)
    # No body at all is the first page; a bad filter is a 400 naming it.
    assert gateway.call("POST", listing, mine)[1]["data"]["total"] == 3
    status, answer = gateway.call("POST", listing, mine, b'{"status": "done"}')
    assert status == 400 and answer["message"].startswith("status: ")


def test_the_openapi_document_describes_every_endpoint(gateway):
    with urllib.request.urlopen(gateway.url + "/openapi.json", timeout=10) as response:
        document = json.loads(response.read())
    assert SUBMIT in document["paths"]
    assert "/api/v3/predictions/{id}/result" in document["paths"]
    assert set(document["paths"]["/api/v3/predictions/{id}"]) == {"get", "delete"}
    request = document["components"]["schemas"]["TrainingRequest"]
    assert set(request["properties"]) == {
        "data", "trigger_word", "steps", "learning_rate", "lora_rank", "enable_sync_mode",
        # beyond the hosted request: what the web page sends to steer a run
        "sample_prompts", "save_every_steps", "sample_every_steps",
    }  # fmt: skip
    assert request["properties"]["steps"]["maximum"] == 4000
    assert request["properties"]["learning_rate"]["default"] == 0.0004  # the hosted default


async def test_the_reference_curl_flow_trains_and_the_output_downloads(
    gateway, control_plane, cluster_admin, namespace, real_node, tiny_model, host_s3, tmp_path
):
    bucket = f"gw-{uuid.uuid4().hex[:8]}"
    s3 = host_s3.client()
    s3.create_bucket(Bucket=bucket)
    s3.upload_file(str(make_zip(tmp_path / "d.zip", photos(4))), bucket, "data/portrait.zip")
    store_credentials(cluster_admin, namespace, host_s3)
    model_cache_claim(cluster_admin, real_node, namespace, tiny_model)
    key = new_key()
    gateway.set_keys(team=(key, namespace))
    environment = operator_environment(host_s3, bucket, (REAL_NODE_TOLERATION,))
    settings = settings_from(environment)
    async with embedded_operator(cluster_admin, control_plane.kopf_connection(), settings):
        # The reference's two commands; the body also carries the `data` it requires.
        with_data = REFERENCE_BODY.replace(
            "{\n", f'{{\n"data": "s3://{bucket}/data/portrait.zip",\n'
        )
        submitted = reference_submit(gateway.url, key, with_data)
        assert submitted["code"] == 200 and submitted["data"]["status"] == "created"
        request_id = submitted["data"]["id"]

        def result() -> dict | None:
            answer = json.loads(
                curl(
                    "--location",
                    "--request",
                    "GET",
                    f"{gateway.url}/api/v3/predictions/{request_id}/result",
                    "--header",
                    f"Authorization: Bearer {key}",
                )
            )
            return answer if answer["data"]["status"] in ("completed", "failed") else None

        final = await eventually(result, "the prediction ends", timeout=400)
    data = final["data"]
    assert data["status"] == "completed", data["error"]
    assert data["error"] == "" and data["timings"]["inference"] > 0
    assert data["has_nsfw_contents"] == [False] * len(data["outputs"])
    lora_url = data["outputs"][0]
    assert lora_url.endswith("/lora.safetensors")

    downloaded = tmp_path / "lora.safetensors"
    curl(
        "--fail", "--output", str(downloaded), lora_url, "--header", f"Authorization: Bearer {key}"
    )
    (item,) = cluster_admin.list_objects("LoRATrainingJob", namespace, "")
    stored_key = item["status"]["outputs"][0].removeprefix(f"s3://{bucket}/")
    expected = s3.get_object(Bucket=bucket, Key=stored_key)["Body"].read()
    assert downloaded.read_bytes() == expected
    # Without the key, no download.
    assert curl("--output", "/dev/null", "--write-out", "%{http_code}", lora_url) == "401"

    # Another tenant gets no byte of this run: not by its id, and not through a status of
    # their own that names its files (whoever wrote that status).
    other = f"{namespace}-b"
    create_namespace(cluster_admin, other)
    try:
        theirs = new_key()
        gateway.set_keys(team=(key, namespace), them=(theirs, other))
        time.sleep(1)  # the key Secret is re-read
        for url in data["outputs"]:
            code = curl("--output", "/dev/null", "--write-out", "%{http_code}", url,
                        "--header", f"Authorization: Bearer {theirs}")  # fmt: skip
            assert code == "404"
        decoy = cluster_admin.request(
            "POST",
            path(resource.KIND, other),
            {"apiVersion": resource.API_VERSION, "kind": resource.KIND,
             "metadata": {"name": "decoy"}, "spec": {"data": "https://example.com/a.zip"}},
        )  # fmt: skip
        cluster_admin.patch_status(
            resource.KIND,
            other,
            "decoy",
            {"phase": "completed", "outputs": item["status"]["outputs"]},
        )
        decoy_id = decoy["metadata"]["uid"]
        status, answer = gateway.call("GET", f"/api/v3/predictions/{decoy_id}/result", theirs)
        assert status == 200 and answer["data"]["outputs"] == []
        for name in ("lora.safetensors", "config.json"):
            code = curl("--output", "/dev/null", "--write-out", "%{http_code}",
                        f"{gateway.url}/api/v3/predictions/{decoy_id}/outputs/{name}",
                        "--header", f"Authorization: Bearer {theirs}")  # fmt: skip
            assert code == "404"
    finally:
        cluster_admin.request("DELETE", path("Namespace", name=other))


SYNC_WAIT_SECONDS = 4
SHORT_SYNC_WAIT = ("--sync-wait-seconds", str(SYNC_WAIT_SECONDS))


@pytest.mark.parametrize("gateway", [SHORT_SYNC_WAIT], indirect=True)
def test_sync_mode_answers_when_the_run_ends_or_says_it_timed_out(
    gateway, cluster_admin, namespace
):
    key = new_key()
    gateway.set_keys(team=(key, namespace))
    body = b'{"data": "https://example.com/a.zip", "steps": 600, "enable_sync_mode": true}'
    # No operator runs here: the run never starts, so the answer comes after the sync wait,
    # in the form the hosted SDK reads as a sync-mode timeout, naming the task.
    began = time.monotonic()
    status, answer = gateway.call("POST", SUBMIT, key, body)
    waited = time.monotonic() - began
    data = answer["data"]
    assert status == 200 and SYNC_WAIT_SECONDS <= waited < SYNC_WAIT_SECONDS + 5
    assert data["code"] == 5004 and data["status"] == "created"
    assert data["error"].startswith("Sync mode timed out") and data["id"] in data["error"]
    (item,) = cluster_admin.list_objects(resource.KIND, namespace, "")
    assert item["spec"]["steps"] == 600 and "enableSyncMode" not in item["spec"]
    # The hosted SDK reads that answer as a sync-mode timeout of that task.
    sdk = wavespeed.Client(api_key=key, base_url=gateway.url, max_retries=0)
    timed_out = sdk.run_no_throw(
        MODEL_ID, {"data": "https://example.com/a.zip", "steps": 600}, enable_sync_mode=True
    )
    assert timed_out["status"] == "processing" and timed_out["outputs"] is None
    assert timed_out["error"].startswith(f"Sync mode timed out (task_id: {timed_out['task_id']})")
    for extra in cluster_admin.list_objects(resource.KIND, namespace, ""):
        if extra["metadata"]["uid"] != data["id"]:
            cluster_admin.delete(resource.KIND, namespace, extra["metadata"]["name"])

    # A run that ends while its answer is held is answered at once, with how it ended.
    with ThreadPoolExecutor(1) as pool:
        held = pool.submit(gateway.call, "POST", SUBMIT, key, body)
        began = time.monotonic()

        def second_run():
            items = cluster_admin.list_objects(resource.KIND, namespace, "")
            return next((i for i in items if i["metadata"]["uid"] != data["id"]), None)

        while (run := second_run()) is None:
            time.sleep(0.05)
        ended = {"phase": "failed", "error": "data: the archive is not a zip"}
        cluster_admin.patch_status(resource.KIND, namespace, run["metadata"]["name"], ended)
        status, answer = held.result(timeout=30)
    assert status == 200 and time.monotonic() - began < SYNC_WAIT_SECONDS
    assert answer["data"]["id"] == run["metadata"]["uid"]
    assert answer["data"]["status"] == "failed" and "code" not in answer["data"]
    assert answer["data"]["error"] == "data: the archive is not a zip"


def test_a_key_past_its_rate_limit_gets_429_and_others_do_not(gateway, namespace):
    busy, calm = new_key(), new_key()
    gateway.set_keys(busy=(busy, namespace), calm=(calm, namespace))
    missing = "/api/v3/predictions/no-such-id/result"
    codes = []
    # Until refused: how many requests that takes depends on how fast they go (the bucket
    # refills RATE_LIMIT a second), but never fewer than the burst.
    while 429 not in codes and len(codes) < RATE_BURST * 4:
        codes.append(gateway.call("GET", missing, busy)[0])
    assert codes[0] == 404 and codes[-1] == 429
    assert codes.index(429) >= RATE_BURST and set(codes[:-1]) == {404}
    status, answer = gateway.call("GET", missing, busy)
    assert status == 429 and answer["code"] == 429 and "too many requests" in answer["message"]
    assert gateway.call("GET", missing, calm)[0] == 404


async def test_a_namespace_quota_refusal_is_a_clear_403(gateway, cluster_admin, namespace):
    key = new_key()
    gateway.set_keys(team=(key, namespace))
    set_quota(cluster_admin, namespace, "no-more-training", {f"count/{CRD_NAME}": "0"})
    body = b'{"data": "https://example.com/a.zip"}'

    def refused():
        status, answer = gateway.call("POST", SUBMIT, key, body)
        return status == 403 and answer

    answer = await eventually(refused, "the quota applies")
    assert answer["code"] == 403 and "exceeded quota: no-more-training" in answer["message"]
