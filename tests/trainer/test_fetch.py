"""Downloading `data` over HTTP from a local server: redirects, retries, limits, clear errors,
and only from the addresses the operator allows (the servers here live on loopback, which is
refused unless allowed)."""

import http.server
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fluxlora_api.limits import DatasetLimits
from fluxlora_net.urls import display_url
from fluxlora_trainer.errors import BadInput
from fluxlora_trainer.fetch import fetch

LOOPBACK = ["127.0.0.0/8"]
LIMITS = DatasetLimits(download_attempts=3, download_timeout_seconds=5, allowed_networks=LOOPBACK)
PAYLOAD = b"PK\x05\x06" + b"\0" * 18  # an empty zip


class Server(http.server.ThreadingHTTPServer):
    def __init__(self, address: str = "127.0.0.1") -> None:
        super().__init__((address, 0), Handler)
        self.hits: dict[str, int] = {}
        self.connections = 0
        self.hosts: list[str] = []
        self.redirect_to = ""

    def verify_request(self, request, client_address) -> bool:
        self.connections += 1  # every accepted TCP connection, request or not
        return True

    @property
    def url(self) -> str:
        return f"http://{self.server_address[0]}:{self.server_address[1]}"


class Handler(http.server.BaseHTTPRequestHandler):
    server: Server

    def log_message(self, *args) -> None:  # keep test output quiet
        pass

    def do_GET(self) -> None:
        path = self.path.split("?")[0]
        hits = self.server.hits[path] = self.server.hits.get(path, 0) + 1
        self.server.hosts.append(self.headers["Host"])
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
        elif path == "/elsewhere.zip":
            self.send_response(302)
            self.send_header("Location", self.server.redirect_to)
            self.end_headers()
        elif path == "/slow.zip":  # a byte every 0.1 s: each read is quick, the whole is not
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            for _ in range(1000):
                self.wfile.write(b"x")
                self.wfile.flush()
                time.sleep(0.1)
        elif path == "/silent.zip":  # never answers
            time.sleep(30)
        else:
            self._send(404, b"no such file")

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def serve(address: str = "127.0.0.1") -> Iterator[Server]:
    server = Server(address)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def server() -> Iterator[Server]:
    yield from serve()


@pytest.fixture
def other_server() -> Iterator[Server]:
    """A second server, on another loopback address."""
    yield from serve("127.0.0.2")


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
    limits = LIMITS.model_copy(update={"max_download_bytes": 1000})
    with pytest.raises(BadInput, match=r"larger than the download limit \(2048 > 1000 bytes"):
        fetch(f"{server.url}/big.zip", tmp_path / "d.zip", limits)


def test_a_redirect_loop_is_bad_input(server, tmp_path):
    with pytest.raises(BadInput, match="too many redirects"):
        fetch(f"{server.url}/loop.zip", tmp_path / "d.zip", LIMITS)


def test_an_unreachable_host_is_bad_input_after_the_retries(tmp_path):
    limits = DatasetLimits(
        download_attempts=2, download_timeout_seconds=1, allowed_networks=LOOPBACK
    )
    with pytest.raises(BadInput, match=r"http://127.0.0.1:9/x.zip could not be downloaded after 2"):
        fetch("http://127.0.0.1:9/x.zip", tmp_path / "d.zip", limits)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://user:pw@host.example/a.zip?sig=1", "https://host.example/a.zip"),
        ("http://host.example:8080/a.zip", "http://host.example:8080/a.zip"),
        ("s3://bucket/key.zip", "s3://bucket/key.zip"),
        ("http://[::1]:8080/a.zip?sig=1", "http://[::1]:8080/a.zip"),
        ("https://user:pw@host.example:99999/a.zip?sig=1", "https://host.example:99999/a.zip"),
        ("https://user:pw@[::1/a.zip?sig=1", "https://[::1/a.zip"),
    ],
)
def test_urls_in_messages_carry_no_credentials(url, shown):
    assert display_url(url) == shown


def test_an_unsupported_scheme_is_bad_input(tmp_path):
    with pytest.raises(BadInput, match="unsupported URL scheme 'ftp'"):
        fetch("ftp://host/a.zip", Path(tmp_path) / "d.zip", LIMITS)


def test_a_malformed_url_is_bad_input(tmp_path):
    with pytest.raises(BadInput, match=r"data: https://\[::1/a.zip is not a valid URL"):
        fetch("https://user:pw@[::1/a.zip", tmp_path / "d.zip", LIMITS)


