"""Downloading over HTTPS from a local server: the socket goes to the checked address while TLS
still checks the certificate for the URL's host name, and the deadline also cuts TLS reads."""

import http.server
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fluxlora_api.limits import DatasetLimits
from fluxlora_trainer.errors import BadInput
from fluxlora_trainer.fetch import fetch

PAYLOAD = b"PK\x05\x06" + b"\0" * 18  # an empty zip
LIMITS = DatasetLimits(
    download_attempts=1, download_timeout_seconds=5, allowed_networks=["127.0.0.0/8", "::1"]
)


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        self.server.hosts.append(self.headers["Host"])
        self.send_response(200)
        self.send_header("Content-Length", str(len(PAYLOAD) if self.path == "/data.zip" else 1000))
        self.end_headers()
        if self.path == "/data.zip":
            self.wfile.write(PAYLOAD)
            return
        try:
            for _ in range(1000):  # a byte every 0.1 s
                self.wfile.write(b"x")
                self.wfile.flush()
                time.sleep(0.1)
        except OSError:  # the client hung up, as it should
            pass


@pytest.fixture(scope="module")
def certificate(tmp_path_factory) -> tuple[Path, Path]:
    """A self-signed certificate for the name localhost (and only that name), made by the
    openssl command (part of the machine; without it this test fails rather than hides)."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    command = "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost"
    subprocess.run(
        [*command.split(), "-keyout", key, "-out", cert, "-addext", "subjectAltName=DNS:localhost"],
        check=True,
        capture_output=True,
    )
    return cert, key


@pytest.fixture
def https_server(certificate, monkeypatch) -> Iterator[http.server.ThreadingHTTPServer]:
    cert, key = certificate
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # the client trusts it as its CA
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.hosts = []
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def test_https_keeps_the_host_name_for_the_certificate_and_the_request(https_server, tmp_path):
    port = https_server.server_address[1]
    url = f"https://localhost:{port}/data.zip"
    assert fetch(url, tmp_path / "d.zip", LIMITS).read_bytes() == PAYLOAD
    assert https_server.hosts == [f"localhost:{port}"]


def test_https_to_an_address_still_checks_the_certificate_name(https_server, tmp_path):
    port = https_server.server_address[1]
    with pytest.raises(BadInput, match=r"could not be downloaded after 1 attempts: .*certificate"):
        fetch(f"https://127.0.0.1:{port}/data.zip", tmp_path / "d.zip", LIMITS)
    assert https_server.hosts == []


def test_a_slow_https_server_runs_into_the_deadline(https_server, tmp_path):
    port = https_server.server_address[1]
    limits = LIMITS.model_copy(update={"download_deadline_seconds": 0.5})
    started = time.monotonic()
    with pytest.raises(BadInput, match=r"took longer than the download deadline of 0\.5 s"):
        fetch(f"https://localhost:{port}/slow.zip", tmp_path / "d.zip", limits)
    assert time.monotonic() - started < 3
