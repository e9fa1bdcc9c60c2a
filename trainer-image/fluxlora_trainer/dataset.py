"""From the `data` URL to training samples: download, safe extraction, images paired with their
captions under the hosted caption rule. Unusable files are skipped and reported; the dataset is
bad input only when no usable image remains."""

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath

from fluxlora_api.contract import TrainingConfig
from fluxlora_api.limits import DatasetLimits
from fluxlora_net.urls import display_url
from fluxlora_trainer.archive import CAPTION_SUFFIX, IMAGE_SUFFIXES, Ignored, extract_dataset
from fluxlora_trainer.captions import UnusableCaption, apply_caption_rule, read_caption
from fluxlora_trainer.errors import BadInput
from fluxlora_trainer.fetch import fetch
from fluxlora_trainer.images import UnusableImage, image_size

logger = logging.getLogger(__name__)

RECOMMENDED_IMAGES = 4


@dataclass(frozen=True)
class Sample:
    image: Path  # absolute
    name: str  # as in the zip, for messages
    caption: str
    width: int
    height: int


@dataclass
class Dataset:
    samples: list[Sample] = field(default_factory=list)
    skipped: list[Ignored] = field(default_factory=list)


# Where a ranked run's launcher leaves the dataset it opened, for its ranks (cli.py).
OPENED_DATASET = "dataset.json"


def save_dataset(dataset: Dataset, path: Path) -> None:
    """The opened dataset (its samples' paths and captions, what it skipped) as JSON."""
    samples = [{**asdict(sample), "image": str(sample.image)} for sample in dataset.samples]
    skipped = [asdict(item) for item in dataset.skipped]
    path.write_text(json.dumps({"samples": samples, "skipped": skipped}))


def load_dataset(path: Path) -> Dataset:
    """A dataset `save_dataset` wrote."""
    saved = json.loads(path.read_text())
    return Dataset(
        samples=[Sample(**{**each, "image": Path(each["image"])}) for each in saved["samples"]],
        skipped=[Ignored(**each) for each in saved["skipped"]],
    )


def open_dataset(
    source: str, workdir: Path, trigger_word: str | None, limits: DatasetLimits
) -> Dataset:
    """`source` is the spec's data URL or, for local checks, a path to a zip."""
    local = Path(source)
    if "://" not in source and local.is_file():
        archive, label = local, str(local)
    else:
        archive, label = fetch(source, workdir / "dataset.zip", limits), display_url(source)
    extracted = extract_dataset(archive, workdir / "dataset", limits, label)
    dataset = pair_captions(extracted.root, extracted.files, trigger_word, limits, label)
    dataset.skipped[:0] = extracted.ignored
    if not dataset.samples:
        reasons = "; ".join(f"{item.name}: {item.reason}" for item in dataset.skipped[:5])
        raise BadInput(
            f"data: {label} has no usable image (jpg, jpeg, png, webp or bmp)"
            + (f"; skipped {len(dataset.skipped)} file(s): {reasons}" if reasons else "")
        )
    return dataset


def open_training_dataset(config: TrainingConfig, workdir: Path, limits: DatasetLimits) -> Dataset:
    """A run's dataset, with the files it skips logged."""
    dataset = open_dataset(config.data, workdir, config.effective_trigger_word, limits)
    for item in dataset.skipped:
        logger.warning("skipped %s: %s", item.name, item.reason)
    return dataset


def pair_captions(
    root: Path,
    files: list[Path],
    trigger_word: str | None,
    limits: DatasetLimits,
    label: str = "the dataset",
) -> Dataset:
    """Each image with the caption of the .txt beside it (same name, any letter case)."""
    captions = {_stem_key(path): path for path in files if path.suffix.lower() == CAPTION_SUFFIX}
    read: dict[Path, str | None] = {}
    dataset = Dataset()
    pixels = 0
    for path in sorted(files, key=lambda p: p.as_posix()):
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        name = PurePosixPath(*path.parts).as_posix()
        try:
            width, height = image_size(root / path, limits.max_image_pixels)
        except UnusableImage as error:
            dataset.skipped.append(Ignored(name, str(error)))
            continue
        pixels += width * height
        if pixels > limits.max_total_pixels:
            raise BadInput(
                f"data: the images of {label} hold more than the limit of "
                f"{limits.max_total_pixels} pixels in all (dataset-limits maxTotalPixels); "
                "use fewer or smaller images"
            )
        caption_file = captions.get(_stem_key(path))
        if caption_file is not None and caption_file not in read:
            read[caption_file] = _caption(root, caption_file, limits, dataset)
        caption = read.get(caption_file) if caption_file is not None else None
        dataset.samples.append(
            Sample(root / path, name, apply_caption_rule(caption, trigger_word), width, height)
        )
    return dataset


def _caption(root: Path, path: Path, limits: DatasetLimits, dataset: Dataset) -> str | None:
    try:
        return read_caption(root / path, limits.max_caption_bytes)
    except UnusableCaption as error:
        dataset.skipped.append(Ignored(path.as_posix(), str(error)))
        return None
    except UnicodeDecodeError:
        raise BadInput(f"data: caption {path.as_posix()} is not UTF-8 text") from None


def _stem_key(path: Path) -> str:
    return path.with_suffix("").as_posix().lower()
