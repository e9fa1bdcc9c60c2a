"""Webhooks on the real control plane: when a run ends, the operator POSTs its prediction object
to spec.webhook (or the gateway's ?webhook=), signed with the namespace's secret as the hosted
platform signs; a receiver's 500 is retried, a restart never sends a delivered one again, and
receivers the rules refuse never see a request."""

import json
import time
from urllib.parse import quote

import pytest

from fluxlora_api import resource
from fluxlora_gateway.keys import new_key
from fluxlora_localcluster.operator import embedded_operator
from fluxlora_localcluster.training_site import submit
from fluxlora_localcluster.waiting import eventually
from fluxlora_localcluster.webhook_receiver import webhook_receiver
from fluxlora_net.webhooks import verify
from fluxlora_operator.settings import OperatorSettings
from fluxlora_operator.webhook_secret import SECRET_NAME, webhook_secret

pytestmark = pytest.mark.timeout(300)

SETTINGS = OperatorSettings(
    default_output="s3://loras",
    trainer_image="trainer:test",
    resync_seconds=2,
    progress_port=0,
    webhook_allowed_networks=["127.0.0.0/8"],  # the receivers run on loopback
)
LOOPBACK = ("--webhook-allowed-networks", "127.0.0.0/8")
SUBMIT = "/api/v3/wavespeed-ai/flux-dev-lora-trainer"


async def webhook_status(kube, namespace: str, state: str, name: str = "portrait") -> dict:
    def ended():
        status = (kube.get(resource.KIND, namespace, name) or {}).get("status") or {}
        return (status.get("webhook") or {}).get("state") == state and status

    return await eventually(ended, f"the webhook is {state}", timeout=60)


def events(kube, namespace: str, reason: str) -> list[dict]:
    items = kube.request("GET", f"/api/v1/namespaces/{namespace}/events")["items"]
    return [e for e in items if e["reason"] == reason]


async def test_a_run_that_ends_calls_its_webhook_signed_again_after_a_500_and_never_twice(
    control_plane, cluster_admin, namespace
):
    connection = control_plane.kopf_connection()
    with webhook_receiver(500, 200) as hook:
        async with embedded_operator(cluster_admin, connection, SETTINGS):
            # A priority class the operator does not allow: the run fails at once.
            submit(cluster_admin, namespace, priorityClassName="urgent", steps=600,
                   webhook=hook.url)  # fmt: skip
            pending = await webhook_status(cluster_admin, namespace, "pending")
        assert pending["webhook"]["attempts"] == 1
        assert pending["webhook"]["lastError"] == "the receiver answered HTTP 500"
        # The operator stopped after the 500; the next one goes on with the retry.
        async with embedded_operator(cluster_admin, connection, SETTINGS):
            status = await webhook_status(cluster_admin, namespace, "delivered")
        assert status["webhook"]["attempts"] == 2 and "lastError" not in status["webhook"]
        assert len(hook.requests) == 2
        (first, headers, body), (second, again, same) = hook.requests
        # The first retry waits 5 s after the attempt's recorded time (whole seconds).
        assert second - first >= 3.9
        secret = webhook_secret(cluster_admin, namespace)  # the Secret the operator made
        for sent_headers, sent in ((headers, body), (again, same)):
            assert verify(secret, sent_headers, sent, time.time())
        assert headers["webhook-id"] == again["webhook-id"]  # one message, retried
        data = json.loads(body)
        assert data["id"] == status["id"] and data["status"] == "failed"
        assert data["error"].startswith("spec.priorityClassName")
        assert data["input"]["steps"] == 600 and data["input"]["lora_rank"] == 16
        assert events(cluster_admin, namespace, "WebhookDelivered")

        # A restarted operator lists the run again and sends nothing.
        async with embedded_operator(cluster_admin, connection, SETTINGS):
            await eventually(lambda: events(cluster_admin, namespace, "WebhookDelivered"), "")
            time.sleep(SETTINGS.resync_seconds * 3)
        assert len(hook.requests) == 2


