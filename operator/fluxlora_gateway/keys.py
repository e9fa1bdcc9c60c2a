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

from fluxlora_kube.client import Kube

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
    restart. One request re-reads it while the others go on with the last good keys; a failed
    read keeps them too and is tried again after RETRY_SECONDS (never a storm of reads)."""

    RETRY_SECONDS = 2.0

    def __init__(self, kube: Kube, namespace: str, secret: str, reload_seconds: float) -> None:
        self.kube, self.namespace, self.secret = kube, namespace, secret
        self.reload_seconds = reload_seconds
        self._tenants: dict[str, Tenant] | None = None  # None: never read yet
        self._next_read = float("-inf")
        self._lock = threading.Lock()

    def _reload(self) -> None:
        try:
            body = self.kube.get("Secret", self.namespace, self.secret)
        except Exception as error:  # the API server is down or refuses: keep the last good keys
            logger.warning("key Secret %s/%s could not be read (%s); keeping the last keys",
                           self.namespace, self.secret, error)  # fmt: skip
            self._next_read = time.monotonic() + self.RETRY_SECONDS
            return
        if body is None:  # deleted: every key is revoked
            logger.warning("key Secret %s/%s not found: every request is refused",
                           self.namespace, self.secret)  # fmt: skip
        self._tenants = parse_entries((body or {}).get("data") or {})
        self._next_read = time.monotonic() + self.reload_seconds

    def tenant(self, key: str) -> Tenant | None:
        """The key's tenant; raises KeysUnavailable only before any read has succeeded."""
        due = time.monotonic() >= self._next_read
        # The first read must be waited for; later ones only by the request that does them.
        if due and self._lock.acquire(blocking=self._tenants is None):
            try:
                if time.monotonic() >= self._next_read:
                    self._reload()
            finally:
                self._lock.release()
        tenants = self._tenants
        if tenants is None:
            raise KeysUnavailable("the API keys could not be read yet; try again shortly")
        return find_tenant(key, tenants)


class KeysUnavailable(Exception):
    """No key set has been read yet (the API server was unreachable since the start)."""
