"""Safe extraction of the dataset zip: only images and captions are written, never outside the
work directory (zip-slip), never symlinks, and never more than the limits allow (zip bombs:
entry count and total size are checked against the headers and again while writing, since
headers can lie)."""

import shutil
import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from fluxlora_api.limits import DatasetLimits
from fluxlora_trainer.errors import BadInput

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp"})
CAPTION_SUFFIX = ".txt"
CHUNK_BYTES = 1024 * 1024


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


def _why_ignored(info: zipfile.ZipInfo) -> str | None:
    name = info.filename
    path = PurePosixPath(name.replace("\\", "/"))
    parts = path.parts
    if stat.S_ISLNK(info.external_attr >> 16):
        return "symbolic link"
    if name.startswith(("/", "\\")) or (parts and ":" in parts[0]) or ".." in parts:
        return "path escapes the dataset folder"
    if "__MACOSX" in parts:
        return "macOS metadata"
    if any(part.startswith(".") for part in parts):
        return "hidden file"
    suffix = path.suffix.lower()
    if suffix not in IMAGE_SUFFIXES and suffix != CAPTION_SUFFIX:
        return "not an image (jpg, jpeg, png, webp, bmp) or caption (.txt)"
    return None


def extract_dataset(archive: Path, root: Path, limits: DatasetLimits, label: str) -> Extracted:
    """Extract the images and captions of `archive` under `root`. `label` names the archive in
    messages (the URL the user gave, without secrets)."""
    if not zipfile.is_zipfile(archive):
        raise BadInput(f"data: {label} is not a zip file")
    shutil.rmtree(root, ignore_errors=True)  # a reused workdir must not mix in old files
    root.mkdir(parents=True)
    files: list[Path] = []
    ignored: list[Ignored] = []
    try:
        with zipfile.ZipFile(archive) as bundle:
            infos = [info for info in bundle.infolist() if not info.is_dir()]
            if len(infos) > limits.max_files:
                raise BadInput(
                    f"data: {label} holds {len(infos)} files, more than the limit of "
                    f"{limits.max_files} (FLUXLORA_MAX_FILES)"
                )
            declared = sum(info.file_size for info in infos)
            if declared > limits.max_uncompressed_bytes:
                raise _too_big(label, declared, limits)
            written = 0
            for info in infos:
                reason = _why_ignored(info)
                if reason:
                    ignored.append(Ignored(info.filename, reason))
                    continue
                relative = Path(*PurePosixPath(info.filename.replace("\\", "/")).parts)
                target = (root / relative).resolve()
                if not target.is_relative_to(root.resolve()):
                    ignored.append(Ignored(info.filename, "path escapes the dataset folder"))
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                try:
                    written = _copy(bundle, info, target, written, label, limits)
                except (zipfile.BadZipFile, OSError, EOFError) as error:
                    # One damaged entry costs that file, not the dataset.
                    target.unlink(missing_ok=True)
                    ignored.append(Ignored(info.filename, f"damaged in the zip: {error}"))
                    continue
                files.append(relative)
    except zipfile.BadZipFile as error:
        raise BadInput(f"data: {label} is a damaged zip file: {error}") from None
    return Extracted(root=root, files=files, ignored=ignored)


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
        f"(at least {size}; FLUXLORA_MAX_UNCOMPRESSED_BYTES)"
    )
