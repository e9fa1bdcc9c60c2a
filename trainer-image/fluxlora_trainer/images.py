"""Opens one dataset image safely: only the accepted formats are decoded (whatever its name,
a TIFF, PSD or other file never reaches those decoders), size checked before decoding
(decompression bombs), fully decoded to catch truncation, EXIF orientation applied, converted
to RGB with alpha flattened on white."""

import warnings
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

FLATTEN_BACKGROUND = (255, 255, 255)
FORMATS = ("JPEG", "PNG", "WEBP", "BMP")
NOT_READABLE = "not a readable JPEG, PNG, WebP or BMP image"


class UnusableImage(Exception):
    """This file cannot be trained on; the message says why (the file is skipped)."""


def image_size(path: Path, max_pixels: int) -> tuple[int, int]:
    """(width, height) after EXIF orientation, decoding the whole image once to prove it."""
    image = load_rgb(path, max_pixels)
    return image.size


# Our own limit (checked right after the header is read) replaces Pillow's global one.
Image.MAX_IMAGE_PIXELS = None


def load_rgb(path: Path, max_pixels: int) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow's chatter about odd metadata
            with Image.open(path, formats=FORMATS) as opened:
                width, height = opened.size
                if width * height > max_pixels:
                    raise UnusableImage(
                        f"{width}x{height} is more than {max_pixels} pixels "
                        "(dataset-limits maxImagePixels)"
                    )
                opened.load()
                image = ImageOps.exif_transpose(opened)
    except UnusableImage:
        raise
    except UnidentifiedImageError:
        raise UnusableImage(NOT_READABLE) from None
    except Exception as error:  # a decoder's any failure on hostile bytes costs the file only
        raise UnusableImage(f"damaged image: {error or type(error).__name__}") from None
    return _to_rgb(image)


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, FLATTEN_BACKGROUND)
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return image.convert("RGB")
