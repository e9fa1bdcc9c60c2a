"""The hosted API's caption rule, exactly:

- an image with a caption (a .txt of the same name) uses it unchanged;
- an image without one is captioned with the trigger word;
- no trigger word (null or "") means none anywhere: uncaptioned images train on an empty caption;
- a "[trigger]" placeholder inside a caption is replaced by the trigger word (or dropped).
"""

import re
from pathlib import Path

TRIGGER_PLACEHOLDER = "[trigger]"


class UnusableCaption(Exception):
    """This caption file is not used; the message says why (its image is trained as if it had
    none)."""


def read_caption(path: Path, max_bytes: int) -> str | None:
    """The caption in a .txt file: UTF-8 (a BOM and CRLF line ends tolerated), trimmed; an
    empty file counts as no caption. A file over `max_bytes` is never read whole."""
    with path.open("rb") as file:
        raw = file.read(max_bytes + 1)
    if len(raw) > max_bytes:
        raise UnusableCaption(
            f"larger than the caption limit of {max_bytes} bytes (dataset-limits maxCaptionBytes); "
            "its image is trained as if it had no caption"
        )
    text = raw.decode("utf-8-sig")
    text = text.replace("\r\n", "\n").replace("\r", "\n").strip()
    return text or None


def apply_caption_rule(caption: str | None, trigger_word: str | None) -> str:
    if caption is None:
        return trigger_word or ""
    if TRIGGER_PLACEHOLDER not in caption:
        return caption
    replaced = caption.replace(TRIGGER_PLACEHOLDER, trigger_word or "")
    # Without a trigger word the placeholder leaves a gap: close it.
    return re.sub(r"[ \t]{2,}", " ", replaced).strip() if not trigger_word else replaced
