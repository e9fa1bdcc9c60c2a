"""Downloading `data` from s3://bucket/key on a real MinIO server."""

import uuid

import pytest

from fluxlora_api.limits import DatasetLimits
from fluxlora_trainer.dataset import open_dataset
from fluxlora_trainer.errors import BadInput
from fluxlora_trainer.fetch import fetch
from tests.trainer.datasets import make_zip, photos

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
