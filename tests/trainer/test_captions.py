"""The hosted API's caption rule, case by case."""

from pathlib import Path

import pytest

from fluxlora_trainer.captions import UnusableCaption, apply_caption_rule, read_caption


@pytest.mark.parametrize(
    ("caption", "trigger", "expected"),
    [
        (None, "p3r5on", "p3r5on"),  # no caption: the trigger word
        ("a man on a beach", "p3r5on", "a man on a beach"),  # a caption is used unchanged
        (None, None, ""),  # no trigger word anywhere
        ("a man on a beach", None, "a man on a beach"),
        ("photo of [trigger] smiling", "p3r5on", "photo of p3r5on smiling"),
        ("[trigger], [trigger] again", "zq", "zq, zq again"),
        ("photo of [trigger] smiling", None, "photo of smiling"),
        ("[trigger] at night", None, "at night"),
    ],
)
def test_the_caption_rule(caption, trigger, expected):
    assert apply_caption_rule(caption, trigger) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"a dog\n", "a dog"),
        (b"\xef\xbb\xbfa dog with a BOM", "a dog with a BOM"),
        (b"  line one\r\nline two\r\n\r\n", "line one\nline two"),
        ("caf\u00e9 au lait".encode(), "caf\u00e9 au lait"),
        (b"   \n", None),  # an empty caption file is no caption
    ],
)
def test_caption_files_are_read_as_utf8_text(tmp_path, raw, expected):
    path = tmp_path / "a.txt"
    path.write_bytes(raw)
    assert read_caption(path, 1000) == expected


def test_a_caption_over_the_limit_is_refused_without_reading_it_whole():
    # /dev/zero never ends: reading it whole would never return.
    with pytest.raises(UnusableCaption, match="larger than the caption limit of 1000 bytes"):
        read_caption(Path("/dev/zero"), 1000)


def test_a_caption_of_exactly_the_limit_is_read(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("x" * 1000)
    assert read_caption(path, 1000) == "x" * 1000
