"""API keys: kept in a Kubernetes Secret as SHA-256 hashes, each mapped to the one namespace its
holder may use. A key is a long random token, so an unsalted hash is enough to make a leaked
Secret useless, and lookups compare every stored hash in constant time."""

import base64
import hashlib
import hmac
import json
import logging
import secrets
import threading
import time
from dataclasses import dataclass

from fluxlora_operator.kube import Kube

logger = logging.getLogger(__name__)

KEY_BYTES = 32


@dataclass(frozen=True)
class Tenant:
    name: str  # the Secret entry, for logs: never the key
    namespace: str


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    return "flk_" + secrets.token_urlsafe(KEY_BYTES)


def secret_entry(key: str, namespace: str) -> str:
    """The value of one Secret entry for `key`."""
    return json.dumps({"namespace": namespace, "sha256": hash_key(key)})


def parse_entries(data: dict[str, str]) -> dict[str, Tenant]:
    """Stored hash -> tenant, from a Secret's base64 `data`; malformed entries are skipped (and
    logged by name), so one bad entry never locks out the others."""
    tenants: dict[str, Tenant] = {}
    for name, encoded in sorted(data.items()):
        try:
            entry = json.loads(base64.b64decode(encoded))
            digest, namespace = str(entry["sha256"]).lower(), str(entry["namespace"])
            if len(digest) != 64 or not namespace:
                raise ValueError("sha256 must be 64 hex digits and namespace non-empty")
        except (ValueError, KeyError, TypeError) as error:
            logger.warning("key entry %r skipped: %s", name, error)
            continue
        tenants[digest] = Tenant(name, namespace)
    return tenants


def find_tenant(key: str, tenants: dict[str, Tenant]) -> Tenant | None:
    """The tenant of `key`, comparing against every stored hash (no early exit)."""
    presented = hash_key(key).encode()
    found = None
    for digest, tenant in tenants.items():
        if hmac.compare_digest(presented, digest.encode()):
            found = tenant
    return found


class KeyStore:
    """The key Secret, re-read at most every `reload_seconds`: edits take effect without a
    restart."""

    def __init__(self, kube: Kube, namespace: str, secret: str, reload_seconds: float) -> None:
        self.kube, self.namespace, self.secret = kube, namespace, secret
        self.reload_seconds = reload_seconds
        self._tenants: dict[str, Tenant] = {}
        self._loaded_at = float("-inf")
        self._lock = threading.Lock()

    def _reload(self) -> None:
        body = self.kube.get("Secret", self.namespace, self.secret)
        if body is None:
            logger.warning("key Secret %s/%s not found: every request is refused",
                           self.namespace, self.secret)  # fmt: skip
        self._tenants = parse_entries((body or {}).get("data") or {})
        self._loaded_at = time.monotonic()

    def tenant(self, key: str) -> Tenant | None:
        with self._lock:
            if time.monotonic() - self._loaded_at >= self.reload_seconds:
                self._reload()
            tenants = self._tenants
        return find_tenant(key, tenants)
