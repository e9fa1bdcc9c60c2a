"""Safe extraction of the dataset zip: only images and captions are written, never outside the
work directory (zip-slip), never symlinks, never two entries onto one file, and never more than
the limits allow (zip bombs: entry count and total size are checked against the headers and
again while writing, since headers can lie). The zip is hostile input: whatever is wrong with it
costs the entry (reported with a reason) or ends as BadInput, never as another exception."""

import contextlib
import lzma
import shutil
import stat
import struct
import unicodedata
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from fluxlora_api.limits import DatasetLimits
from fluxlora_trainer.errors import BadInput

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp"})
CAPTION_SUFFIX = ".txt"
CHUNK_BYTES = 1024 * 1024
SUPPORTED_METHODS = frozenset(
    {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA}
)
# Central-directory bytes allowed per permitted file: a 46-byte record and a generous name.
# Python reads the whole directory into memory before we see an entry, so it is checked first.
DIRECTORY_BYTES_PER_FILE = 46 + 1024
MAX_NAME_PART_BYTES = 255  # what Linux file systems take
MAX_NAME_BYTES = 1024
# What reading a damaged or hostile zip can raise, from zipfile or its decompressors.
ZIP_ERRORS = (
    zipfile.BadZipFile,
    zlib.error,
    lzma.LZMAError,
    EOFError,
    OSError,
    ValueError,  # includes UnicodeDecodeError of a name
    struct.error,
    OverflowError,
    NotImplementedError,
    RuntimeError,  # encrypted entries
    MemoryError,
)


@dataclass(frozen=True)
class Ignored:
    """An archive entry that was not extracted, and why."""

    name: str
    reason: str


@dataclass(frozen=True)
class Extracted:
    root: Path
    files: list[Path]  # relative to root, POSIX order of the archive
    ignored: list[Ignored]


def _parts(name: str) -> tuple[str, ...]:
    return PurePosixPath(name.replace("\\", "/")).parts


def _why_ignored(info: zipfile.ZipInfo) -> str | None:
    name = info.filename
    parts = _parts(name)
    if not name.strip("/\\"):
        return "no file name"
    if stat.S_ISLNK(info.external_attr >> 16):
        return "symbolic link"
    if name.startswith(("/", "\\")) or ":" in parts[0] or ".." in parts:
        return "path escapes the dataset folder"
    if "__MACOSX" in parts:
        return "macOS metadata"
    if any(part.startswith(".") for part in parts):
        return "hidden file"
    suffix = PurePosixPath(parts[-1]).suffix.lower()
    if suffix not in IMAGE_SUFFIXES and suffix != CAPTION_SUFFIX:
        return "not an image (jpg, jpeg, png, webp, bmp) or caption (.txt)"
    encoded = [part.encode("utf-8", "surrogatepass") for part in parts]
    if any(len(part) > MAX_NAME_PART_BYTES for part in encoded) or sum(map(len, encoded)) > (
        MAX_NAME_BYTES
    ):
        return "name too long"
    if info.flag_bits & 0x1:
        return "encrypted (password-protected); zip it without a password"
    if info.compress_type not in SUPPORTED_METHODS:
        return f"compressed with an unsupported method ({info.compress_type}); use deflate"
    return None


class _Names:
    """The names written so far as a case-insensitive, Unicode-normalizing file system sees
    them (macOS, Windows, and caption pairing): a second entry onto the same file, a file where
    a folder is, or a folder where a file is, is refused."""

    def __init__(self) -> None:
        self.files: dict[str, str] = {}
        self.folders: set[str] = set()

    @staticmethod
    def _key(parts: tuple[str, ...]) -> str:
        return unicodedata.normalize("NFC", "/".join(parts)).casefold()

    def clash(self, parts: tuple[str, ...]) -> str | None:
        key = self._key(parts)
        if key in self.files:
            return f"same file name as {self.files[key]} (keeping that one)"
        if key in self.folders:
            return "a folder of the same name holds other files"
        for depth in range(1, len(parts)):
            folder = self._key(parts[:depth])
            if folder in self.files:
                return f"its folder has the name of the file {self.files[folder]}"
        return None

    def add(self, parts: tuple[str, ...], name: str) -> None:
        self.files[self._key(parts)] = name
        self.folders.update(self._key(parts[:depth]) for depth in range(1, len(parts)))


