"""Webhooks as pure parts: the hosted platform's signature, which receivers may be called, the
body, and the record and schedule of attempts."""

import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta

import pytest

from fluxlora_api.prediction import GATEWAY_URL_ANNOTATION
from fluxlora_api.status import WebhookDelivery
from fluxlora_net.webhooks import (
    RefusedWebhook,
    check_webhook_url,
    new_secret,
    signed_headers,
    verify,
)
from fluxlora_operator.clock import format_time
from fluxlora_operator.webhook_delivery import (
    after_attempt,
    due_at,
    wants_delivery,
    webhook_body,
)

NOW = datetime(2026, 12, 5, 12, 0, 0, tzinfo=UTC)
BODY = b'{"id":"u-1","status":"completed"}'


def test_the_signature_is_the_hosted_platforms_hmac_over_id_timestamp_and_body():
    secret = new_secret()
    assert secret.startswith("whsec_") and len(secret) > 40
    headers = signed_headers(secret, "msg_1", 1_700_000_000, BODY)
    # The reference's recipe, spelled out: the secret without its prefix, used as it is.
    key = secret.removeprefix("whsec_").encode()
    expected = hmac.new(key, b"msg_1.1700000000." + BODY, hashlib.sha256).hexdigest()
    assert headers["webhook-signature"] == f"v3,{expected}"
    assert headers["webhook-id"] == "msg_1" and headers["webhook-timestamp"] == "1700000000"
    assert verify(secret, headers, BODY, now=1_700_000_100)


def test_a_receiver_rejects_a_changed_body_another_secret_and_old_messages():
    secret = new_secret()
    headers = signed_headers(secret, "msg_1", 1_700_000_000, BODY)
    assert not verify(secret, headers, BODY + b" ", now=1_700_000_000)
    assert not verify(new_secret(), headers, BODY, now=1_700_000_000)
    assert not verify(secret, headers, BODY, now=1_700_000_000 + 301)
    assert not verify(secret, {**headers, "webhook-id": "msg_2"}, BODY, now=1_700_000_000)


@pytest.mark.parametrize(
    ("url", "allowed", "message"),
    [
        (
            "http://169.254.169.254/hook",
            ["169.254.0.0/16"],
            "a cloud metadata address; webhooks never",
        ),
        ("http://[fe80::1]/hook", ["fe80::/10"], "a link-local address; webhooks never"),
        ("http://127.0.0.1:9/hook", [], "a loopback address; the operator sends webhooks only"),
        ("https://10.1.2.3/hook", ["192.168.0.0/16"], "a private address"),
        ("ftp://example.com/hook", [], "is not an http or https URL"),
        ("http://no-such-host.invalid/hook", [], "no-such-host.invalid cannot be resolved"),
    ],
)
def test_refused_receivers_are_named_with_the_rule(url, allowed, message):
    with pytest.raises(RefusedWebhook, match=r"^webhook: ") as refused:
        check_webhook_url(url, allowed)
    assert message in str(refused.value)


def test_allowed_receivers_pass():
    check_webhook_url("http://127.0.0.1:8080/hook", ["127.0.0.0/8"])
    check_webhook_url("https://8.8.8.8/hook", [])  # a public address


def run(status: dict, spec: dict | None = None, annotations: dict | None = None) -> dict:
    return {
        "metadata": {
            "uid": "u-1", "name": "portrait", "namespace": "team-a",
            "creationTimestamp": "2026-12-05T11:00:00Z", "annotations": annotations or {},
        },
        "spec": {
            "data": "https://user:pw@store.example/d.zip?X-Amz-Signature=abc",
            "webhook": "https://hooks.example/in", "output": "s3://b/p", "steps": 600,
            **(spec or {}),
        },
        "status": status,
    }  # fmt: skip


COMPLETED = {
    "phase": "completed",
    "outputs": ["s3://b/p/team-a/portrait-u-1/lora.safetensors"],
    "timings": {"inference": 5000},
}


def test_the_body_is_the_prediction_object_with_the_submitted_input():
    gateway = {GATEWAY_URL_ANNOTATION: "https://gw.example/"}
    body = json.loads(webhook_body(run(COMPLETED, annotations=gateway)))
    assert body["id"] == "u-1" and body["status"] == "completed"
    assert body["outputs"] == ["https://gw.example/api/v3/predictions/u-1/outputs/lora.safetensors"]
    assert body["input"] == {
        "data": "https://store.example/d.zip",  # no credentials, no signature
        "trigger_word": "p3r5on",
        "steps": 600,
        "learning_rate": 0.0004,
        "lora_rank": 16,
    }
    # Made with kubectl, not through a gateway: the outputs are where they are stored.
    plain = json.loads(webhook_body(run(COMPLETED)))
    assert plain["outputs"] == COMPLETED["outputs"]


def test_only_an_ended_run_with_a_webhook_and_a_delivery_not_over_is_sent():
    assert wants_delivery(run({"phase": "failed", "error": "boom"}))
    assert not wants_delivery(run({"phase": "processing"}))
    assert not wants_delivery(run(COMPLETED, spec={"webhook": None}))
    for state in ("delivered", "failed"):
        assert not wants_delivery(run({**COMPLETED, "webhook": {"state": state}}))
    assert wants_delivery(run({**COMPLETED, "webhook": {"state": "pending", "attempts": 2}}))


def test_retries_back_off_from_5_seconds_to_at_most_5_minutes():
    assert due_at(WebhookDelivery(), NOW) == NOW
    last = format_time(NOW)
    waits = [
        (due_at(WebhookDelivery(attempts=n, last_attempt_at=last), NOW) - NOW).total_seconds()
        for n in range(1, 9)
    ]
    assert waits == [5, 10, 20, 40, 80, 160, 300, 300]


def test_each_attempt_is_recorded_and_only_a_final_answer_or_time_ends_it():
    first = after_attempt(WebhookDelivery(), NOW, 500, None, False, 3600)
    assert (first.state, first.attempts, first.last_error) == (
        "pending",
        1,
        "the receiver answered HTTP 500",
    )
    assert first.first_attempt_at == format_time(NOW)
    busy = after_attempt(first, NOW, 429, None, False, 3600)
    assert busy.state == "pending" and busy.first_attempt_at == first.first_attempt_at
    done = after_attempt(busy, NOW, 204, None, False, 3600)
    assert (done.state, done.attempts, done.delivered_at) == ("delivered", 3, format_time(NOW))
    assert after_attempt(first, NOW, 404, None, False, 3600).state == "failed"  # final
    refused = after_attempt(WebhookDelivery(), NOW, None, "webhook: refused", True, 3600)
    assert (refused.state, refused.last_error) == ("failed", "webhook: refused")
    late = after_attempt(first, NOW + timedelta(hours=1), None, "timed out", False, 3600)
    assert late.state == "failed" and "gave up after 2 attempts in 3600 s" in late.last_error
