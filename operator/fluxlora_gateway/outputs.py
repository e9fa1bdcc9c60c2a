"""Output downloads: the gateway streams a run's file from the object store to the caller, so
callers need only their API key (the store's credentials stay in the cluster). S3 credentials and
endpoint come from the gateway's environment (AWS_* variables, AWS_ENDPOINT_URL for MinIO)."""

import asyncio
import mimetypes

from aiohttp import web

CHUNK_BYTES = 1024 * 1024


def split_s3_url(url: str) -> tuple[str, str]:
    bucket, _, key = url.removeprefix("s3://").partition("/")
    return bucket, key


def _open(url: str):
    import boto3  # the operator's extra ships it; imported here so the operator never pays

    bucket, key = split_s3_url(url)
    return boto3.session.Session().client("s3").get_object(Bucket=bucket, Key=key)


async def read_output(url: str, limit: int) -> bytes | None:
    """A small stored file whole (at most `limit` bytes), or None when it is not there (yet)."""
    if not url.startswith("s3://"):
        return None
    try:
        obj = await asyncio.to_thread(_open, url)
    except Exception as error:  # botocore's errors: most often, not stored yet
        if "NoSuchKey" in type(error).__name__ or "NoSuchKey" in str(error):
            return None
        raise web.HTTPBadGateway(reason=f"output store: {type(error).__name__}") from None
    try:
        return await asyncio.to_thread(obj["Body"].read, limit)
    finally:
        obj["Body"].close()


async def stream_output(request: web.Request, url: str) -> web.StreamResponse:
    if not url.startswith("s3://"):
        raise web.HTTPNotFound(reason="this output is on a volume, not downloadable here")
    try:
        obj = await asyncio.to_thread(_open, url)
    except Exception as error:  # botocore's errors: missing object, no access, store down
        raise web.HTTPBadGateway(reason=f"output store: {type(error).__name__}") from None
    name = url.rsplit("/", 1)[-1]
    response = web.StreamResponse(
        headers={
            "Content-Type": mimetypes.guess_type(name)[0] or "application/octet-stream",
            "Content-Disposition": f'attachment; filename="{name}"',
        }
    )
    response.content_length = obj["ContentLength"]
    await response.prepare(request)
    body = obj["Body"]
    try:
        while chunk := await asyncio.to_thread(body.read, CHUNK_BYTES):
            await response.write(chunk)
    finally:
        body.close()
    await response.write_eof()
    return response
