"""Downloads the dataset zip: https/http (redirects, retries with backoff on transient errors,
timeouts, a size limit, an overall deadline, and only from addresses the operator allows) or
s3://bucket/key (the namespace's credentials and the operator's endpoint from the environment,
so AWS and MinIO both work). A URL that cannot be fetched is bad input: retrying the pod would
not help, so the error says what went wrong."""

import logging
import os
import time
from http import HTTPStatus
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import urllib3
from urllib3.util import parse_url

from fluxlora_api.limits import DatasetLimits
from fluxlora_net.guarded_http import DownloadGuard, RefusedAddress, guarded_pool
from fluxlora_net.urls import display_url
from fluxlora_trainer.errors import BadInput

logger = logging.getLogger(__name__)

TRANSIENT_STATUSES = {408, 425, 429, 500, 502, 503, 504}
REDIRECT_STATUSES = {301, 302, 303, 307, 308}
CHUNK_BYTES = 1024 * 1024
MAX_REDIRECTS = 10
BACKOFF_SECONDS = 0.5
ADDRESS_RULE = (
    "the operator allows data only from public addresses and its dataset-limits allowedNetworks"
)
ALWAYS_RULE = "data is never downloaded from link-local or cloud metadata addresses"


def fetch(url: str, destination: Path, limits: DatasetLimits) -> Path:
    """Download `url` to `destination`; BadInput names the URL and what went wrong."""
    try:
        scheme = urlsplit(url).scheme.lower()
    except ValueError:
        raise BadInput(f"data: {display_url(url)} is not a valid URL") from None
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
        f"({size} > {limits.max_download_bytes} bytes; dataset-limits maxDownloadBytes)"
    )


def _too_slow(url: str, limits: DatasetLimits) -> BadInput:
    return BadInput(
        f"data: {display_url(url)} took longer than the download deadline of "
        f"{limits.download_deadline_seconds:g} s (dataset-limits downloadDeadlineSeconds); "
        "serve it from a faster server"
    )


def _refused(url: str, hop: str, error: RefusedAddress) -> BadInput:
    refused = error.refusal
    if hop != url:  # the host came from the server's Location: name only what we checked
        subject = f"{display_url(url)} redirects to {refused.address},"
    elif error.host == str(refused.address):
        subject = f"{error.host} is"
    else:
        subject = f"{error.host} resolves to {refused.address},"
    rule = ALWAYS_RULE if refused.always else ADDRESS_RULE
    return BadInput(f"data: {subject} {refused.kind}; {rule}")


def _fetch_http(url: str, destination: Path, limits: DatasetLimits) -> None:
    with DownloadGuard(limits.allowed_networks, limits.download_deadline_seconds) as guard:
        try:
            _download(url, destination, limits, guard)
        except BadInput:
            raise
        except Exception:
            if guard.expired:  # whatever the cut-off socket raised
                raise _too_slow(url, limits) from None
            raise
        if guard.expired:  # a body without a length may look complete when cut off
            raise _too_slow(url, limits)


def _download(url: str, destination: Path, limits: DatasetLimits, guard: DownloadGuard) -> None:
    # This loop owns the retries, so a body cut off mid-stream is retried too.
    last_problem = ""
    for attempt in range(1, limits.download_attempts + 1):
        try:
            response, pool = _open(url, limits, guard)
        except urllib3.exceptions.HTTPError as error:
            last_problem = str(error)
        else:
            try:
                if response.status in TRANSIENT_STATUSES:
                    last_problem = f"HTTP {_status(response.status)}"
                elif not 200 <= response.status < 300:
                    raise BadInput(
                        f"data: {display_url(url)} answered HTTP {_status(response.status)}"
                    )
                else:
                    _stream(url, response, destination, limits)
                    return
            except urllib3.exceptions.HTTPError as error:
                last_problem = f"download interrupted: {error}"
            finally:
                response.release_conn()
                pool.close()
        if guard.expired:
            raise _too_slow(url, limits)
        if attempt < limits.download_attempts:
            delay = BACKOFF_SECONDS * 2 ** (attempt - 1)
            if delay >= guard.remaining():
                raise _too_slow(url, limits)
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


def _open(
    url: str, limits: DatasetLimits, guard: DownloadGuard
) -> tuple[urllib3.BaseHTTPResponse, urllib3.HTTPConnectionPool]:
    """The response to GET `url` after following redirects ourselves, so that every hop's
    address is checked before connecting. The caller closes the pool."""
    timeout = urllib3.Timeout(
        connect=limits.download_timeout_seconds, read=limits.download_timeout_seconds
    )
    hop = url
    for _ in range(MAX_REDIRECTS + 1):
        try:
            parts = parse_url(hop)
        except urllib3.exceptions.LocationParseError:
            what = "is not" if hop == url else "redirects to something that is not"
            raise BadInput(f"data: {display_url(url)} {what} a valid URL") from None
        if parts.scheme not in ("http", "https"):
            raise BadInput(f"data: {display_url(url)} redirects to a URL that is not http or https")
        if not parts.host:
            raise BadInput(f"data: {display_url(hop)} names no host")
        pool = guarded_pool(guard, parts.scheme, parts.host, parts.port, timeout)
        try:
            response = pool.urlopen(
                "GET",
                parts.request_uri,
                redirect=False,
                retries=False,
                preload_content=False,
                decode_content=False,  # the zip as sent: no gzip bomb behind our size check
                assert_same_host=False,
            )
        except RefusedAddress as error:
            pool.close()
            raise _refused(url, hop, error) from None
        except BaseException:
            pool.close()
            raise
        location = response.headers.get("Location")
        if response.status not in REDIRECT_STATUSES or not location:
            return response, pool
        response.close()
        pool.close()
        hop = urljoin(hop, location)
    raise BadInput(f"data: {display_url(url)}: too many redirects (more than {MAX_REDIRECTS})")


def _status(code: int) -> str:
    # The standard phrase, not the server's own words.
    try:
        return f"{code} {HTTPStatus(code).phrase}"
    except ValueError:
        return str(code)


def _stream(
    url: str, response: urllib3.BaseHTTPResponse, destination: Path, limits: DatasetLimits
) -> None:
    declared = response.headers.get("Content-Length")
    if declared and declared.isdigit() and int(declared) > limits.max_download_bytes:
        raise _too_large(url, int(declared), limits)
    received = 0
    with destination.open("wb") as file:
        for chunk in response.stream(CHUNK_BYTES, decode_content=False):
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
    # Explicit credentials only: boto3's fallbacks (instance profile via the metadata service,
    # web identity, ~/.aws, container credentials) would lend a user's dataset the node's or
    # the pod's identity. The endpoint (AWS_ENDPOINT_URL, for MinIO) is the operator's, so it
    # is trusted; a new session reads it afresh.
    credentials = _s3_credentials()
    try:
        client = boto3.session.Session(**credentials).client("s3", config=config)
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


def _s3_credentials() -> dict[str, str]:
    """The namespace's storage credentials, which the operator puts in the environment."""
    key, secret = os.environ.get("AWS_ACCESS_KEY_ID"), os.environ.get("AWS_SECRET_ACCESS_KEY")
    if not key or not secret:
        raise BadInput(
            "data: s3:// datasets need the namespace's storage credentials (the operator's "
            "output-secret); none were given"
        )
    credentials = {"aws_access_key_id": key, "aws_secret_access_key": secret}
    if os.environ.get("AWS_SESSION_TOKEN"):
        credentials["aws_session_token"] = os.environ["AWS_SESSION_TOKEN"]
    return credentials
