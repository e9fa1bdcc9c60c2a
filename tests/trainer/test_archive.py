"""Hostile zips: each named case ends as the entry skipped with a reason or as BadInput, and a
seeded byte-mutation fuzzer holds every extraction and dataset built from it to the same rule:
BadInput or a clean result, never another exception."""

import io
import random
import struct
import unicodedata
import warnings
import zipfile
from pathlib import Path

import pytest

from fluxlora_api.limits import DatasetLimits
from fluxlora_localcluster.datasets import image_bytes
from fluxlora_trainer.archive import Extracted, extract_dataset
from fluxlora_trainer.dataset import open_dataset
from fluxlora_trainer.errors import BadInput

LIMITS = DatasetLimits()
JPEG = image_bytes(size=(16, 12))


def build(entries: list[tuple[str | zipfile.ZipInfo, bytes]], **options) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate names we want
        with zipfile.ZipFile(buffer, "w", **options) as bundle:
            for name, content in entries:
                bundle.writestr(name, content)
    return buffer.getvalue()


def patch_headers(data: bytes, name: str, **fields: int) -> bytes:
    """Set fields (flags, method, crc) of `name`'s local and central headers."""
    # per header kind: where its name's length and its name are, and where each field is
    headers = {
        b"PK\x03\x04": (26, 30, {"flags": 6, "method": 8, "crc": 14}),
        b"PK\x01\x02": (28, 46, {"flags": 8, "method": 10, "crc": 16}),
    }
    forms = {"flags": "<H", "method": "<H", "crc": "<I"}
    out = bytearray(data)
    for signature, (length_at, name_at, offsets) in headers.items():
        start = 0
        while (start := out.find(signature, start)) >= 0:
            length = struct.unpack_from("<H", out, start + length_at)[0]
            if out[start + name_at : start + name_at + length] == name.encode():
                for field, value in fields.items():
                    struct.pack_into(forms[field], out, start + offsets[field], value)
            start += 4
    return bytes(out)


def extract(tmp_path: Path, data: bytes, limits: DatasetLimits = LIMITS) -> Extracted:
    archive = tmp_path / "data.zip"
    archive.write_bytes(data)
    return extract_dataset(archive, tmp_path / "out", limits, "data.zip")


def assert_clean(result: Extracted) -> None:
    root = result.root.resolve()
    for relative in result.files:
        path = (result.root / relative).resolve()
        assert path.is_file() and path.is_relative_to(root), relative
    written = {p.relative_to(result.root) for p in result.root.rglob("*") if p.is_file()}
    assert written == set(result.files)


def reasons(result: Extracted) -> dict[str, str]:
    return {item.name: item.reason for item in result.ignored}


def test_a_file_then_a_folder_of_its_name(tmp_path):
    result = extract(tmp_path, build([("a.jpg", JPEG), ("a.jpg/b.jpg", JPEG)]))
    assert result.files == [Path("a.jpg")]
    assert reasons(result) == {"a.jpg/b.jpg": "its folder has the name of the file a.jpg"}
    assert_clean(result)


def test_a_folder_then_a_file_of_its_name(tmp_path):
    result = extract(tmp_path, build([("a.jpg/b.jpg", JPEG), ("a.jpg", JPEG)]))
    assert result.files == [Path("a.jpg/b.jpg")]
    assert reasons(result) == {"a.jpg": "a folder of the same name holds other files"}
    assert_clean(result)


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("a.jpg", "a.jpg"),  # the same name twice
        ("set/A.jpg", "SET/a.JPG"),  # letter case
        (unicodedata.normalize("NFC", "caf\u00e9.jpg"), unicodedata.normalize("NFD", "café.jpg")),
    ],
    ids=["duplicate", "case", "unicode-form"],
)
def test_two_entries_onto_one_file_keep_the_first(tmp_path, first, second):
    result = extract(tmp_path, build([(first, JPEG), (second, b"second")]))
    assert result.files == [Path(first)]
    assert (result.root / first).read_bytes() == JPEG
    assert [item.reason for item in result.ignored] == [
        f"same file name as {first} (keeping that one)"
    ]
    assert_clean(result)


def test_entries_without_a_name_are_skipped(tmp_path):
    nameless = zipfile.ZipInfo("")  # writestr refuses an empty name given as a string
    result = extract(tmp_path, build([(nameless, JPEG), ("\\\\", JPEG), ("ok.jpg", JPEG)]))
    assert result.files == [Path("ok.jpg")]
    assert set(reasons(result).values()) == {"no file name"}
    assert_clean(result)


def test_a_nul_byte_ends_the_name(tmp_path):
    data = build([("a\x01b.jpg", JPEG)]).replace(b"a\x01b.jpg", b"a\x00b.jpg")
    result = extract(tmp_path, data)
    assert result.files == []
    assert list(reasons(result).values()) == [
        "not an image (jpg, jpeg, png, webp, bmp) or caption (.txt)"
    ]
    assert_clean(result)


def test_an_encrypted_entry_is_skipped_saying_so(tmp_path):
    data = patch_headers(build([("secret.jpg", JPEG), ("ok.jpg", JPEG)]), "secret.jpg", flags=1)
    result = extract(tmp_path, data)
    assert result.files == [Path("ok.jpg")]
    assert reasons(result) == {
        "secret.jpg": "encrypted (password-protected); zip it without a password"
    }


def test_an_unknown_compression_method_is_skipped_saying_so(tmp_path):
    data = patch_headers(build([("odd.jpg", JPEG), ("ok.jpg", JPEG)]), "odd.jpg", method=99)
    result = extract(tmp_path, data)
    assert result.files == [Path("ok.jpg")]
    assert reasons(result) == {"odd.jpg": "compressed with an unsupported method (99); use deflate"}


