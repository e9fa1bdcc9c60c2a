"""Limits that keep a hostile or broken dataset from exhausting the trainer pod: download size,
zip entries and their total size, image pixels. Defaults fit real datasets (hundreds of photos).
The operator sets them (its settings) as the trainer's environment, e.g.
FLUXLORA_MAX_DOWNLOAD_BYTES; the trainer reads them with from_env()."""

import os
from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field

ENV_PREFIX = "FLUXLORA_"
GIB = 1024**3


class DatasetLimits(BaseModel):
    model_config = ConfigDict(frozen=True, use_attribute_docstrings=True)

    max_download_bytes: int = Field(4 * GIB, gt=0)
    """Largest dataset zip that is downloaded."""
    max_uncompressed_bytes: int = Field(8 * GIB, gt=0)
    """Largest total size of the files extracted from the zip."""
    max_files: int = Field(10_000, gt=0)
    """Most entries the zip may hold."""
    max_image_pixels: int = Field(100_000_000, gt=0)
    """Largest image (width x height) that is decoded; larger ones are skipped."""
    download_timeout_seconds: float = Field(60.0, gt=0)
    """Connect/read timeout of one HTTP request."""
    download_attempts: int = Field(5, ge=1)
    """Tries of a download that fails transiently (connection errors, 429, 5xx)."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "DatasetLimits":
        environ = os.environ if environ is None else environ
        values = {
            name: environ[ENV_PREFIX + name.upper()]
            for name in cls.model_fields
            if ENV_PREFIX + name.upper() in environ
        }
        return cls(**values)