def test_by_default_a_loopback_server_is_refused_before_any_connection(server, tmp_path):
    with pytest.raises(BadInput) as error:
        fetch(f"{server.url}/data.zip", tmp_path / "d.zip", DatasetLimits())
    assert str(error.value) == (
        "data: 127.0.0.1 is a loopback address; the operator allows data only from public "
        "addresses and its dataset-limits allowedNetworks"
    )
    assert server.connections == 0 and server.hits == {}
    assert not (tmp_path / "d.zip").exists()


def test_a_name_is_judged_by_the_addresses_it_resolves_to(server, tmp_path):
    port = server.server_address[1]
    loopback = r"data: localhost resolves to (127\.0\.0\.1|::1), a loopback address"
    with pytest.raises(BadInput, match=loopback):
        fetch(f"http://localhost:{port}/data.zip", tmp_path / "d.zip", DatasetLimits())
    assert server.connections == 0


def test_the_checked_address_is_connected_to_and_the_name_still_sent(server, tmp_path, monkeypatch):
    """The socket goes to the address that was checked (no second lookup a rebinding DNS
    could answer differently); the request keeps the URL's host name."""
    lookups = []
    real = socket.getaddrinfo

    def resolve(host, *args, **kwargs):
        lookups.append(host)
        return real("127.0.0.1" if host == "data.example" else host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    port = server.server_address[1]
    fetch(f"http://data.example:{port}/data.zip", tmp_path / "d.zip", LIMITS)
    assert lookups == ["data.example"]
    assert server.hosts == [f"data.example:{port}"]


def test_an_allowed_server_redirecting_to_the_metadata_service_is_refused(server, tmp_path):
    server.redirect_to = "http://169.254.169.254/latest/meta-data/iam/"
    with pytest.raises(BadInput) as error:
        fetch(f"{server.url}/elsewhere.zip", tmp_path / "d.zip", LIMITS)
    assert str(error.value) == (
        f"data: {server.url}/elsewhere.zip redirects to 169.254.169.254, a cloud metadata "
        "address; data is never downloaded from link-local or cloud metadata addresses"
    )


def test_no_allowed_network_lifts_the_metadata_rule(server, tmp_path):
    server.redirect_to = "http://169.254.169.254/latest/meta-data/"
    everything = LIMITS.model_copy(update={"allowed_networks": ["0.0.0.0/0", "::/0"]})
    with pytest.raises(BadInput, match="a cloud metadata address; data is never downloaded"):
        fetch(f"{server.url}/elsewhere.zip", tmp_path / "d.zip", everything)


def test_a_redirect_to_a_loopback_address_not_allowed_is_refused_unseen(
    server, other_server, tmp_path
):
    server.redirect_to = f"{other_server.url}/data.zip"
    only_first = LIMITS.model_copy(update={"allowed_networks": ["127.0.0.1/32"]})
    with pytest.raises(BadInput, match=r"redirects to 127\.0\.0\.2, a loopback address; the op"):
        fetch(f"{server.url}/elsewhere.zip", tmp_path / "d.zip", only_first)
    assert server.hits == {"/elsewhere.zip": 1}
    assert other_server.connections == 0


def test_a_redirect_between_allowed_servers_is_followed(server, other_server, tmp_path):
    server.redirect_to = f"{other_server.url}/data.zip"
    assert fetch(f"{server.url}/elsewhere.zip", tmp_path / "d.zip", LIMITS).read_bytes() == PAYLOAD
    assert other_server.hits == {"/data.zip": 1}


@pytest.mark.parametrize("target", ["file:///etc/passwd", "ftp://127.0.0.1/a.zip", "gopher://x/"])
def test_a_redirect_to_another_scheme_is_refused(server, tmp_path, target):
    server.redirect_to = target
    with pytest.raises(BadInput, match="redirects to a URL that is not http or https"):
        fetch(f"{server.url}/elsewhere.zip", tmp_path / "d.zip", LIMITS)


@pytest.mark.parametrize("path", ["/slow.zip", "/silent.zip"])
def test_a_slow_server_runs_into_the_download_deadline(server, tmp_path, path):
    limits = LIMITS.model_copy(update={"download_deadline_seconds": 0.5})
    started = time.monotonic()
    with pytest.raises(BadInput) as error:
        fetch(f"{server.url}{path}", tmp_path / "d.zip", limits)
    assert time.monotonic() - started < 3
    assert str(error.value) == (
        f"data: {server.url}{path} took longer than the download deadline of 0.5 s "
        "(dataset-limits downloadDeadlineSeconds); serve it from a faster server"
    )
    assert server.hits[path] == 1  # no retry after the deadline
