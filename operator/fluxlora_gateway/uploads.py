"""The hosted API's uploads, as pure parts: the paths, the request and answer models, which
files are accepted and under what name, the gateway's download URL of an upload, and the copy
of a stream of chunks into the store part by part."""

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import PurePosixPath
from typing import Literal
from urllib.parse import quote, unquote, urlsplit

from pydantic import Field

from fluxlora_api.prediction import HostedModel
from fluxlora_gateway.hosted import RequestError
from fluxlora_gateway.upload_store import PART_BYTES, UploadStore

TICKETS_PATH = "/api/v3/media/uploads"
TICKET_PATH = "/api/v3/media/uploads/{token}"
BINARY_PATH = "/api/v3/media/upload/binary"
FILE_PATH = "/api/v3/media/files/{token}/{filename}"
DEFAULT_MAX_UPLOAD_BYTES = 2 * 1024**3
# The hosted platform takes media only; a trainer needs its zip archives too.
ACCEPTED_TYPES = {
    ".zip": "application/zip",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".webp": "image/webp",
}
MAX_NAME_CHARS = 120
TOKEN = re.compile(r"^[A-Za-z0-9_-]{16,64}$")


class TooLarge(Exception):
    """An upload past its limit: answered 413, naming the limit."""


class UploadRequest(HostedModel):
    """The first step of a two-step upload: what will be sent."""

    filename: str = Field(min_length=1, max_length=1024)
    """The file's name; its extension says what it is (.zip, .jpg, .jpeg, .png, .webp)."""
    size: int = Field(ge=1)
    """Its size in bytes."""
    content_type: str | None = None
    """Its media type (optional; the extension decides)."""


class UploadInstruction(HostedModel):
    """Where and how to send the bytes."""

    method: Literal["PUT"] = "PUT"
    url: str = Field(json_schema_extra={"format": "uri"})
    """Send the raw bytes here, with no key: the URL itself allows this one upload, for an hour."""
    headers: dict[str, str]
    """Headers to send with them."""


class UploadTicket(HostedModel):
    """The answer to the first step of a two-step upload."""

    upload: UploadInstruction
    download_url: str = Field(json_schema_extra={"format": "uri"})
    """The file's URL once sent: downloadable with the same key, and usable as `data`."""


class UploadedFile(HostedModel):
    """A stored upload."""

    type: str
    """Its media type."""
    download_url: str = Field(json_schema_extra={"format": "uri"})
    """Its URL: downloadable with the same key, and usable as `data` in a submission."""
    filename: str
    """The name it is stored under."""
    size: int
    """Its size in bytes."""


def upload_name(filename: str, field: str = "filename") -> str:
    """The name an upload is stored under: the file's own name without folders, in safe
    characters; only zip archives and the images a trainer reads are accepted."""
    base = filename.replace("\\", "/").rsplit("/", 1)[-1]
    name = re.sub(r"[^A-Za-z0-9._-]", "_", base).lstrip(".")[-MAX_NAME_CHARS:]
    if PurePosixPath(name).suffix.lower() not in ACCEPTED_TYPES:
        accepted = ", ".join(ACCEPTED_TYPES)
        raise RequestError(f"{field}: {filename!r} is not one of the accepted kinds ({accepted})")
    return name


def is_upload_name(name: str) -> bool:
    """Whether `name` is one that upload_name() gives."""
    try:
        return upload_name(name) == name
    except RequestError:
        return False


def media_type(name: str) -> str:
    return ACCEPTED_TYPES[PurePosixPath(name).suffix.lower()]


def file_url(base_url: str, token: str, name: str) -> str:
    return base_url + FILE_PATH.format(token=token, filename=quote(name))


def parse_file_url(url: str, base_url: str) -> tuple[str, str] | None:
    """(token, name) when `url` is this gateway's URL of an upload, else None."""
    parts, base = urlsplit(url), urlsplit(base_url)
    if (parts.scheme, parts.netloc) != (base.scheme, base.netloc) or parts.query:
        return None
    pattern = "^" + re.escape(base.path.rstrip("/") + FILE_PATH.split("{")[0])
    match = re.match(pattern + r"([^/]+)/([^/]+)$", parts.path)
    if match is None or not TOKEN.match(match.group(1)):
        return None
    return match.group(1), unquote(match.group(2))


async def store_chunks(
    store: UploadStore, key: str, name: str, chunks: AsyncIterator[bytes], limit: int
) -> int:
    """Copy `chunks` into the object `key`, a part at a time; its size. Past `limit` bytes the
    upload is abandoned (nothing is kept) and TooLarge raised; an empty file is refused."""
    upload_id = await asyncio.to_thread(store.start, key, media_type(name))
    parts: list[dict] = []
    buffer, size = bytearray(), 0
    try:
        async for chunk in chunks:
            size += len(chunk)
            if size > limit:
                raise TooLarge(f"file: larger than the upload limit of {limit} bytes")
            buffer += chunk
            if len(buffer) >= PART_BYTES:
                number = len(parts) + 1
                parts.append(
                    await asyncio.to_thread(store.put_part, key, upload_id, number, bytes(buffer))
                )
                buffer.clear()
        if size == 0:
            raise RequestError("file: empty")
        if buffer or not parts:
            number = len(parts) + 1
            parts.append(
                await asyncio.to_thread(store.put_part, key, upload_id, number, bytes(buffer))
            )
        await asyncio.to_thread(store.complete, key, upload_id, parts)
    except BaseException:
        await asyncio.to_thread(store.abort, key, upload_id)
        raise
    return size
