"""Datasets made on the spot: zips of generated images, captions and the odd hostile entry."""

import io
import zipfile
from pathlib import Path

from PIL import Image

COLORS = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (200, 200, 30), (30, 200, 200)]


def image_bytes(
    fmt: str = "JPEG", size: tuple[int, int] = (64, 48), color=(200, 30, 30), mode: str = "RGB"
) -> bytes:
    image = Image.new(mode, size, color if mode == "RGB" else (*color, 0))
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def make_zip(path: Path, entries: dict[str, bytes | str]) -> Path:
    with zipfile.ZipFile(path, "w") as bundle:
        for name, content in entries.items():
            bundle.writestr(name, content.encode() if isinstance(content, str) else content)
    return path


def photos(count: int = 5, prefix: str = "") -> dict[str, bytes]:
    return {
        f"{prefix}photo_{i}.jpg": image_bytes(color=COLORS[i % len(COLORS)]) for i in range(count)
    }
