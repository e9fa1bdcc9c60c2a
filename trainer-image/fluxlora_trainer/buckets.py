"""Aspect-ratio buckets: every image trains at about resolution² pixels in the shape closest to
its own, so portraits stay portraits and nothing is squashed; an image smaller than that trains
at its own area, never upscaled past it (ai-toolkit's rule: upscaling adds blur the LoRA would
learn). Pure functions."""

import math
from dataclasses import dataclass

# Both sides are multiples of this: the VAE downsamples 8x and FLUX packs latents 2x2, and 64
# keeps buckets few enough that batches fill up.
BUCKET_STEP = 64
MAX_ASPECT = 4.0
# multiResolution: these too, below the training resolution (Replicate's trainer's default).
MULTI_RESOLUTIONS = (512, 768, 1024)


@dataclass(frozen=True, order=True)
class Bucket:
    width: int
    height: int

    @property
    def aspect(self) -> float:
        return self.width / self.height


def buckets_for(resolution: int) -> list[Bucket]:
    """Shapes of about resolution² pixels, aspect ratios up to 4:1 either way."""
    area = resolution * resolution
    found: set[Bucket] = set()
    width = BUCKET_STEP
    while width <= resolution * 2:
        height = max(BUCKET_STEP, (area // width) // BUCKET_STEP * BUCKET_STEP)
        bucket = Bucket(width, height)
        if 1 / MAX_ASPECT <= bucket.aspect <= MAX_ASPECT and width * height <= area:
            found.add(bucket)
        width += BUCKET_STEP
    return sorted(found)


def choose_bucket(width: int, height: int, buckets: list[Bucket]) -> Bucket:
    """The bucket whose aspect ratio is closest to the image's (in log space)."""
    target = math.log(width / height)
    return min(buckets, key=lambda b: (abs(math.log(b.aspect) - target), -b.width * b.height))


def training_resolutions(resolution: int, multi: bool) -> list[int]:
    """The resolutions a run trains at: `resolution`, and with `multi` the standard ones below."""
    lower = [r for r in MULTI_RESOLUTIONS if r < resolution] if multi else []
    return [*lower, resolution]


def image_resolution(width: int, height: int, resolution: int) -> int:
    """The training resolution for one image: `resolution`, or less when the image has fewer
    than resolution² pixels (whole bucket steps, at least one)."""
    own = math.isqrt(width * height) // BUCKET_STEP * BUCKET_STEP
    return max(BUCKET_STEP, min(resolution, own))


def bucket_for_image(width: int, height: int, resolution: int) -> Bucket:
    """The image's bucket at `resolution`, never larger in area than the image itself."""
    return choose_bucket(width, height, buckets_for(image_resolution(width, height, resolution)))


def crop_box(
    width: int, height: int, bucket: Bucket
) -> tuple[tuple[int, int], tuple[int, int, int, int]]:
    """(resized size, centre crop box) that turns a width x height image into `bucket`: scale
    to cover the bucket, then crop the overflow equally from both sides."""
    scale = max(bucket.width / width, bucket.height / height)
    resized = (max(bucket.width, round(width * scale)), max(bucket.height, round(height * scale)))
    left = (resized[0] - bucket.width) // 2
    top = (resized[1] - bucket.height) // 2
    return resized, (left, top, left + bucket.width, top + bucket.height)
