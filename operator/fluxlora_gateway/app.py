"""The gateway's HTTP server (aiohttp): the hosted API's prediction endpoints (submit, with sync
mode and webhooks; result; delete; history), output downloads and the webhook secret, behind
Bearer keys that each open one namespace. Uploads are in media.py; routes.py lists every
route."""

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from fluxlora_api import resource
from fluxlora_api.prediction import GATEWAY_URL_ANNOTATION, output_file, own_outputs, prediction
from fluxlora_api.spec import MAX_WEBHOOK_CHARS
from fluxlora_api.status import Phase, is_finished
from fluxlora_gateway import hosted, runs
from fluxlora_gateway.history import HistoryQuery, history
from fluxlora_gateway.index import PredictionIndex
from fluxlora_gateway.keys import KeyStore, KeysUnavailable, Tenant
from fluxlora_gateway.openapi import openapi_document
from fluxlora_gateway.outputs import read_output, stream_output
from fluxlora_gateway.upload_store import UploadStore
from fluxlora_gateway.uploads import parse_file_url
from fluxlora_kube.client import ApiError, Kube
from fluxlora_kube.paths import path
from fluxlora_net.webhooks import RefusedWebhook, check_webhook_url
from fluxlora_operator.rate_limit import RateLimiter
from fluxlora_operator.webhook_secret import BadWebhookSecret, webhook_secret

logger = logging.getLogger(__name__)

SUBMITTED_VIA_LABEL = f"{resource.GROUP}/submitted-via"
NAME_PREFIX = "prediction-"
DEFAULT_SYNC_WAIT_SECONDS = 300.0
SYNC_CHECK_SECONDS = 0.5  # how often a held sync-mode answer looks at the index (memory only)


@dataclass
class Gateway:
    kube: Kube
    keys: KeyStore
    public_url: str | None = None  # how callers reach us; default: the request's own origin
    spec_defaults: dict[str, Any] = field(default_factory=dict)  # see hosted.check_spec_defaults
    limiter: RateLimiter = field(default_factory=lambda: RateLimiter(0, 1))  # 0: unlimited
    sync_wait_seconds: float = DEFAULT_SYNC_WAIT_SECONDS
    uploads: UploadStore | None = None  # None: uploads are off
    webhook_allowed_networks: list[str] = field(default_factory=list)
    # One dataset check at a time: each may take CHECK_MEMORY_BYTES of the gateway's memory.
    dataset_checks: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(1))
    index: PredictionIndex = field(init=False)

    def __post_init__(self) -> None:
        self.index = PredictionIndex(self.kube)

    def base_url(self, request: web.Request) -> str:
        return (self.public_url or str(request.url.origin())).rstrip("/")

    async def tenant(self, request: web.Request) -> Tenant:
        scheme, _, key = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise Failure(401, "missing API key: send Authorization: Bearer <key>")
        try:
            tenant = await asyncio.to_thread(self.keys.tenant, key.strip())
        except KeysUnavailable as error:
            raise Failure(503, str(error)) from None
        if tenant is None:
            raise Failure(401, "unknown API key")
        wait = self.limiter.retry_after(tenant.name)
        if wait > 0:
            raise Failure(429, f"too many requests for this key: retry in {wait:.1f} s")
        return tenant

    async def find(
        self, tenant: Tenant, prediction_id: str, miss_wait: float | None = None
    ) -> dict[str, Any]:
        """The tenant's resource with this id, read by the name the index knows for it; any
        other tenant's is as unknown as a made-up one."""
        if not _is_uid(prediction_id):
            raise Failure(404, f"prediction {prediction_id} not found")
        wait = {} if miss_wait is None else {"miss_wait": miss_wait}
        try:
            name = await asyncio.to_thread(self.index.name, tenant.namespace, prediction_id, **wait)
        except TimeoutError as error:
            raise Failure(503, str(error)) from None
        item = None
        if name is not None:
            item = await asyncio.to_thread(self.kube.get, resource.KIND, tenant.namespace, name)
        if item is None or item["metadata"]["uid"] != prediction_id:
            raise Failure(404, f"prediction {prediction_id} not found")
        return item

    async def resolve_data(self, request: web.Request, tenant: Tenant, data: str) -> str:
        """`data` as the trainer reads it: the URL of one of the tenant's uploads becomes a
        presigned S3 link to it (the trainer never needs the gateway); any other URL stays."""
        found = parse_file_url(data, self.base_url(request))
        if found is None or self.uploads is None:
            return data
        key = self.uploads.key(tenant.namespace, *found)
        if await asyncio.to_thread(self.uploads.size, key) is None:
            raise hosted.RequestError(f"data: no upload {found[1]} for this key at {data}")
        return await asyncio.to_thread(self.uploads.link, key)

    async def checked_webhook(self, url: str) -> str:
        """A `?webhook=` URL the operator will be allowed to call, else a 400 naming it."""
        if len(url) > MAX_WEBHOOK_CHARS:
            raise hosted.RequestError(f"webhook: longer than {MAX_WEBHOOK_CHARS} characters")
        try:
            await asyncio.to_thread(check_webhook_url, url, self.webhook_allowed_networks)
        except RefusedWebhook as refused:
            raise hosted.RequestError(str(refused)) from None
        return url

    async def remove(self, tenant: Tenant, item: dict[str, Any]) -> None:
        """Delete the resource in the background (its Job and pods follow); gone already is
        fine."""
        meta = item["metadata"]
        await asyncio.to_thread(self.kube.delete, resource.KIND, tenant.namespace, meta["name"])
        logger.info("%s deleted %s/%s", tenant.name, tenant.namespace, meta["name"])


