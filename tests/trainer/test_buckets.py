"""Aspect-ratio buckets (pure functions, table-driven)."""

import pytest

from fluxlora_trainer.buckets import (
    BUCKET_STEP,
    Bucket,
    bucket_for_image,
    buckets_for,
    choose_bucket,
    crop_box,
    training_resolutions,
)


@pytest.mark.parametrize("resolution", [256, 512, 768, 1024])
def test_every_bucket_has_about_the_training_area_in_whole_steps(resolution):
    buckets = buckets_for(resolution)
    assert Bucket(resolution, resolution) in buckets
    for bucket in buckets:
        assert bucket.width % BUCKET_STEP == 0 and bucket.height % BUCKET_STEP == 0
        assert bucket.width * bucket.height <= resolution**2
        assert 1 / 4 <= bucket.aspect <= 4


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        ((1000, 1000), Bucket(1024, 1024)),
        ((3024, 4032), Bucket(896, 1152)),  # a phone portrait, 3:4
        ((4032, 3024), Bucket(1152, 896)),
        ((1920, 1080), Bucket(1344, 768)),  # 16:9
        ((5000, 500), Bucket(2048, 512)),  # extreme panoramas take the widest bucket
    ],
)
def test_images_go_to_the_bucket_of_their_shape(size, expected):
    assert choose_bucket(*size, buckets_for(1024)) == expected


@pytest.mark.parametrize(
    ("size", "bucket"),
    [
        ((3024, 4032), Bucket(896, 1152)),
        ((100, 80), Bucket(256, 256)),
        ((1920, 1080), Bucket(1344, 768)),
    ],
)
def test_the_crop_covers_the_bucket_exactly(size, bucket):
    resized, (left, top, right, bottom) = crop_box(*size, bucket)
    assert (right - left, bottom - top) == (bucket.width, bucket.height)
    assert left >= 0 and top >= 0 and right <= resized[0] and bottom <= resized[1]
    # the image is scaled to cover, never stretched out of proportion
    assert abs(resized[0] / resized[1] - size[0] / size[1]) < 0.01


@pytest.mark.parametrize(
    ("size", "resolution", "expected"),
    [
        ((300, 300), 1024, Bucket(256, 256)),  # a small image trains at its own size
        ((640, 480), 1024, Bucket(576, 448)),  # 512² of buckets: the closest to 4:3
        ((1000, 1000), 1024, Bucket(960, 960)),  # just under the resolution: not upscaled
        ((3024, 4032), 1024, Bucket(896, 1152)),  # large images: the training resolution
        ((3024, 4032), 512, Bucket(448, 576)),
    ],
)
def test_an_image_is_never_upscaled_past_its_own_area(size, resolution, expected):
    bucket = bucket_for_image(*size, resolution)
    assert bucket == expected
    assert bucket.width * bucket.height <= size[0] * size[1]
    assert bucket.width * bucket.height <= resolution**2


@pytest.mark.parametrize("resolution", [256, 512, 1024, 2048])
def test_no_bucket_holds_more_pixels_than_its_image(resolution):
    for width in range(64, 4200, 97):
        for height in range(max(64, width // 4), min(4200, width * 4), 89):
            bucket = bucket_for_image(width, height, resolution)
            assert bucket.width * bucket.height <= width * height, (width, height)


@pytest.mark.parametrize(
    ("resolution", "multi", "expected"),
    [
        (1024, True, [512, 768, 1024]),
        (768, True, [512, 768]),
        (512, True, [512]),
        (1024, False, [1024]),
    ],
)
def test_multi_resolution_adds_the_standard_sizes_below(resolution, multi, expected):
    assert training_resolutions(resolution, multi) == expected
