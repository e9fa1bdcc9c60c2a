"""A local HTTP file server for `data` URLs, and datasets served from it and from MinIO."""

import functools
import http.server
import json
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from fluxlora_api.limits import DATASET_LIMITS_ENV
from fluxlora_localcluster.datasets import make_zip, photos


@dataclass
class FileServer:
    root: Path
    url: str


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def http_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FileServer]:
    """A file server on loopback, which the trainer refuses unless the operator allows it: the
    environment allows it here, as the operator would (trainer subprocesses inherit it)."""
    monkeypatch.setenv(DATASET_LIMITS_ENV, json.dumps({"allowedNetworks": ["127.0.0.0/8"]}))
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield FileServer(root, f"http://127.0.0.1:{server.server_address[1]}")
    server.shutdown()


@pytest.fixture
def http_dataset(http_server: FileServer) -> str:
    make_zip(http_server.root / "portrait.zip", {**photos(4), "photo_1.txt": "[trigger] at work"})
    return f"{http_server.url}/portrait.zip"


@pytest.fixture
def s3_dataset(s3_env, tmp_path: Path) -> str:
    """A bucket holding data/portrait.zip (4 photos, one captioned); its name."""
    bucket = f"run-{uuid.uuid4().hex[:8]}"
    client = s3_env.client()
    client.create_bucket(Bucket=bucket)
    archive = make_zip(tmp_path / "portrait.zip", {**photos(4), "photo_2.txt": "[trigger] smiling"})
    client.upload_file(str(archive), bucket, "data/portrait.zip")
    return bucket
