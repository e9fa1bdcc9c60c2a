"""Uploads through the gateway, and the hosted platform's own SDK (`wavespeed`, unmodified but
for its base URL and key) driving the whole flow: upload a zip, train it to `completed` in sync
mode, download the LoRA; a bad archive fails naming it. Tenants never read or train on each
other's uploads."""

import json
import urllib.request

import pytest
import requests
import wavespeed

from fluxlora_api import resource
from fluxlora_gateway.dataset_check import INSPECT_PATH
from fluxlora_gateway.hosted import MODEL_ID
from fluxlora_gateway.keys import new_key
from fluxlora_gateway.uploads import BINARY_PATH
from fluxlora_localcluster.datasets import image_bytes, make_zip, photos
from fluxlora_localcluster.operator import embedded_operator, settings_from
from fluxlora_localcluster.training_site import (
    model_cache_claim,
    operator_environment,
    store_credentials,
)
from tests.cluster.conftest import REAL_NODE_TOLERATION

pytestmark = pytest.mark.timeout(600)

SUBMIT = f"/api/v3/{MODEL_ID}"
UPLOAD_LIMIT = 100_000


def sdk(gateway, key: str) -> wavespeed.Client:
    return wavespeed.Client(api_key=key, base_url=gateway.url, max_retries=0)


def get(url: str, key: str | None = None) -> requests.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return requests.get(url, headers=headers, timeout=30)


def stored_keys(gateway) -> list[str]:
    bucket, _, prefix = gateway.uploads_prefix.removeprefix("s3://").partition("/")
    listing = gateway.s3.list_objects_v2(Bucket=bucket, Prefix=prefix)
    return [item["Key"] for item in listing.get("Contents") or []]


@pytest.fixture
def s3_of(gateway, host_s3):
    gateway.s3 = host_s3.client()
    return gateway


def test_the_sdk_uploads_a_zip_that_only_its_own_namespace_can_read(
    s3_of, namespace, two_tenants, tmp_path
):
    gateway = s3_of
    mine, theirs, _ = two_tenants
    dataset = make_zip(tmp_path / "My Portraits.zip", photos(3))
    url = sdk(gateway, mine).upload(str(dataset))
    assert url.startswith(gateway.url + "/api/v3/media/files/")
    assert url.endswith("/My_Portraits.zip")

    assert get(url, mine).content == dataset.read_bytes()
    assert get(url).status_code == 401
    refused = get(url, theirs)
    assert refused.status_code == 404 and refused.json()["code"] == 404
    # Stored under the key's namespace, with a random folder.
    (key,) = [k for k in stored_keys(gateway) if k.endswith("My_Portraits.zip")]
    assert key.startswith(f"uploads/{namespace}/") and len(key.split("/")[2]) >= 32
    assert not [k for k in stored_keys(gateway) if "/.tickets/" in k]  # used up


def test_an_upload_is_checked_by_the_trainers_rules_for_its_own_namespace_only(
    s3_of, two_tenants, tmp_path
):
    gateway = s3_of
    mine, theirs, _ = two_tenants
    url = sdk(gateway, mine).upload(str(make_zip(tmp_path / "d.zip", photos(3))))

    def inspect(key: str, data: str) -> tuple[int, dict]:
        body = json.dumps({"data": data, "trigger_word": "sks"}).encode()
        return gateway.call("POST", INSPECT_PATH, key, body)

    status, answer = inspect(mine, url)
    assert status == 200, answer
    report = answer["data"]
    assert [image["caption"] for image in report["images"]] == ["sks"] * 3
    assert all(image["thumbnail"].startswith("data:image/jpeg") for image in report["images"])
    assert report["warning"].startswith("only 3 usable image(s)")
    status, answer = inspect(theirs, url)  # another namespace's key: no such upload
    assert status == 404 and answer["message"].startswith("data: no upload d.zip")
    status, answer = inspect(mine, "https://example.com/d.zip")  # not an upload
    assert status == 400 and answer["message"].startswith("data: ")


