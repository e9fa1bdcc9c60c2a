"""The gateway's dataset check: the trainer's rules, run in a child process with its own
limits, with a thumbnail of each image."""

import base64
import io

from PIL import Image

from fluxlora_gateway import dataset_check
from fluxlora_gateway.dataset_check import check_dataset
from fluxlora_localcluster.datasets import image_bytes, make_zip, photos


async def test_an_upload_is_read_by_the_trainers_rules_with_thumbnails(tmp_path):
    entries = {
        **photos(3),
        "captioned.png": image_bytes(fmt="PNG"),
        "captioned.txt": "a [trigger] at the beach",
        "notes.pdf": b"%PDF-1.4",
        "broken.jpg": b"not a jpeg",
    }
    report = await check_dataset(make_zip(tmp_path / "d.zip", entries), "sks")
    assert report.error == ""
    by_name = {image.name: image for image in report.images}
    assert by_name["captioned.png"].caption == "a sks at the beach"
    assert {image.caption for name, image in by_name.items() if name != "captioned.png"} == {"sks"}
    skipped = {item.name: item.reason for item in report.skipped}
    assert "broken.jpg" in skipped and "notes.pdf" in skipped
    thumbnail = report.images[0].thumbnail
    assert thumbnail.startswith("data:image/jpeg;base64,")
    decoded = Image.open(io.BytesIO(base64.b64decode(thumbnail.split(",", 1)[1])))
    assert max(decoded.size) <= dataset_check.THUMBNAIL_PIXELS
    assert report.warning == ""


async def test_a_dataset_without_images_or_a_check_out_of_memory_is_an_error_not_a_crash(
    tmp_path, monkeypatch
):
    empty = await check_dataset(make_zip(tmp_path / "e.zip", {"a.txt": "x"}), None)
    assert empty.images == [] and "has no usable image" in empty.error
    few = await check_dataset(make_zip(tmp_path / "f.zip", photos(2)), None)
    assert few.warning.startswith("only 2 usable image(s)")
    # The child's own memory limit: far too little to start Python, so the check fails alone.
    monkeypatch.setattr(dataset_check, "CHECK_MEMORY_BYTES", 16 * 1024 * 1024)
    starved = await check_dataset(make_zip(tmp_path / "g.zip", photos(2)), None)
    assert starved.error.startswith("data: the check stopped")


def test_the_check_gets_the_dataset_limits_but_none_of_the_gateways_secrets(monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.setenv("FLUXLORA_DATASET_LIMITS", '{"maxFiles": 10}')
    environment = dataset_check._child_environment()
    assert environment["FLUXLORA_DATASET_LIMITS"] == '{"maxFiles": 10}'
    assert "AWS_SECRET_ACCESS_KEY" not in environment
