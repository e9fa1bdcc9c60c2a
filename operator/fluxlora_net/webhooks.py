"""Webhooks as the hosted platform sends them: the signature a receiver checks, and which
receiver URLs may be called at all.

Signed with the namespace's secret (`whsec_...`, the prefix removed and the rest used as is):
headers `webhook-id`, `webhook-timestamp` (Unix seconds) and `webhook-signature: v3,<hex>`,
the HMAC-SHA256 of `<id>.<timestamp>.<raw body>`. Receivers reject messages older than
MAX_AGE_SECONDS."""

import hashlib
import hmac
import ipaddress
import secrets
import socket
from collections.abc import Iterable, Mapping
from urllib.parse import urlsplit

from fluxlora_net.addresses import parse_address, refusal

SECRET_PREFIX = "whsec_"
MAX_AGE_SECONDS = 300
ADDRESS_RULE = (
    "the operator sends webhooks only to public addresses and its webhook allowed networks"
)
ALWAYS_RULE = "webhooks never go to link-local or cloud metadata addresses"


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_hex(32)


def signature(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    key = secret.removeprefix(SECRET_PREFIX).encode()
    signed = f"{message_id}.{timestamp}.".encode() + body
    return "v3," + hmac.new(key, signed, hashlib.sha256).hexdigest()


def signed_headers(secret: str, message_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature(secret, message_id, timestamp, body),
    }


def verify(secret: str, headers: Mapping[str, str], body: bytes, now: float) -> bool:
    """What a receiver checks: the signature, and that the message is recent."""
    try:
        message_id, timestamp = headers["webhook-id"], int(headers["webhook-timestamp"])
        given = headers["webhook-signature"]
    except (KeyError, ValueError):
        return False
    if abs(now - timestamp) > MAX_AGE_SECONDS:
        return False
    return hmac.compare_digest(given, signature(secret, message_id, timestamp, body))


class RefusedWebhook(ValueError):
    """A webhook URL that may never be called; the message names `webhook` and the rule."""


def check_webhook_url(url: str, allowed_networks: Iterable[str]) -> None:
    """Refuse a URL whose scheme is not http(s) or whose host resolves to an address the rules
    refuse (RefusedWebhook); a name that does not resolve is refused too."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise RefusedWebhook(f"webhook: {url!r} is not an http or https URL")
    host = parts.hostname
    try:
        infos = socket.getaddrinfo(host, parts.port or 443, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as error:
        raise RefusedWebhook(f"webhook: {host} cannot be resolved ({error})") from None
    allowed = [ipaddress.ip_network(network) for network in allowed_networks]
    for *_, sockaddr in infos:
        refused = refusal(parse_address(str(sockaddr[0])), allowed)
        if refused is not None:
            subject = host
            if host != str(refused.address):
                subject = f"{host} resolves to {refused.address}, which"
            rule = ALWAYS_RULE if refused.always else ADDRESS_RULE
            raise RefusedWebhook(f"webhook: {subject} is {refused.kind}; {rule}")