GATEWAY = web.AppKey("gateway", Gateway)


def _is_uid(text: str) -> bool:
    """Prediction ids are resource uids (UUIDs)."""
    try:
        return str(uuid.UUID(text)) == text.lower()
    except ValueError:
        return False


class Failure(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


def reply(code: int, message: str, data: dict[str, Any] | None = None) -> web.Response:
    return web.json_response(hosted.envelope(code, message, data), status=code)


@web.middleware
async def answer_errors(request: web.Request, handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except Failure as failure:
        return reply(failure.code, failure.message)
    except hosted.RequestError as error:
        return reply(400, str(error))
    except web.HTTPException as error:
        if error.status >= 400:
            return reply(error.status, error.reason)
        raise
    except ApiError as error:
        logger.warning("Kubernetes API error: %s", error)
        if error.status == 422:  # the API server's own validation, should ours let it pass
            return reply(400, error.message)
        if error.status == 403 and "exceeded quota" in error.message:
            return reply(403, f"the namespace's quota refuses this: {error.message}")
        if error.status == 429:
            return reply(429, "the cluster is busy: retry shortly")
        return reply(502, "the cluster did not accept the request")


async def _body(request: web.Request) -> bytes:
    """The request's body, refused past MAX_BODY_BYTES without reading more."""
    if (request.content_length or 0) > hosted.MAX_BODY_BYTES:
        raise hosted.RequestError(f"body: larger than {hosted.MAX_BODY_BYTES} bytes")
    raw = await request.content.read(hosted.MAX_BODY_BYTES + 1)
    if len(raw) > hosted.MAX_BODY_BYTES:
        raise hosted.RequestError(f"body: larger than {hosted.MAX_BODY_BYTES} bytes")
    return raw


async def submit(request: web.Request) -> web.Response:
    gateway: Gateway = request.app[GATEWAY]
    tenant = await gateway.tenant(request)
    spec, options = hosted.parse_request(await _body(request))
    spec["data"] = await gateway.resolve_data(request, tenant, spec["data"])
    webhook = request.query.get("webhook")
    if webhook is not None:
        spec["webhook"] = await gateway.checked_webhook(webhook)
    base_url = gateway.base_url(request)
    body = {
        "apiVersion": resource.API_VERSION,
        "kind": resource.KIND,
        "metadata": {
            "generateName": NAME_PREFIX,
            "labels": {SUBMITTED_VIA_LABEL: "gateway"},
            "annotations": {GATEWAY_URL_ANNOTATION: base_url},
        },
        "spec": {**gateway.spec_defaults, **spec},
    }
    created = await asyncio.to_thread(
        gateway.kube.request, "POST", path(resource.KIND, tenant.namespace), body
    )
    meta = created["metadata"]
    gateway.index.remember(tenant.namespace, meta["uid"], meta["name"])
    logger.info("%s created %s/%s", tenant.name, meta["namespace"], meta["name"])
    if options.enable_sync_mode:
        return await _answer_when_ended(gateway, request, tenant, created)
    return reply(200, "success", prediction(created, gateway.base_url(request)))


async def _answer_when_ended(
    gateway: Gateway, request: web.Request, tenant: Tenant, created: dict[str, Any]
) -> web.Response:
    """Sync mode: hold the answer until the watch shows the run ended, at most the sync wait;
    the connection is only held, no thread or API call waits with it."""
    uid, base_url = created["metadata"]["uid"], gateway.base_url(request)
    index = gateway.index.namespace(tenant.namespace)
    deadline = time.monotonic() + gateway.sync_wait_seconds
    while not index.ended(uid) and time.monotonic() < deadline:
        await asyncio.sleep(SYNC_CHECK_SECONDS)
    item = await asyncio.to_thread(
        gateway.kube.get, resource.KIND, tenant.namespace, created["metadata"]["name"]
    )
    if item is None or item["metadata"]["uid"] != uid:
        raise Failure(404, f"prediction {uid} was deleted while the answer waited for it")
    if is_finished(item.get("status")):
        return reply(200, "success", prediction(item, base_url))
    waited = gateway.sync_wait_seconds
    return reply(200, "success", hosted.sync_timed_out(item, base_url, waited))


async def result(request: web.Request) -> web.Response:
    gateway: Gateway = request.app[GATEWAY]
    tenant = await gateway.tenant(request)
    item = await gateway.find(tenant, request.match_info["id"])
    return reply(200, "success", prediction(item, gateway.base_url(request)))


async def delete(request: web.Request) -> web.Response:
    """Delete one prediction: its resource, and with it the Job and pods (the outputs stay in
    storage); then its id is unknown."""
    gateway: Gateway = request.app[GATEWAY]
    tenant = await gateway.tenant(request)
    item = await gateway.find(tenant, request.match_info["id"])
    await gateway.remove(tenant, item)
    return reply(200, "success", hosted.Deleted(id=item["metadata"]["uid"]).model_dump())


async def delete_many(request: web.Request) -> web.Response:
    gateway: Gateway = request.app[GATEWAY]
    tenant = await gateway.tenant(request)
    wanted = set(hosted.parse_body(hosted.DeleteMany, await _body(request)).ids)
    deleted = 0
    for prediction_id in sorted(wanted):
        try:
            item = await gateway.find(tenant, prediction_id, miss_wait=0)
        except Failure as failure:
            if failure.code == 404:
                continue  # unknown ids are ignored, as the hosted API does
            raise
        await gateway.remove(tenant, item)
        deleted += 1
    return reply(200, "success", hosted.DeletedCount(deleted_count=deleted).model_dump())


async def list_history(request: web.Request) -> web.Response:
    """The key's predictions, filtered and paged, newest first."""
    gateway: Gateway = request.app[GATEWAY]
    tenant = await gateway.tenant(request)
    query = hosted.parse_body(HistoryQuery, await _body(request) or b"{}")
    items = await asyncio.to_thread(gateway.kube.list_objects, resource.KIND, tenant.namespace, "")
    page = history(items, query, gateway.base_url(request))
    return reply(200, "success", page.model_dump(mode="json"))


async def output(request: web.Request) -> web.StreamResponse:
    gateway: Gateway = request.app[GATEWAY]
    tenant = await gateway.tenant(request)
    item = await gateway.find(tenant, request.match_info["id"])
    wanted = request.match_info["file"]
    files = own_outputs(item) + runs.own_snapshot_files(item)  # snapshots: while it trains too
    url = next((u for u in files if output_file(u) == wanted), None)
    if url is None:
        raise Failure(404, f"output {wanted} not found")
    return await stream_output(request, url)


async def list_runs(request: web.Request) -> web.Response:
    """The key's runs for the web page, newest first, with their progress."""
    gateway: Gateway = request.app[GATEWAY]
    tenant = await gateway.tenant(request)
    wanted = request.query.get("status") or None
    if wanted is not None and wanted not in set(Phase):
        raise hosted.RequestError(f"status: one of {', '.join(Phase)}")
    items = await asyncio.to_thread(gateway.kube.list_objects, resource.KIND, tenant.namespace, "")
    found = runs.runs(items, Phase(wanted) if wanted else None)
    return reply(200, "success", found.model_dump(mode="json"))


async def run(request: web.Request) -> web.Response:
    """One run in full: progress, conditions, snapshots with their download URLs."""
    gateway: Gateway = request.app[GATEWAY]
    tenant = await gateway.tenant(request)
    item = await gateway.find(tenant, request.match_info["id"])
    details = runs.run_details(item, gateway.base_url(request))
    return reply(200, "success", details.model_dump(mode="json"))


async def loss(request: web.Request) -> web.Response:
    """The loss curve stored so far (the trainer uploads it at each snapshot and at the end)."""
    gateway: Gateway = request.app[GATEWAY]
    tenant = await gateway.tenant(request)
    item = await gateway.find(tenant, request.match_info["id"])
    url = runs.loss_csv_url(item)
    stored = await read_output(url, runs.MAX_LOSS_CSV_BYTES) if url else None
    curve = (
        runs.parse_loss_csv(stored.decode(errors="replace"))
        if stored
        else runs.LossCurve(points=[])
    )
    return reply(200, "success", curve.model_dump(mode="json"))


async def get_webhook_secret(request: web.Request) -> web.Response:
    """The key's namespace's webhook secret, made on first use."""
    gateway: Gateway = request.app[GATEWAY]
    tenant = await gateway.tenant(request)
    try:
        secret = await asyncio.to_thread(webhook_secret, gateway.kube, tenant.namespace)
    except BadWebhookSecret as error:
        raise Failure(409, str(error)) from None
    return reply(200, "success", hosted.WebhookSecret(secret=secret).model_dump())


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(openapi_document(request.app[GATEWAY].base_url(request)))


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})
