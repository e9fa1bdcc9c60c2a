"""Checking an uploaded dataset before training (`POST /api/v3/datasets/inspect`): the trainer's
own rules (`fluxlora-trainer dataset inspect`: safe extraction, readable images, captions and
the trigger word), and a small thumbnail of each image, so that a person sees what will be
trained on before a GPU is taken.

The zip is a stranger's: it is opened in a child process with its own memory and CPU limits
and without the gateway's credentials, never in the gateway's own process, so a decompression
bomb or a decoder's crash costs only that check.
"""

import asyncio
import base64
import io
import json
import os
import resource
import sys
import tempfile
from pathlib import Path

from pydantic import Field

from fluxlora_api.limits import DatasetLimits
from fluxlora_api.prediction import HostedModel

INSPECT_PATH = "/api/v3/datasets/inspect"
THUMBNAIL_PIXELS = 160
MAX_THUMBNAILS = 60  # the rest are listed without one
CHECK_MEMORY_BYTES = 1024**3  # within the chart's gateway memory limit, beside the gateway
CHECK_CPU_SECONDS = 60
CHECK_TIMEOUT_SECONDS = 120.0


class InspectRequest(HostedModel):
    """What to check: one of this key's uploads."""

    data: str = Field(min_length=1, max_length=4096)
    """The upload's URL (its `download_url`), as it will be given as `data`."""
    trigger_word: str | None = Field("p3r5on", max_length=200)
    """The trigger word the run will use (images without a caption are captioned with it)."""


class DatasetImage(HostedModel):
    name: str
    """Its path in the zip."""
    caption: str
    """The caption it will be trained with (its .txt, else the trigger word)."""
    width: int
    height: int
    thumbnail: str | None = None
    """A small JPEG of it, as a data: URL (the first ones only)."""


class SkippedFile(HostedModel):
    name: str
    reason: str


class DatasetReport(HostedModel):
    """What the run would train on, by the trainer's rules."""

    images: list[DatasetImage] = Field(default_factory=list)
    skipped: list[SkippedFile] = Field(default_factory=list)
    """Files that will not be trained on, and why."""
    error: str = ""
    """Why the dataset cannot be trained on at all; empty when it can."""
    warning: str = ""
    """Advice, such as too few images."""


def _thumbnail(path: Path, max_pixels: int) -> str:
    from fluxlora_trainer.images import load_rgb  # the trainer's decoder, with its limits

    image = load_rgb(path, max_pixels)
    image.thumbnail((THUMBNAIL_PIXELS, THUMBNAIL_PIXELS))
    encoded = io.BytesIO()
    image.save(encoded, "JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(encoded.getvalue()).decode()


def inspect_zip(
    archive: Path, workdir: Path, trigger_word: str | None, limits: DatasetLimits
) -> DatasetReport:
    """The trainer's reading of `archive` (runs in the child process)."""
    from fluxlora_trainer.dataset import RECOMMENDED_IMAGES, open_dataset
    from fluxlora_trainer.errors import BadInput

    word = (trigger_word or "").strip() or None
    try:
        dataset = open_dataset(str(archive), workdir, word, limits)
    except BadInput as error:
        return DatasetReport(error=str(error))
    images = [
        DatasetImage(
            name=sample.name,
            caption=sample.caption,
            width=sample.width,
            height=sample.height,
            thumbnail=_thumbnail(sample.image, limits.max_image_pixels)
            if index < MAX_THUMBNAILS
            else None,
        )
        for index, sample in enumerate(dataset.samples)
    ]
    skipped = [SkippedFile(name=item.name, reason=item.reason) for item in dataset.skipped]
    warning = ""
    if len(images) < RECOMMENDED_IMAGES:
        warning = (
            f"only {len(images)} usable image(s); at least {RECOMMENDED_IMAGES} are recommended"
        )
    return DatasetReport(images=images, skipped=skipped, warning=warning)


def _child_environment() -> dict[str, str]:
    """What the check needs of the gateway's environment (its dataset limits), and nothing
    else: not the store's credentials, whatever a hostile file might make the child do."""
    kept = {name: value for name, value in os.environ.items() if name.startswith("FLUXLORA_")}
    return {**kept, "PATH": os.environ.get("PATH", "/usr/bin:/bin")}


async def check_dataset(archive: Path, trigger_word: str | None) -> DatasetReport:
    """Run the check of `archive` in a child process with its own limits; its report, or an
    error saying the check itself failed."""
    request = json.dumps(
        {
            "archive": str(archive),
            "trigger_word": trigger_word,
            "memory_bytes": CHECK_MEMORY_BYTES,
            "cpu_seconds": CHECK_CPU_SECONDS,
        }
    )
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", __name__, request,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL, env=_child_environment(),
    )  # fmt: skip
    try:
        out, _ = await asyncio.wait_for(child.communicate(), CHECK_TIMEOUT_SECONDS)
    except TimeoutError:
        child.kill()
        await child.wait()
        return DatasetReport(
            error=f"data: checking it took more than {CHECK_TIMEOUT_SECONDS:.0f} s"
        )
    if child.returncode != 0:
        return DatasetReport(
            error="data: the check stopped (out of its memory or time: an image too large, or "
            "a damaged archive)"
        )
    return DatasetReport.model_validate_json(out)


def _main() -> None:
    request = json.loads(sys.argv[1])
    # Its own limits first, before it touches the stranger's zip (set here, not between fork
    # and exec: the gateway has threads).
    memory, cpu = request["memory_bytes"], request["cpu_seconds"]
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu))
    with tempfile.TemporaryDirectory(prefix="fluxlora-check-") as workdir:
        report = inspect_zip(
            Path(request["archive"]),
            Path(workdir),
            request["trigger_word"],
            DatasetLimits.from_env(),
        )
    sys.stdout.write(report.model_dump_json())


if __name__ == "__main__":
    _main()
