"""Downloading `data` over HTTP from a local server: redirects, retries, limits, clear errors."""

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from fluxlora_api.limits import DatasetLimits
from fluxlora_trainer.errors import BadInput
from fluxlora_trainer.fetch import display_url, fetch

LIMITS = DatasetLimits(download_attempts=3, download_timeout_seconds=5)
PAYLOAD = b"PK\x05\x06" + b"\0" * 18  # an empty zip


class Server(http.server.ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.hits: dict[str, int] = {}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class Handler(http.server.BaseHTTPRequestHandler):
    server: Server

    def log_message(self, *args) -> None:  # keep test output quiet
        pass

    def do_GET(self) -> None:
        path = self.path.split("?")[0]
        hits = self.server.hits[path] = self.server.hits.get(path, 0) + 1
        if path == "/data.zip":
            self._send(200, PAYLOAD)
        elif path == "/moved.zip":
            self.send_response(302)
            self.send_header("Location", "/data.zip")
            self.end_headers()
        elif path == "/flaky.zip":
            self._send(503, b"busy") if hits < 3 else self._send(200, PAYLOAD)
        elif path == "/down.zip":
            self._send(503, b"busy")
        elif path == "/big.zip":
            self._send(200, b"x" * 2048)
        elif path == "/loop.zip":
            self.send_response(302)
            self.send_header("Location", "/loop.zip")
            self.end_headers()
        else:
            self._send(404, b"no such file")

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def server() -> Iterator[Server]:
    server = Server()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()


def test_a_plain_download(server, tmp_path):
    assert fetch(f"{server.url}/data.zip", tmp_path / "d.zip", LIMITS).read_bytes() == PAYLOAD


def test_redirects_are_followed(server, tmp_path):
    assert fetch(f"{server.url}/moved.zip", tmp_path / "d.zip", LIMITS).read_bytes() == PAYLOAD


def test_transient_errors_are_retried_with_backoff(server, tmp_path):
    assert fetch(f"{server.url}/flaky.zip", tmp_path / "d.zip", LIMITS).read_bytes() == PAYLOAD
    assert server.hits["/flaky.zip"] == 3


def test_a_server_that_stays_down_is_bad_input_after_the_retries(server, tmp_path):
    with pytest.raises(BadInput, match=r"could not be downloaded after 3 attempts: HTTP 503"):
        fetch(f"{server.url}/down.zip", tmp_path / "d.zip", LIMITS)
    assert server.hits["/down.zip"] == 3


def test_a_missing_file_is_bad_input_at_once_without_leaking_the_query(server, tmp_path):
    with pytest.raises(BadInput) as error:
        fetch(f"{server.url}/gone.zip?X-Amz-Signature=secret", tmp_path / "d.zip", LIMITS)
    assert str(error.value) == f"data: {server.url}/gone.zip answered HTTP 404 Not Found"
    assert server.hits["/gone.zip"] == 1


def test_a_download_over_the_limit_is_refused(server, tmp_path):
    with pytest.raises(BadInput, match=r"larger than the download limit \(2048 > 1000 bytes"):
        fetch(f"{server.url}/big.zip", tmp_path / "d.zip", DatasetLimits(max_download_bytes=1000))


def test_a_redirect_loop_is_bad_input(server, tmp_path):
    with pytest.raises(BadInput, match="too many redirects"):
        fetch(f"{server.url}/loop.zip", tmp_path / "d.zip", LIMITS)


def test_an_unreachable_host_is_bad_input_after_the_retries(tmp_path):
    limits = DatasetLimits(download_attempts=2, download_timeout_seconds=1)
    with pytest.raises(BadInput, match=r"http://127.0.0.1:9/x.zip could not be downloaded after 2"):
        fetch("http://127.0.0.1:9/x.zip", tmp_path / "d.zip", limits)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://user:pw@host.example/a.zip?sig=1", "https://host.example/a.zip"),
        ("http://host.example:8080/a.zip", "http://host.example:8080/a.zip"),
        ("s3://bucket/key.zip", "s3://bucket/key.zip"),
    ],
)
def test_urls_in_messages_carry_no_credentials(url, shown):
    assert display_url(url) == shown


def test_an_unsupported_scheme_is_bad_input(tmp_path):
    with pytest.raises(BadInput, match="unsupported URL scheme 'ftp'"):
        fetch("ftp://host/a.zip", Path(tmp_path) / "d.zip", LIMITS)