@pytest.mark.parametrize("gateway", [("--upload-max-bytes", str(UPLOAD_LIMIT))], indirect=True)
def test_the_one_shot_form_takes_zips_and_images_and_refuses_the_rest(s3_of, namespace, tmp_path):
    gateway = s3_of
    key = new_key()
    gateway.set_keys(team=(key, namespace))
    headers = {"Authorization": f"Bearer {key}"}
    binary = gateway.url + BINARY_PATH

    png = image_bytes("PNG")
    answer = requests.post(binary, headers=headers, files={"file": ("face.png", png)}, timeout=30)
    data = answer.json()["data"]
    assert answer.status_code == 200 and data["type"] == "image/png"
    assert (data["filename"], data["size"]) == ("face.png", len(png))
    assert get(data["download_url"], key).content == png

    text = requests.post(binary, headers=headers, files={"file": ("notes.txt", b"hi")}, timeout=30)
    assert text.status_code == 400 and text.json()["message"].startswith("file: 'notes.txt'")
    missing = requests.post(binary, headers=headers, files={"other": ("a.zip", b"x")}, timeout=30)
    assert (missing.status_code, missing.json()["message"]) == (
        400,
        "file: is required (a multipart/form-data field)",
    )

    big = b"\0" * (UPLOAD_LIMIT + 1)
    answer = requests.post(binary, headers=headers, files={"file": ("big.zip", big)}, timeout=30)
    assert answer.status_code == 413 and answer.json()["code"] == 413
    assert str(UPLOAD_LIMIT) in answer.json()["message"]
    # The SDK's two steps refuse it at the first, before any byte is sent.
    with pytest.raises(RuntimeError, match="HTTP 413"):
        sdk(gateway, key).upload(str(make_zip(tmp_path / "big.zip", {"a.bin": big})))
    # Nothing of the refused uploads stays in the store.
    bucket = gateway.uploads_prefix.removeprefix("s3://").split("/")[0]
    assert gateway.s3.list_multipart_uploads(Bucket=bucket).get("Uploads") is None
    assert [k.rsplit("/", 1)[-1] for k in stored_keys(gateway)] == ["face.png"]


def test_an_upload_is_data_for_its_own_namespace_only_and_the_trainer_needs_no_gateway(
    s3_of, cluster_admin, namespace, two_tenants, host_s3, tmp_path
):
    gateway = s3_of
    mine, theirs, _ = two_tenants
    dataset = make_zip(tmp_path / "portrait.zip", photos(3))
    url = sdk(gateway, mine).upload(str(dataset))

    body = json.dumps({"data": url, "steps": 500}).encode()
    assert gateway.call("POST", SUBMIT, mine, body)[0] == 200
    (item,) = cluster_admin.list_objects(resource.KIND, namespace, "")
    data = item["spec"]["data"]
    # The trainer gets the object in S3 itself: a presigned link, no key, no gateway.
    assert data.startswith(f"{host_s3.endpoint}/") and "portrait.zip?" in data
    with urllib.request.urlopen(data, timeout=30) as answer:
        assert answer.read() == dataset.read_bytes()

    status, answer = gateway.call("POST", SUBMIT, theirs, body)
    assert status == 400 and answer["message"].startswith("data: no upload portrait.zip")


async def test_the_hosted_sdk_uploads_trains_in_sync_mode_and_downloads_the_lora(
    s3_of, control_plane, cluster_admin, namespace, real_node, tiny_model, host_s3, tmp_path
):
    gateway = s3_of
    bucket = "sdk-outputs"
    host_s3.client().create_bucket(Bucket=bucket)
    store_credentials(cluster_admin, namespace, host_s3)
    model_cache_claim(cluster_admin, real_node, namespace, tiny_model)
    key = new_key()
    gateway.set_keys(team=(key, namespace))
    client = sdk(gateway, key)
    environment = operator_environment(host_s3, bucket, (REAL_NODE_TOLERATION,))
    async with embedded_operator(
        cluster_admin, control_plane.kopf_connection(), settings_from(environment)
    ):
        dataset = client.upload(str(make_zip(tmp_path / "portrait.zip", photos(4))))
        broken = tmp_path / "broken.zip"
        broken.write_bytes(b"this is no zip archive")
        broken_url = client.upload(str(broken))

        def run(data: str) -> dict:
            inputs = {"data": data, "steps": 500, "trigger_word": "p3r5on"}
            return client.run_no_throw(MODEL_ID, inputs, enable_sync_mode=True)

        # Blocking SDK calls, off the event loop the embedded operator runs on.
        import asyncio

        trained, failed = await asyncio.gather(
            asyncio.to_thread(run, dataset), asyncio.to_thread(run, broken_url)
        )
    assert trained["status"] == "completed", trained["error"]
    lora_url = trained["outputs"][0]
    assert lora_url.endswith("/lora.safetensors")
    lora = get(lora_url, key)
    assert lora.status_code == 200 and len(lora.content) > 1000
    assert lora.content[8:9] == b"{"  # a safetensors header

    assert failed["status"] == "failed" and failed["outputs"] is None
    assert "broken.zip" in failed["error"] and "not a zip file" in failed["error"]