def test_a_crc_error_costs_the_entry(tmp_path):
    data = patch_headers(build([("bad.jpg", JPEG), ("ok.jpg", JPEG)]), "bad.jpg", crc=1234)
    result = extract(tmp_path, data)
    assert result.files == [Path("ok.jpg")]
    assert reasons(result)["bad.jpg"].startswith("damaged in the zip: Bad CRC-32")
    assert_clean(result)


def test_corrupt_compressed_data_costs_the_entry(tmp_path):
    data = build([("bad.txt", "x" * 5000), ("ok.jpg", JPEG)], compression=zipfile.ZIP_DEFLATED)
    packed = zipfile.ZipFile(io.BytesIO(data)).getinfo("bad.txt")
    start = packed.header_offset + 30 + len("bad.txt")
    data = data[:start] + b"\xff" * 8 + data[start + 8 :]
    result = extract(tmp_path, data)
    assert result.files == [Path("ok.jpg")]
    assert reasons(result)["bad.txt"].startswith("damaged in the zip:")


def test_zip64_archives_extract(tmp_path):
    result = extract(tmp_path, _zip64([("a.jpg", JPEG), ("a.txt", b"caption")]))
    assert result.files == [Path("a.jpg"), Path("a.txt")] and result.ignored == []
    assert_clean(result)


def _zip64(entries: list[tuple[str, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as bundle:
        for name, content in entries:
            with bundle.open(name, "w", force_zip64=True) as entry:
                entry.write(content)
    return buffer.getvalue()


def test_a_huge_extra_field_is_survived(tmp_path):
    info = zipfile.ZipInfo("a.jpg")
    info.extra = b"\x99\x99" + struct.pack("<H", 60000) + b"\0" * 60000
    result = extract(tmp_path, build([(info, JPEG), ("b.jpg", JPEG)]))
    assert result.files == [Path("a.jpg"), Path("b.jpg")]
    assert_clean(result)


def test_a_name_longer_than_a_file_system_takes_is_skipped(tmp_path):
    long = "x" * 300 + ".jpg"
    deep = "/".join(["d" * 200] * 8) + "/a.jpg"
    result = extract(tmp_path, build([(long, JPEG), (deep, JPEG), ("ok.jpg", JPEG)]))
    assert result.files == [Path("ok.jpg")]
    assert reasons(result) == {long: "name too long", deep: "name too long"}


def test_a_table_of_contents_too_big_for_the_file_limit_is_refused_before_reading(tmp_path):
    entries = [(f"{'n' * 200}_{i}.jpg", b"") for i in range(20)]
    with pytest.raises(
        BadInput, match=r"table of contents of \d+ bytes, too big for the limit of 2"
    ):
        extract(tmp_path, build(entries), DatasetLimits(max_files=2))


def test_a_truncated_zip_is_bad_input(tmp_path):
    data = build([("a.jpg", JPEG), ("b.jpg", JPEG)])
    with pytest.raises(BadInput, match=r"data: data\.zip is not a zip file"):
        extract(tmp_path, data[: len(data) // 2])


SEEDS = [
    build([("a.jpg", JPEG), ("a.txt", "a caption"), ("dir/b.png", image_bytes("PNG"))]),
    build(
        [("a.jpg", JPEG), ("a.txt", "caption " * 40), ("b.jpg", JPEG)],
        compression=zipfile.ZIP_DEFLATED,
    ),
    build([("x.jpg", JPEG), ("x.txt", "bz2 " * 30)], compression=zipfile.ZIP_BZIP2),
    build([("x.jpg", JPEG), ("y.txt", "lzma " * 30)], compression=zipfile.ZIP_LZMA),
    _zip64([("z.jpg", JPEG), ("z.txt", b"zip64")]),
]


def mutate(data: bytes, rng: random.Random) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 6)):
        how = rng.random()
        position = rng.randrange(len(out))
        if how < 0.5:
            out[position] = rng.randrange(256)
        elif how < 0.7:  # a header field set to an edge value
            value = rng.choice([0, 1, 0xFF, 0xFFFF, 0xFFFFFFFF, 0x7FFFFFFF])
            size = rng.choice([2, 4])
            if position + size <= len(out):
                out[position : position + size] = value.to_bytes(8, "little")[:size]
        elif how < 0.85:
            del out[position : position + rng.randint(1, 64)]
        else:
            out[position:position] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 64)))
    return bytes(out)


def test_mutated_zips_end_as_bad_input_or_a_clean_dataset(tmp_path):
    rng = random.Random(20240611)
    small = DatasetLimits(max_uncompressed_bytes=2_000_000, max_files=50)
    outcomes = {"bad input": 0, "extracted": 0, "dataset": 0}
    for attempt in range(400):
        data = mutate(rng.choice(SEEDS), rng)
        folder = tmp_path / str(attempt)
        folder.mkdir()
        archive = folder / "data.zip"
        archive.write_bytes(data)
        try:
            result = extract_dataset(archive, folder / "out", small, "data.zip")
        except BadInput:
            outcomes["bad input"] += 1
            continue
        assert_clean(result)
        outcomes["extracted"] += 1
        try:
            dataset = open_dataset(str(archive), folder / "work", "w", small)
        except BadInput:
            continue
        assert all(sample.image.is_file() for sample in dataset.samples)
        outcomes["dataset"] += 1
    # The mutations reach every outcome, so the fuzzer tests something.
    assert all(count > 10 for count in outcomes.values()), outcomes
