"""Downloads the dataset zip: https/http (redirects, retries with backoff on transient errors,
timeouts, a size limit) or s3://bucket/key (credentials and endpoint from the environment, so
AWS and MinIO both work). A URL that cannot be fetched is bad input: retrying the pod would not
help, so the error says what the server answered."""

import logging
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import urllib3

from fluxlora_api.limits import DatasetLimits
from fluxlora_trainer.errors import BadInput

logger = logging.getLogger(__name__)

TRANSIENT_STATUSES = {408, 425, 429, 500, 502, 503, 504}
CHUNK_BYTES = 1024 * 1024
MAX_REDIRECTS = 10
BACKOFF_SECONDS = 0.5


def display_url(url: str) -> str:
    """The URL without credentials or query string (presigned URLs carry signatures)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def fetch(url: str, destination: Path, limits: DatasetLimits) -> Path:
    """Download `url` to `destination`; BadInput names the URL and what went wrong."""
    scheme = urlsplit(url).scheme.lower()
    destination.parent.mkdir(parents=True, exist_ok=True)
    if scheme in ("http", "https"):
        _fetch_http(url, destination, limits)
    elif scheme == "s3":
        _fetch_s3(url, destination, limits)
    else:
        raise BadInput(f"data: unsupported URL scheme {scheme!r} in {display_url(url)}")
    return destination


def _too_large(url: str, size: int, limits: DatasetLimits) -> BadInput:
    return BadInput(
        f"data: {display_url(url)} is larger than the download limit "
        f"({size} > {limits.max_download_bytes} bytes; FLUXLORA_MAX_DOWNLOAD_BYTES)"
    )


def _fetch_http(url: str, destination: Path, limits: DatasetLimits) -> None:
    timeout = urllib3.Timeout(
        connect=limits.download_timeout_seconds, read=limits.download_timeout_seconds
    )
    # urllib3 follows redirects; this loop owns the retries, so a body cut off mid-stream is
    # retried too (urllib3 only retries before the body starts).
    retries = urllib3.Retry(total=None, connect=0, read=0, status=0, redirect=MAX_REDIRECTS)
    pool = urllib3.PoolManager(timeout=timeout, retries=retries)
    last_problem = ""
    for attempt in range(1, limits.download_attempts + 1):
        try:
            response = pool.request("GET", url, preload_content=False)
        except urllib3.exceptions.MaxRetryError as error:
            if isinstance(error.reason, urllib3.exceptions.ResponseError):
                raise BadInput(f"data: {display_url(url)}: too many redirects") from None
            last_problem = str(error.reason)
        except urllib3.exceptions.HTTPError as error:
            last_problem = str(error)
        else:
            try:
                if response.status in TRANSIENT_STATUSES:
                    last_problem = f"HTTP {response.status} {response.reason}"
                elif response.status >= 400:
                    raise BadInput(
                        f"data: {display_url(url)} answered HTTP {response.status} "
                        f"{response.reason}"
                    )
                else:
                    _stream(url, response, destination, limits)
                    return
            except urllib3.exceptions.HTTPError as error:
                last_problem = f"download interrupted: {error}"
            finally:
                response.release_conn()
        if attempt < limits.download_attempts:
            delay = BACKOFF_SECONDS * 2 ** (attempt - 1)
            logger.warning(
                "download of %s failed (%s); retry %d in %.1fs",
                display_url(url),
                last_problem,
                attempt,
                delay,
            )
            time.sleep(delay)
    raise BadInput(
        f"data: {display_url(url)} could not be downloaded after "
        f"{limits.download_attempts} attempts: {last_problem}"
    )


def _stream(
    url: str, response: urllib3.BaseHTTPResponse, destination: Path, limits: DatasetLimits
) -> None:
    declared = response.headers.get("Content-Length")
    if declared and declared.isdigit() and int(declared) > limits.max_download_bytes:
        raise _too_large(url, int(declared), limits)
    received = 0
    with destination.open("wb") as file:
        for chunk in response.stream(CHUNK_BYTES):
            received += len(chunk)
            if received > limits.max_download_bytes:
                raise _too_large(url, received, limits)
            file.write(chunk)


def _fetch_s3(url: str, destination: Path, limits: DatasetLimits) -> None:
    import boto3
    import botocore.config
    import botocore.exceptions

    parts = urlsplit(url)
    bucket, key = parts.netloc, parts.path.lstrip("/")
    if not bucket or not key:
        raise BadInput(f"data: {display_url(url)} is not s3://bucket/key")
    config = botocore.config.Config(
        connect_timeout=limits.download_timeout_seconds,
        read_timeout=limits.download_timeout_seconds,
        retries={"max_attempts": limits.download_attempts, "mode": "standard"},
    )
    # Credentials and endpoint (AWS_ENDPOINT_URL for MinIO) come from the environment, read
    # afresh by a new session (the default session would keep the first ones it saw).
    client = boto3.session.Session().client("s3", config=config)
    try:
        size = client.head_object(Bucket=bucket, Key=key)["ContentLength"]
        if size > limits.max_download_bytes:
            raise _too_large(url, size, limits)
        client.download_file(bucket, key, str(destination))
    except botocore.exceptions.ClientError as error:
        code = error.response.get("Error", {}).get("Code", "")
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        meaning = {
            "404": "no such object",
            "NoSuchKey": "no such object",
            "NoSuchBucket": "no such bucket",
            "403": "access denied (check the credentials Secret)",
            "AccessDenied": "access denied (check the credentials Secret)",
        }.get(code, f"{code or status}")
        raise BadInput(f"data: {display_url(url)}: {meaning}") from None
    except (botocore.exceptions.BotoCoreError, OSError) as error:
        raise BadInput(f"data: {display_url(url)} could not be downloaded: {error}") from None
