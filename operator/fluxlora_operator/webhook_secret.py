"""Each namespace's webhook secret, kept in a Secret of that namespace (so its users can read it
with kubectl as well as through the gateway): made on first use by the gateway or the operator,
whichever needs it first. Both may create only this Secret, by the chart's admission policy."""

import base64

from fluxlora_kube.client import ApiError, Kube
from fluxlora_kube.paths import path
from fluxlora_net.webhooks import SECRET_PREFIX, new_secret
from fluxlora_operator import naming

SECRET_NAME = "fluxlora-webhook"
SECRET_KEY = "secret"


class BadWebhookSecret(Exception):
    """The Secret exists but holds no usable secret (someone edited it)."""


def _body(secret: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": SECRET_NAME,
            "labels": {naming.LABEL_MANAGED_BY: naming.MANAGED_BY},
        },
        "data": {SECRET_KEY: base64.b64encode(secret.encode()).decode()},
    }


def webhook_secret(kube: Kube, namespace: str) -> str:
    """The namespace's `whsec_...` secret, made if it has none yet."""
    found = kube.get("Secret", namespace, SECRET_NAME)
    if found is None:
        secret = new_secret()
        try:
            kube.request("POST", path("Secret", namespace), _body(secret))
            return secret
        except ApiError as error:
            if error.status != 409:  # made by the other component meanwhile: read it
                raise
        found = kube.get("Secret", namespace, SECRET_NAME)
    encoded = ((found or {}).get("data") or {}).get(SECRET_KEY, "")
    secret = base64.b64decode(encoded).decode(errors="replace")
    if not secret.startswith(SECRET_PREFIX) or len(secret) <= len(SECRET_PREFIX):
        raise BadWebhookSecret(
            f"Secret {namespace}/{SECRET_NAME} holds no {SECRET_PREFIX}... value under "
            f"{SECRET_KEY!r}: delete it and a new one is made"
        )
    return secret