async def test_a_final_answer_ends_the_delivery_and_refused_receivers_see_nothing(
    control_plane, cluster_admin, namespace
):
    connection = control_plane.kopf_connection()
    refusing = SETTINGS.model_copy(update={"webhook_allowed_networks": []})
    with webhook_receiver(404) as gone, webhook_receiver(200) as private:
        async with embedded_operator(cluster_admin, connection, refusing):
            submit(cluster_admin, namespace, "gone", priorityClassName="urgent", webhook=gone.url)
            submit(cluster_admin, namespace, "private", priorityClassName="urgent",
                   webhook=private.url.replace("127.0.0.1", "localhost"))  # fmt: skip
            refused = await webhook_status(cluster_admin, namespace, "failed", "private")
            # Loopback is not allowed here: the 404 receiver is refused too.
            await webhook_status(cluster_admin, namespace, "failed", "gone")
        assert private.requests == [] and gone.requests == []
        error = refused["webhook"]["lastError"]
        assert error.startswith("webhook: localhost resolves to 127.0.0.1")
        assert "the operator sends webhooks only to public addresses" in error
        assert events(cluster_admin, namespace, "WebhookFailed")

        async with embedded_operator(cluster_admin, connection, SETTINGS):
            submit(cluster_admin, namespace, "final", priorityClassName="urgent",
                   webhook=gone.url)  # fmt: skip
            final = await webhook_status(cluster_admin, namespace, "failed", "final")
        assert final["webhook"]["attempts"] == 1 and len(gone.requests) == 1
        assert final["webhook"]["lastError"] == "the receiver answered HTTP 404"


async def test_a_finished_run_goes_after_its_ttl_but_not_before_its_webhook_is_delivered(
    control_plane, cluster_admin, namespace
):
    connection = control_plane.kopf_connection()
    with webhook_receiver(500, 200) as hook:
        async with embedded_operator(cluster_admin, connection, SETTINGS):
            submit(cluster_admin, namespace, priorityClassName="urgent", webhook=hook.url,
                   ttlSecondsAfterFinished=0)  # fmt: skip
            await eventually(
                lambda: cluster_admin.get(resource.KIND, namespace, "portrait") is None,
                "the finished run is deleted",
                timeout=60,
            )
        # Only once delivered: the 500 was retried first, and the record kept till then.
        assert len(hook.requests) == 2


@pytest.mark.parametrize("gateway", [LOOPBACK], indirect=True)
async def test_the_gateways_webhook_parameter_and_secret(
    gateway, control_plane, cluster_admin, namespace, two_tenants
):
    mine, theirs, _ = two_tenants
    status, answer = gateway.call("GET", "/api/v3/webhook/secret", mine)
    secret = answer["data"]["secret"]
    assert status == 200 and secret.startswith("whsec_")
    assert gateway.call("GET", "/api/v3/webhook/secret", mine)[1]["data"]["secret"] == secret
    assert webhook_secret(cluster_admin, namespace) == secret  # kept in the namespace
    assert cluster_admin.get("Secret", namespace, SECRET_NAME)["type"] == "Opaque"
    assert gateway.call("GET", "/api/v3/webhook/secret", theirs)[1]["data"]["secret"] != secret

    body = b'{"data": "https://example.com/a.zip"}'
    for url, rule in (
        ("http://169.254.169.254/latest", "is a cloud metadata address; webhooks never"),
        ("ftp://example.com/in", "is not an http or https URL"),
    ):
        status, answer = gateway.call("POST", f"{SUBMIT}?webhook={quote(url)}", mine, body)
        assert status == 400 and answer["message"].startswith("webhook: ")
        assert rule in answer["message"]

    # The operator has no output destination: a gateway run fails at once and calls back
    # with the gateway's own links.
    settings = SETTINGS.model_copy(update={"default_output": None})
    with webhook_receiver(200) as hook:
        async with embedded_operator(cluster_admin, control_plane.kopf_connection(), settings):
            url = f"{SUBMIT}?webhook={quote(hook.url)}"
            status, answer = gateway.call("POST", url, mine, body)
            assert status == 200
            name = next(iter(cluster_admin.list_objects(resource.KIND, namespace, "")))
            await webhook_status(cluster_admin, namespace, "delivered", name["metadata"]["name"])
        ((_, headers, sent),) = hook.requests
    data = json.loads(sent)
    assert data["id"] == answer["data"]["id"] and data["status"] == "failed"
    assert data["urls"]["get"] == answer["data"]["urls"]["get"]
    assert verify(secret, headers, sent, time.time())


@pytest.mark.parametrize("gateway", [()], indirect=True)
def test_the_gateway_refuses_a_loopback_webhook_unless_allowed(gateway, namespace):
    key = new_key()
    gateway.set_keys(team=(key, namespace))
    body = b'{"data": "https://example.com/a.zip"}'
    url = f"{SUBMIT}?webhook={quote('http://127.0.0.1:9/in')}"
    status, answer = gateway.call("POST", url, key, body)
    assert status == 400
    assert answer["message"] == (
        "webhook: 127.0.0.1 is a loopback address; the operator sends webhooks only to public "
        "addresses and its webhook allowed networks"
    )
