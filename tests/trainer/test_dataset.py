"""From a zip to training samples: what is used, what is skipped and why, and what is refused."""

import io
import zipfile

import pytest
from PIL import Image

from fluxlora_api.limits import DatasetLimits
from fluxlora_localcluster.datasets import image_bytes, make_zip, photos
from fluxlora_trainer.dataset import load_dataset, open_dataset, save_dataset
from fluxlora_trainer.errors import BadInput
from fluxlora_trainer.images import NOT_READABLE, load_rgb

LIMITS = DatasetLimits()


def open_zip(tmp_path, entries, trigger="p3r5on", limits=LIMITS):
    archive = make_zip(tmp_path / "data.zip", entries)
    return open_dataset(str(archive), tmp_path / "work", trigger, limits)


def captions(dataset):
    return {sample.name: sample.caption for sample in dataset.samples}


def test_images_in_nested_folders_any_case_with_and_without_captions(tmp_path):
    dataset = open_zip(
        tmp_path,
        {
            "set/a.JPG": image_bytes("JPEG"),
            "set/a.txt": "a man reading, [trigger]",
            "set/deep/b.png": image_bytes("PNG"),
            "c.WebP": image_bytes("WEBP"),
            "C.TXT": "a red square",
            "d.bmp": image_bytes("BMP"),
            "e.jpeg": image_bytes("JPEG"),
        },
    )
    assert captions(dataset) == {
        "c.WebP": "a red square",
        "d.bmp": "p3r5on",
        "e.jpeg": "p3r5on",
        "set/a.JPG": "a man reading, p3r5on",
        "set/deep/b.png": "p3r5on",
    }
    assert dataset.skipped == []


def test_no_trigger_word_leaves_uncaptioned_images_with_an_empty_caption(tmp_path):
    dataset = open_zip(
        tmp_path, {"a.jpg": image_bytes(), "b.jpg": image_bytes(), "b.txt": "x"}, None
    )
    assert captions(dataset) == {"a.jpg": "", "b.jpg": "x"}


def test_metadata_hidden_and_other_files_are_ignored_and_reported(tmp_path):
    dataset = open_zip(
        tmp_path,
        {
            **photos(2),
            "__MACOSX/._photo_0.jpg": b"resource fork",
            ".DS_Store": b"junk",
            "folder/.hidden.jpg": image_bytes(),
            "notes.pdf": b"%PDF",
        },
    )
    assert len(dataset.samples) == 2
    assert {item.name: item.reason for item in dataset.skipped} == {
        "__MACOSX/._photo_0.jpg": "macOS metadata",
        ".DS_Store": "hidden file",
        "folder/.hidden.jpg": "hidden file",
        "notes.pdf": "not an image (jpg, jpeg, png, webp, bmp) or caption (.txt)",
    }


def test_an_opened_dataset_saved_for_the_ranks_loads_as_it_was(tmp_path):
    dataset = open_zip(tmp_path, {**photos(2), "a.txt": "a man, [trigger]", "n.pdf": b"%PDF"})
    save_dataset(dataset, tmp_path / "dataset.json")
    loaded = load_dataset(tmp_path / "dataset.json")
    assert loaded == dataset
    assert loaded.samples[0].image.is_file()  # a path each rank opens


def test_a_corrupt_image_is_skipped_and_the_rest_train(tmp_path):
    broken = image_bytes()[:200]  # truncated JPEG
    dataset = open_zip(tmp_path, {**photos(3), "broken.jpg": broken, "fake.png": b"not a png"})
    assert len(dataset.samples) == 3
    reasons = {item.name: item.reason for item in dataset.skipped}
    assert reasons["broken.jpg"].startswith("damaged image")
    assert reasons["fake.png"] == NOT_READABLE


def test_a_dataset_without_usable_images_is_bad_input_naming_the_files(tmp_path):
    with pytest.raises(BadInput) as error:
        open_zip(tmp_path, {"readme.md": "hi", "broken.jpg": b"xx"})
    message = str(error.value)
    assert "has no usable image" in message
    assert f"broken.jpg: {NOT_READABLE}" in message and "readme.md" in message


def test_not_a_zip_is_bad_input(tmp_path):
    path = tmp_path / "data.zip"
    path.write_text("<html>Sign in to continue</html>")
    with pytest.raises(BadInput, match=r"data: .*data\.zip is not a zip file"):
        open_dataset(str(path), tmp_path / "work", "p3r5on", LIMITS)


def test_exif_orientation_is_applied(tmp_path):
    image = Image.new("RGB", (64, 48), (10, 20, 30))
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90 degrees when shown
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", exif=exif)
    dataset = open_zip(tmp_path, {"rotated.jpg": buffer.getvalue()})
    assert (dataset.samples[0].width, dataset.samples[0].height) == (48, 64)


def test_transparency_is_flattened_on_white(tmp_path):
    path = tmp_path / "clear.png"
    path.write_bytes(image_bytes("PNG", mode="RGBA"))
    image = load_rgb(path, LIMITS.max_image_pixels)
    assert image.mode == "RGB" and image.getpixel((0, 0)) == (255, 255, 255)


