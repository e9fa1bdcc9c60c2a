"""Delivers each ended run's webhook, at least once: every resource event offers the resource
(consider), due deliveries are POSTed from a few threads of their own (a slow receiver never
holds a handler), and each attempt is recorded in status.webhook before the next is planned. A
restart lists every resource again, so a pending delivery goes on and a finished one is never
repeated. Only the replica that acts (peering) sends."""

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from urllib3.util import parse_url

from fluxlora_api import resource
from fluxlora_api.status import status_fields
from fluxlora_kube.client import Kube
from fluxlora_net.guarded_http import DownloadGuard, RefusedAddress, guarded_pool
from fluxlora_net.webhooks import ADDRESS_RULE, ALWAYS_RULE, signed_headers
from fluxlora_operator.clock import utcnow
from fluxlora_operator.due import DueWorker
from fluxlora_operator.events import Event
from fluxlora_operator.settings import OperatorSettings
from fluxlora_operator.webhook_delivery import (
    ATTEMPT_SECONDS,
    after_attempt,
    delivery_of,
    due_at,
    message_id,
    wants_delivery,
    webhook_body,
)
from fluxlora_operator.webhook_secret import BadWebhookSecret, webhook_secret

logger = logging.getLogger(__name__)

SENDER_THREADS = 4


def post(url: str, body: bytes, headers: dict[str, str], allowed_networks: list[str]) -> int:
    """POST `body`; the receiver's HTTP status. Connects only where the address rules allow
    (RefusedAddress otherwise), follows no redirect, and gives up after ATTEMPT_SECONDS."""
    parts = parse_url(url)
    with DownloadGuard(allowed_networks, ATTEMPT_SECONDS) as guard:
        pool = guarded_pool(guard, parts.scheme or "http", parts.host or "", parts.port,
                            ATTEMPT_SECONDS)  # fmt: skip
        with pool:
            response = pool.urlopen(
                "POST", parts.request_uri, body=body, headers=headers, redirect=False,
                retries=False, preload_content=True,
            )  # fmt: skip
            return response.status


class WebhookSender(DueWorker):
    def __init__(
        self,
        kube: Kube,
        settings: OperatorSettings,
        post_event: Callable[[dict[str, Any], Event], None],
        active: Callable[[], bool] = lambda: True,
    ) -> None:
        super().__init__("webhook-sender")
        self.kube, self.settings, self.post_event, self.active = kube, settings, post_event, active
        self._sending: set[tuple[str, str]] = set()  # one attempt at a time per resource
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(SENDER_THREADS, thread_name_prefix="webhook")

    def stop(self) -> None:
        super().stop()
        self._pool.shutdown(wait=False, cancel_futures=True)

    def consider(self, obj: dict[str, Any]) -> None:
        """Plan the delivery of `obj`'s webhook if it is due now or later (from any thread)."""
        if not wants_delivery(obj):
            return
        now = utcnow()
        wait = (due_at(delivery_of(obj), now) - now).total_seconds()
        meta = obj["metadata"]
        self.due.plan_in((meta["namespace"], meta["name"]), wait)

    def handle(self, namespace: str, name: str) -> None:
        """Hand a due delivery to the sending threads (a slow receiver holds none else)."""
        key = (namespace, name)
        with self._lock:
            busy = key in self._sending
            if not busy:
                self._sending.add(key)
        if busy:  # one attempt at a time: look again after it
            self.due.plan_in(key, 1.0)
            return
        self._pool.submit(self._send_logged, namespace, name)

    def _send_logged(self, namespace: str, name: str) -> None:
        try:
            self._send(namespace, name)
        except Exception:
            logger.exception("webhook of %s/%s: delivery failed; tried again", namespace, name)
            self._done(namespace, name, retry_in=self.RETRY_SECONDS)
        else:
            self._done(namespace, name)

    def _done(self, namespace: str, name: str, retry_in: float | None = None) -> None:
        with self._lock:
            self._sending.discard((namespace, name))
        if retry_in is not None:
            self.due.plan_in((namespace, name), retry_in)

    def _send(self, namespace: str, name: str) -> None:
        """One attempt, decided from the resource as it is now, and recorded."""
        if not self.active():
            self.due.plan_in((namespace, name), self.IDLE_SECONDS)
            return
        obj = self.kube.get(resource.KIND, namespace, name)
        if obj is None or not wants_delivery(obj):
            return
        delivery, now = delivery_of(obj), utcnow()
        if due_at(delivery, now) > now:
            self.consider(obj)
            return
        url = obj["spec"]["webhook"]
        body, stamp = webhook_body(obj), int(time.time())
        status, error, final = None, None, False
        try:
            secret = webhook_secret(self.kube, namespace)
            headers = signed_headers(secret, message_id(obj), stamp, body)
            status = post(url, body, headers, self.settings.webhook_allowed_networks)
        except BadWebhookSecret as bad:  # nothing sent; fixed by deleting the Secret
            error = str(bad)
        except RefusedAddress as refused:
            rule = ALWAYS_RULE if refused.refusal.always else ADDRESS_RULE
            error, final = f"webhook: {refused}; {rule}", True
        except Exception as failure:  # connection refused, timeout, TLS: worth a retry
            error = f"webhook: {type(failure).__name__}: {failure}"
        record = after_attempt(delivery, utcnow(), status, error, final,
                               self.settings.webhook_retry_seconds)  # fmt: skip
        self.kube.patch_status(
            resource.KIND, namespace, name, status_fields(webhook=record.model_dump())
        )
        why = f" ({record.last_error})" if record.last_error else ""
        logger.info("webhook of %s/%s: attempt %d, %s%s", namespace, name, record.attempts,
                    record.state, why)  # fmt: skip
        if record.state == "delivered":
            host = parse_url(url).host
            message = f"webhook delivered to {host} (attempt {record.attempts})"
            self.post_event(obj, Event("Normal", "WebhookDelivered", message))
        elif record.state == "failed":
            self.post_event(obj, Event("Warning", "WebhookFailed", record.last_error or ""))
        else:
            self.consider({**obj, "status": {**obj["status"], "webhook": record.model_dump()}})
