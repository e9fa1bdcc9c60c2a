"""Downloading `data` from s3://bucket/key on a real MinIO server, with the namespace's
credentials only."""

import socketserver
import threading
import uuid
from collections.abc import Iterator

import pytest

from fluxlora_api.limits import DatasetLimits
from fluxlora_localcluster.datasets import make_zip, photos
from fluxlora_trainer.dataset import open_dataset
from fluxlora_trainer.errors import BadInput
from fluxlora_trainer.fetch import fetch

LIMITS = DatasetLimits(download_attempts=2, download_timeout_seconds=5)


@pytest.fixture
def bucket(s3_env):
    name = f"datasets-{uuid.uuid4().hex[:8]}"
    s3_env.client().create_bucket(Bucket=name)
    return name


def test_a_dataset_in_s3_trains_like_one_from_https(s3_env, bucket, tmp_path):
    archive = make_zip(tmp_path / "portrait.zip", {**photos(4), "photo_1.txt": "me at work"})
    s3_env.client().upload_file(str(archive), bucket, "people/portrait.zip")
    dataset = open_dataset(
        f"s3://{bucket}/people/portrait.zip", tmp_path / "work", "p3r5on", LIMITS
    )
    assert len(dataset.samples) == 4
    assert {s.caption for s in dataset.samples} == {"p3r5on", "me at work"}


def test_a_missing_object_is_bad_input(s3_env, bucket, tmp_path):
    with pytest.raises(BadInput, match=rf"data: s3://{bucket}/nope.zip: no such object"):
        fetch(f"s3://{bucket}/nope.zip", tmp_path / "d.zip", LIMITS)


def test_a_missing_bucket_is_bad_input(s3_env, tmp_path):
    with pytest.raises(BadInput, match=r"s3://no-such-bucket-here/x.zip: no such (bucket|object)"):
        fetch("s3://no-such-bucket-here/x.zip", tmp_path / "d.zip", LIMITS)


def test_wrong_credentials_are_bad_input_that_says_so(s3_env, bucket, tmp_path, monkeypatch):
    archive = make_zip(tmp_path / "a.zip", photos(1))
    s3_env.client().upload_file(str(archive), bucket, "a.zip")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong")
    with pytest.raises(BadInput, match="access denied"):
        fetch(f"s3://{bucket}/a.zip", tmp_path / "d.zip", LIMITS)


def test_an_object_over_the_download_limit_is_refused(s3_env, bucket, tmp_path):
    archive = make_zip(tmp_path / "a.zip", photos(3))
    s3_env.client().upload_file(str(archive), bucket, "a.zip")
    with pytest.raises(BadInput, match="larger than the download limit"):
        fetch(f"s3://{bucket}/a.zip", tmp_path / "d.zip", DatasetLimits(max_download_bytes=100))


class Listener(socketserver.ThreadingTCPServer):
    """Counts the connections it gets and answers none of them."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), socketserver.BaseRequestHandler)
        self.connections = 0

    def verify_request(self, request, client_address) -> bool:
        self.connections += 1
        return False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


@pytest.fixture
def listener() -> Iterator[Listener]:
    server = Listener()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def no_credentials(monkeypatch, tmp_path, listener) -> Listener:
    """No credentials in the environment; the endpoint, the metadata service and the container
    credentials service all point at a listener that counts connections."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", listener.url)
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", listener.url)
    monkeypatch.setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", f"{listener.url}/creds")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    return listener


NO_CREDENTIALS = (
    "data: s3:// datasets need the namespace's storage credentials (the operator's "
    "output-secret); none were given"
)


def test_without_credentials_nothing_is_asked_of_any_service(no_credentials, tmp_path):
    with pytest.raises(BadInput) as error:
        fetch("s3://bucket/a.zip", tmp_path / "d.zip", LIMITS)
    assert str(error.value) == NO_CREDENTIALS
    assert no_credentials.connections == 0  # neither the metadata service nor the endpoint


def test_credentials_in_a_file_of_the_image_are_not_used(no_credentials, tmp_path, monkeypatch):
    shared = tmp_path / "credentials"
    shared.write_text("[default]\naws_access_key_id = node\naws_secret_access_key = node\n")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(shared))
    with pytest.raises(BadInput) as error:
        fetch("s3://bucket/a.zip", tmp_path / "d.zip", LIMITS)
    assert str(error.value) == NO_CREDENTIALS
    assert no_credentials.connections == 0