def test_images_over_the_pixel_limit_are_skipped(tmp_path):
    limits = DatasetLimits(max_image_pixels=50 * 50)
    dataset = open_zip(
        tmp_path,
        {"small.jpg": image_bytes(size=(40, 40)), "big.jpg": image_bytes(size=(60, 60))},
        limits=limits,
    )
    assert [s.name for s in dataset.samples] == ["small.jpg"]
    assert dataset.skipped[0].reason.startswith("60x60 is more than 2500 pixels")


def test_entries_that_escape_the_folder_or_link_elsewhere_are_never_written(tmp_path):
    archive = tmp_path / "data.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr("ok.jpg", image_bytes())
        bundle.writestr("../escaped.txt", "outside")
        bundle.writestr("/abs/escaped.jpg", image_bytes())
        link = zipfile.ZipInfo("link.jpg")
        link.external_attr = (0o120777) << 16  # a symlink entry
        bundle.writestr(link, "/etc/passwd")
    dataset = open_dataset(str(archive), tmp_path / "work", "p3r5on", LIMITS)
    assert [s.name for s in dataset.samples] == ["ok.jpg"]
    reasons = {item.name: item.reason for item in dataset.skipped}
    assert reasons == {
        "../escaped.txt": "path escapes the dataset folder",
        "/abs/escaped.jpg": "path escapes the dataset folder",
        "link.jpg": "symbolic link",
    }
    written = {p.name for p in tmp_path.rglob("*") if p.is_file()}
    assert "escaped.txt" not in written and "escaped.jpg" not in written


@pytest.mark.parametrize(
    ("limits", "match"),
    [
        (DatasetLimits(max_files=3), "holds 5 files, more than the limit of 3"),
        (DatasetLimits(max_uncompressed_bytes=1000), "unpacks to more than the limit of 1000"),
    ],
)
def test_zip_bombs_stop_at_the_limits(tmp_path, limits, match):
    with pytest.raises(BadInput, match=match):
        open_zip(tmp_path, photos(5), limits=limits)


def test_a_highly_compressed_entry_stops_at_the_size_limit(tmp_path):
    archive = tmp_path / "bomb.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as bundle:
        bundle.writestr("a.txt", "0" * 5_000_000)
    assert archive.stat().st_size < 20_000
    with pytest.raises(BadInput, match="unpacks to more than the limit"):
        open_dataset(
            str(archive), tmp_path / "work", "w", DatasetLimits(max_uncompressed_bytes=1_000_000)
        )


def test_a_caption_that_is_not_utf8_is_bad_input_naming_it(tmp_path):
    with pytest.raises(BadInput, match=r"caption a\.txt is not UTF-8"):
        open_zip(tmp_path, {"a.jpg": image_bytes(), "a.txt": "caf\u00e9".encode("latin-1")})


def test_a_reused_work_folder_holds_only_the_new_dataset(tmp_path):
    first = make_zip(tmp_path / "first.zip", photos(3, prefix="old_"))
    second = make_zip(tmp_path / "second.zip", photos(2, prefix="new_"))
    open_dataset(str(first), tmp_path / "work", "w", LIMITS)
    dataset = open_dataset(str(second), tmp_path / "work", "w", LIMITS)
    assert sorted(s.name for s in dataset.samples) == ["new_photo_0.jpg", "new_photo_1.jpg"]
    on_disk = sorted(p.name for p in (tmp_path / "work" / "dataset").iterdir())
    assert on_disk == ["new_photo_0.jpg", "new_photo_1.jpg"]  # the old files are gone


@pytest.mark.parametrize("fmt", ["TIFF", "GIF", "ICO"])
def test_other_formats_behind_an_image_name_are_not_decoded(tmp_path, fmt):
    dataset = open_zip(tmp_path, {"ok.jpg": image_bytes(), "other.jpg": image_bytes(fmt)})
    assert [s.name for s in dataset.samples] == ["ok.jpg"]
    assert {item.name: item.reason for item in dataset.skipped} == {"other.jpg": NOT_READABLE}


def test_a_caption_over_the_limit_is_skipped_and_its_image_trains_without_it(tmp_path):
    limits = DatasetLimits(max_caption_bytes=100)
    dataset = open_zip(
        tmp_path,
        {"a.jpg": image_bytes(), "a.txt": "x" * 101, "b.jpg": image_bytes(), "b.txt": "short"},
        limits=limits,
    )
    assert captions(dataset) == {"a.jpg": "p3r5on", "b.jpg": "short"}
    assert [(item.name, item.reason) for item in dataset.skipped] == [
        (
            "a.txt",
            "larger than the caption limit of 100 bytes (dataset-limits maxCaptionBytes); "
            "its image is trained as if it had no caption",
        )
    ]


def test_images_over_the_total_pixel_budget_are_bad_input(tmp_path):
    limits = DatasetLimits(max_total_pixels=2 * 64 * 48)
    assert len(open_zip(tmp_path, photos(2), limits=limits).samples) == 2
    with pytest.raises(BadInput) as error:
        open_zip(tmp_path, photos(3), limits=limits)
    assert str(error.value) == (
        f"data: the images of {tmp_path / 'data.zip'} hold more than the limit of 6144 pixels "
        "in all (dataset-limits maxTotalPixels); use fewer or smaller images"
    )