def extract_dataset(archive: Path, root: Path, limits: DatasetLimits, label: str) -> Extracted:
    """Extract the images and captions of `archive` under `root`. `label` names the archive in
    messages (the URL the user gave, without secrets)."""
    try:
        is_zip = zipfile.is_zipfile(archive)
    except ZIP_ERRORS:
        is_zip = False
    if not is_zip:
        raise BadInput(f"data: {label} is not a zip file")
    _check_directory_size(archive, label, limits)
    shutil.rmtree(root, ignore_errors=True)  # a reused workdir must not mix in old files
    root.mkdir(parents=True)
    try:
        with zipfile.ZipFile(archive) as bundle:
            return _extract(bundle, root, limits, label)
    except ZIP_ERRORS as error:
        raise BadInput(f"data: {label} is a damaged zip file: {_describe(error)}") from None


def _extract(bundle: zipfile.ZipFile, root: Path, limits: DatasetLimits, label: str) -> Extracted:
    # not info.is_dir(), which fails on an empty name
    infos = [info for info in bundle.infolist() if not info.filename.endswith("/")]
    if len(infos) > limits.max_files:
        raise BadInput(
            f"data: {label} holds {len(infos)} files, more than the limit of "
            f"{limits.max_files} (dataset-limits maxFiles)"
        )
    declared = sum(info.file_size for info in infos)
    if declared > limits.max_uncompressed_bytes:
        raise _too_big(label, declared, limits)
    files: list[Path] = []
    ignored: list[Ignored] = []
    names = _Names()
    written = 0
    resolved_root = root.resolve()
    for info in infos:
        parts = _parts(info.filename)
        reason = _why_ignored(info) or names.clash(parts)
        if reason is None:
            relative = Path(*parts)
            target = (root / relative).resolve()
            if not target.is_relative_to(resolved_root):
                reason = "path escapes the dataset folder"
        if reason is not None:
            ignored.append(Ignored(info.filename, reason))
            continue
        names.add(parts, info.filename)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            written = _copy(bundle, info, target, written, label, limits)
        except ZIP_ERRORS as error:
            # One damaged entry costs that file, not the dataset.
            with contextlib.suppress(OSError):
                target.unlink(missing_ok=True)
            ignored.append(Ignored(info.filename, f"damaged in the zip: {_describe(error)}"))
            continue
        files.append(relative)
    return Extracted(root=root, files=files, ignored=ignored)


def _check_directory_size(archive: Path, label: str, limits: DatasetLimits) -> None:
    """Refuse a central directory too big for max_files before zipfile loads it whole."""
    end_record = getattr(zipfile, "_EndRecData", None)
    if end_record is None:  # a Python without it: zipfile's own reading still bounds nothing
        return
    try:
        with archive.open("rb") as file:
            record = end_record(file)
    except ZIP_ERRORS:
        return  # opening it says what is wrong
    if not record:
        return
    size = record[zipfile._ECD_SIZE]
    if size > limits.max_files * DIRECTORY_BYTES_PER_FILE:
        raise BadInput(
            f"data: {label} has a table of contents of {size} bytes, too big for the limit of "
            f"{limits.max_files} files (dataset-limits maxFiles)"
        )


def _describe(error: BaseException) -> str:
    if isinstance(error, RuntimeError) and "encrypted" in str(error):
        return "encrypted"
    if isinstance(error, MemoryError):
        return "a header too large to read"
    return str(error) or type(error).__name__


def _copy(
    bundle: zipfile.ZipFile,
    info: zipfile.ZipInfo,
    target: Path,
    written: int,
    label: str,
    limits: DatasetLimits,
) -> int:
    with bundle.open(info) as source, target.open("wb") as sink:
        while chunk := source.read(CHUNK_BYTES):
            written += len(chunk)
            if written > limits.max_uncompressed_bytes:
                raise _too_big(label, written, limits)
            sink.write(chunk)
    return written


def _too_big(label: str, size: int, limits: DatasetLimits) -> BadInput:
    return BadInput(
        f"data: {label} unpacks to more than the limit of {limits.max_uncompressed_bytes} bytes "
        f"(at least {size}; dataset-limits maxUncompressedBytes)"
    )
