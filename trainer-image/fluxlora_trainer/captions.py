"""The hosted API's caption rule, exactly:

- an image with a caption (a .txt of the same name) uses it unchanged;
- an image without one is captioned with the trigger word;
- no trigger word (null or "") means none anywhere: uncaptioned images train on an empty caption;
- a "[trigger]" placeholder inside a caption is replaced by the trigger word (or dropped).
"""

import re
from pathlib import Path

TRIGGER_PLACEHOLDER = "[trigger]"


def read_caption(path: Path) -> str | None:
    """The caption in a .txt file: UTF-8 (a BOM and CRLF line ends tolerated), trimmed; an
    empty file counts as no caption."""
    text = path.read_bytes().decode("utf-8-sig")
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
