"""The upload endpoints: the hosted SDK's two steps (a ticket, then a PUT of the raw bytes to
the URL it names) and the one-shot multipart form; and downloads of an upload with the same
key."""

import asyncio
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import BodyPartReader, web

from fluxlora_gateway import hosted, uploads
from fluxlora_gateway.app import GATEWAY, Failure, Gateway, reply
from fluxlora_gateway.dataset_check import INSPECT_PATH, InspectRequest, check_dataset
from fluxlora_gateway.outputs import CHUNK_BYTES, stream_output
from fluxlora_gateway.upload_store import UploadStore, new_token
from fluxlora_gateway.uploads import TooLarge, UploadedFile, store_chunks, upload_name

MULTIPART_OVERHEAD_BYTES = 64 * 1024  # headers and boundaries around the file's bytes


def _store(gateway: Gateway) -> UploadStore:
    if gateway.uploads is None:
        raise Failure(501, "uploads are not configured on this gateway (its uploads prefix)")
    return gateway.uploads


def _refuse_declared(request: web.Request, limit: int) -> None:
    if (request.content_length or 0) > limit:
        raise Failure(413, f"file: larger than the upload limit of {limit} bytes")


async def _stored(
    store: UploadStore, tenant_namespace: str, token: str, name: str,
    chunks: AsyncIterator[bytes], limit: int, base_url: str,
) -> UploadedFile:  # fmt: skip
    key = store.key(tenant_namespace, token, name)
    try:
        size = await store_chunks(store, key, name, chunks, limit)
    except TooLarge as error:
        raise Failure(413, str(error)) from None
    return UploadedFile(
        type=uploads.media_type(name),
        download_url=uploads.file_url(base_url, token, name),
        filename=name,
        size=size,
    )


async def new_upload(request: web.Request) -> web.Response:
    """Step one: check what will be sent and answer where to send it."""
    gateway: Gateway = request.app[GATEWAY]
    tenant = await gateway.tenant(request)
    store = _store(gateway)
    wanted = hosted.parse_body(uploads.UploadRequest, await request.read())
    name = upload_name(wanted.filename)
    if wanted.size > store.max_bytes:
        raise Failure(413, f"size: larger than the upload limit of {store.max_bytes} bytes")
    token, ticket = await asyncio.to_thread(store.new_ticket, tenant.namespace, name, wanted.size)
    base_url = gateway.base_url(request)
    answer = uploads.UploadTicket(
        upload=uploads.UploadInstruction(
            url=base_url + uploads.TICKET_PATH.format(token=token),
            headers={"Content-Type": uploads.media_type(name)},
        ),
        download_url=uploads.file_url(base_url, ticket.file_token, name),
    )
    return reply(200, "success", answer.model_dump())


async def put_upload(request: web.Request) -> web.Response:
    """Step two: the raw bytes, authorised by the ticket in the URL (the SDK sends no key)."""
    gateway: Gateway = request.app[GATEWAY]
    store = _store(gateway)
    token = request.match_info["token"]
    ticket = None
    if uploads.TOKEN.match(token):
        ticket = await asyncio.to_thread(store.ticket, token)
    if ticket is None:
        raise Failure(404, "no such upload ticket, or it expired: ask for a new one")
    limit = min(ticket.size, store.max_bytes)
    _refuse_declared(request, limit)
    chunks = request.content.iter_chunked(CHUNK_BYTES)
    stored = await _stored(
        store, ticket.namespace, ticket.file_token, ticket.filename, chunks, limit,
        gateway.base_url(request),
    )  # fmt: skip
    await asyncio.to_thread(store.drop_ticket, token)  # one upload per ticket
    return reply(200, "success", stored.model_dump())


async def _file_part(request: web.Request) -> BodyPartReader:
    try:
        reader = await request.multipart()
    except (AssertionError, ValueError, KeyError):  # aiohttp's words for "not multipart"
        raise hosted.RequestError("file: send the file as multipart/form-data") from None
    while (part := await reader.next()) is not None:
        if isinstance(part, BodyPartReader) and part.name == "file":
            return part
        if isinstance(part, BodyPartReader):
            await part.release()
    raise hosted.RequestError("file: is required (a multipart/form-data field)")


async def _part_chunks(part: BodyPartReader) -> AsyncIterator[bytes]:
    while chunk := await part.read_chunk(CHUNK_BYTES):
        yield chunk


async def upload_binary(request: web.Request) -> web.Response:
    """The one-shot form: multipart field `file`."""
    gateway: Gateway = request.app[GATEWAY]
    tenant = await gateway.tenant(request)
    store = _store(gateway)
    _refuse_declared(request, store.max_bytes + MULTIPART_OVERHEAD_BYTES)
    part = await _file_part(request)
    name = upload_name(part.filename or "", field="file")
    stored = await _stored(
        store, tenant.namespace, new_token(), name, _part_chunks(part), store.max_bytes,
        gateway.base_url(request),
    )  # fmt: skip
    return reply(200, "success", stored.model_dump())


async def download_upload(request: web.Request) -> web.StreamResponse:
    """An upload, to a key of the namespace it was uploaded for; to any other, unknown."""
    gateway: Gateway = request.app[GATEWAY]
    tenant = await gateway.tenant(request)
    store = _store(gateway)
    token, name = request.match_info["token"], request.match_info["filename"]
    key = None
    if uploads.TOKEN.match(token) and uploads.is_upload_name(name):
        key = store.key(tenant.namespace, token, name)
    if key is None or await asyncio.to_thread(store.size, key) is None:
        raise Failure(404, f"upload {name} not found")
    return await stream_output(request, f"s3://{store.bucket}/{key}")


async def inspect_dataset(request: web.Request) -> web.Response:
    """One of the key's uploads read by the trainer's rules, with thumbnails: what a run
    given it as `data` would train on."""
    gateway: Gateway = request.app[GATEWAY]
    tenant = await gateway.tenant(request)
    store = _store(gateway)
    wanted = hosted.parse_body(InspectRequest, await request.read())
    found = uploads.parse_file_url(wanted.data, gateway.base_url(request))
    if found is None:
        raise hosted.RequestError("data: only an upload's download_url can be checked here")
    key = store.key(tenant.namespace, *found)
    with tempfile.TemporaryDirectory(prefix="fluxlora-upload-") as folder:
        archive = Path(folder) / "dataset.zip"
        if not await asyncio.to_thread(store.download, key, archive):
            raise Failure(404, f"data: no upload {found[1]} for this key")
        async with gateway.dataset_checks:
            report = await check_dataset(archive, wanted.trigger_word)
    return reply(200, "success", report.model_dump(mode="json"))


def add_routes(app: web.Application) -> None:
    app.router.add_post(uploads.TICKETS_PATH, new_upload)
    app.router.add_put(uploads.TICKET_PATH, put_upload)
    app.router.add_post(uploads.BINARY_PATH, upload_binary)
    app.router.add_get(uploads.FILE_PATH, download_upload)
    app.router.add_post(INSPECT_PATH, inspect_dataset)
