"""Uploads' pure parts: accepted names, the gateway's URL of an upload, and the copy into the
store part by part, never whole, abandoned past the limit."""

import pytest

from fluxlora_gateway.hosted import RequestError
from fluxlora_gateway.upload_store import PART_BYTES
from fluxlora_gateway.uploads import (
    TooLarge,
    file_url,
    is_upload_name,
    parse_file_url,
    store_chunks,
    upload_name,
)

BASE = "https://gw.example/trainer"
TOKEN = "abcdefghijklmnopqrstuvwxyz012345"


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("portrait.zip", "portrait.zip"),
        ("C:\\Users\\me\\My Photos.ZIP", "My_Photos.ZIP"),
        ("../../etc/face.jpg", "face.jpg"),
        (".hidden.png", "hidden.png"),
        ("ünïcode näme.webp", "_n_code_n_me.webp"),
    ],
)
def test_uploads_keep_their_own_name_in_safe_characters(given, stored):
    assert upload_name(given) == stored
    assert is_upload_name(stored)


@pytest.mark.parametrize("given", ["notes.txt", "archive.tar.gz", "model.safetensors", "zip", ""])
def test_only_zips_and_images_are_accepted_naming_the_field(given):
    with pytest.raises(RequestError, match=r"^filename: .* is not one of the accepted kinds"):
        upload_name(given)
    assert not is_upload_name(given)


def test_an_uploads_url_is_recognised_only_on_this_gateway():
    url = file_url(BASE, TOKEN, "My Photos.zip")
    assert url == f"{BASE}/api/v3/media/files/{TOKEN}/My%20Photos.zip"
    assert parse_file_url(url, BASE) == (TOKEN, "My Photos.zip")
    assert parse_file_url(url.replace("gw.example", "other.example"), BASE) is None
    assert parse_file_url(url.replace("https:", "http:"), BASE) is None
    assert parse_file_url(url + "?x=1", BASE) is None
    assert parse_file_url(f"{BASE}/api/v3/media/files/short/a.zip", BASE) is None
    assert parse_file_url("https://example.com/data.zip", BASE) is None


class FakeStore:
    """Records what a multipart upload would store."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.completed = self.aborted = False

    def start(self, key: str, content_type: str) -> str:
        assert content_type == "application/zip"
        return "upload-1"

    def put_part(self, key: str, upload_id: str, number: int, data: bytes) -> dict:
        assert number == len(self.parts) + 1
        self.parts.append(data)
        return {"PartNumber": number, "ETag": str(number)}

    def complete(self, key: str, upload_id: str, parts: list) -> None:
        assert [p["PartNumber"] for p in parts] == list(range(1, len(self.parts) + 1))
        self.completed = True

    def abort(self, key: str, upload_id: str) -> None:
        self.aborted = True


async def chunks_of(sizes: list[int]):
    for size in sizes:
        yield b"x" * size


async def test_a_large_upload_goes_in_parts_never_held_whole():
    store = FakeStore()
    chunk = 1024 * 1024
    count = 2 * PART_BYTES // chunk + 3
    size = await store_chunks(store, "k", "d.zip", chunks_of([chunk] * count), 10 * PART_BYTES)
    assert size == count * chunk and store.completed and not store.aborted
    assert [len(p) for p in store.parts] == [PART_BYTES, PART_BYTES, 3 * chunk]


async def test_past_the_limit_nothing_is_kept():
    store = FakeStore()
    with pytest.raises(TooLarge, match="file: larger than the upload limit of 100 bytes"):
        await store_chunks(store, "k", "d.zip", chunks_of([60, 60]), 100)
    assert store.aborted and not store.completed


async def test_an_empty_file_is_refused():
    store = FakeStore()
    with pytest.raises(RequestError, match="file: empty"):
        await store_chunks(store, "k", "d.zip", chunks_of([]), 100)
    assert store.aborted
