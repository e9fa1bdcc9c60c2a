"""What the operator sends to a run's webhook and when, as pure functions: the body (the hosted
prediction object with the submitted `input`), the retry schedule, and the record of each
attempt that status.webhook keeps. webhook_sender does the sending."""

import json
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError

from fluxlora_api.prediction import GATEWAY_URL_ANNOTATION, own_outputs, prediction
from fluxlora_api.spec import LoRATrainingJobSpec
from fluxlora_api.status import WebhookDelivery, is_finished
from fluxlora_net.urls import display_url
from fluxlora_operator.clock import format_time, parse_time

FIRST_RETRY_SECONDS = 5.0
MAX_RETRY_SECONDS = 300.0
ATTEMPT_SECONDS = 10.0  # the longest one POST may take, connecting included
RETRIED_CLIENT_ERRORS = {408, 425, 429}  # any other 4xx from the receiver is final


def delivery_of(obj: dict[str, Any]) -> WebhookDelivery:
    return WebhookDelivery.model_validate(((obj.get("status") or {}).get("webhook")) or {})


def wants_delivery(obj: dict[str, Any]) -> bool:
    """A run that ended, has a webhook, and whose delivery is not over."""
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    return (
        bool(spec.get("webhook")) and is_finished(status) and (delivery_of(obj).state == "pending")
    )


def message_id(obj: dict[str, Any]) -> str:
    """The same for every attempt, so a receiver can drop a repeat."""
    return f"msg_{obj['metadata']['uid']}"


def _input(spec: dict[str, Any]) -> dict[str, Any]:
    """The submitted parameters, as the hosted API names them (data without credentials)."""
    try:
        parsed = LoRATrainingJobSpec.model_validate(spec)
    except ValidationError:
        return {"data": display_url(str(spec.get("data", "")))}
    return {
        "data": display_url(parsed.data),
        "trigger_word": parsed.trigger_word,
        "steps": parsed.steps,
        "learning_rate": parsed.effective_learning_rate,
        "lora_rank": parsed.lora_rank,
    }


def webhook_body(obj: dict[str, Any]) -> bytes:
    """The prediction object, as the gateway answers it (links through the gateway that made
    the resource; storage URLs for one made with kubectl), plus `input`."""
    gateway = ((obj["metadata"].get("annotations") or {}).get(GATEWAY_URL_ANNOTATION) or "").rstrip(
        "/"
    )
    data = prediction(obj, gateway)
    if not gateway:
        data["outputs"] = own_outputs(obj)
        data["urls"] = {"get": ""}
    data["input"] = _input(obj.get("spec") or {})
    return json.dumps(data, separators=(",", ":")).encode()


def due_at(delivery: WebhookDelivery, now: datetime) -> datetime:
    """When the next POST is due: at once, then after 5 s, 10 s, 20 s ... at most 5 min apart."""
    if delivery.attempts == 0 or delivery.last_attempt_at is None:
        return now
    wait = min(FIRST_RETRY_SECONDS * 2 ** (delivery.attempts - 1), MAX_RETRY_SECONDS)
    return parse_time(delivery.last_attempt_at) + timedelta(seconds=wait)


def after_attempt(
    delivery: WebhookDelivery,
    now: datetime,
    status: int | None,
    error: str | None,
    final: bool,
    retry_seconds: float,
) -> WebhookDelivery:
    """The record after one POST: its HTTP `status` (None if none came) or `error`; `final`
    when no retry could help (a refused address)."""
    stamp = format_time(now)
    first = delivery.first_attempt_at or stamp
    attempts = delivery.attempts + 1
    if status is not None and 200 <= status < 300:
        return WebhookDelivery(
            state="delivered", attempts=attempts, first_attempt_at=first,
            last_attempt_at=stamp, delivered_at=stamp,
        )  # fmt: skip
    if status is not None:
        error = f"the receiver answered HTTP {status}"
        final = final or (400 <= status < 500 and status not in RETRIED_CLIENT_ERRORS)
    over = now - parse_time(first) >= timedelta(seconds=retry_seconds)
    if over and not final:
        error = f"{error}; gave up after {attempts} attempts in {retry_seconds:g} s"
    return WebhookDelivery(
        state="failed" if final or over else "pending",
        attempts=attempts,
        first_attempt_at=first,
        last_attempt_at=stamp,
        last_error=(error or "")[:2048],
    )
