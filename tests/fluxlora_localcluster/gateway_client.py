"""A test client of the gateway: its key Secret, requests with a key, readiness."""

import base64
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass

from fluxlora_gateway.keys import secret_entry
from fluxlora_gateway.main import DEFAULT_KEY_SECRET as KEY_SECRET
from fluxlora_kube.client import Kube
from fluxlora_kube.paths import path


@dataclass
class GatewayClient:
    """A caller of the gateway, and the admin who keeps its key Secret."""

    url: str
    kube: Kube
    key_namespace: str
    uploads_prefix: str = ""  # s3://bucket/prefix, where it keeps uploads (if it does)

    def set_keys(self, **keys: tuple[str, str]) -> None:
        """The key Secret's entries: name -> (key, namespace)."""
        data = {
            name: base64.b64encode(secret_entry(key, namespace).encode()).decode()
            for name, (key, namespace) in keys.items()
        }
        body = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": KEY_SECRET}}
        url = path("Secret", self.key_namespace)
        if self.kube.get("Secret", self.key_namespace, KEY_SECRET) is None:
            self.kube.request("POST", url, {**body, "data": data})
        else:
            self.kube.request("PUT", f"{url}/{KEY_SECRET}", {**body, "data": data})

    def call(self, method: str, path: str, key: str | None = None, body: bytes | None = None):
        """(HTTP status, JSON answer) of one request."""
        headers = {"Content-Type": "application/json"}
        if key is not None:
            headers["Authorization"] = f"Bearer {key}"
        request = urllib.request.Request(self.url + path, body, headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    def ready(self, alive: Callable[[], bool] = lambda: True, timeout: float = 60) -> bool:
        """Wait until /healthz answers; False if it never does or `alive` turns false."""
        deadline = time.monotonic() + timeout
        while alive() and time.monotonic() < deadline:
            try:
                urllib.request.urlopen(self.url + "/healthz", timeout=2).close()
                return True
            except OSError:
                time.sleep(0.2)
        return False
