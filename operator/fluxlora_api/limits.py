"""Limits that keep a hostile or broken dataset from exhausting the trainer pod or reaching
what it must not: download size, time and addresses, zip entries and their total size, image
pixels, caption size. Defaults fit real datasets (hundreds of photos). The operator passes its
dataset-limits setting to the trainer as FLUXLORA_DATASET_LIMITS (a JSON object, to_env()); the
trainer reads it with from_env() (pydantic-settings)."""

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel
from pydantic_settings import BaseSettings, SettingsConfigDict

from fluxlora_api.setting_values import network_list

ENV_PREFIX = "FLUXLORA_"
DATASET_LIMITS_ENV = f"{ENV_PREFIX}DATASET_LIMITS"
GIB = 1024**3


class DatasetLimits(BaseModel):
    # camelCase too, as the operator's settings (chart values) spell them.
    model_config = ConfigDict(
        frozen=True,
        use_attribute_docstrings=True,
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
    )

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
    download_deadline_seconds: float = Field(1800.0, gt=0)
    """Longest a whole download may take, retries and redirects included, so a server that
    trickles bytes cannot hold the GPU."""
    allowed_networks: list[str] = Field(default_factory=list)
    """Non-public networks (CIDRs, e.g. 10.0.0.0/8) that `data` URLs may be downloaded from;
    public addresses always may, link-local and cloud metadata addresses never. A list, or one
    string of CIDRs separated by commas."""
    max_caption_bytes: int = Field(64 * 1024, gt=0)
    """Largest caption .txt that is read; larger ones are skipped."""
    max_total_pixels: int = Field(4_000_000_000, gt=0)
    """Most decoded pixels (width x height) of all the dataset's images together."""

    @field_validator("allowed_networks", mode="before")
    @classmethod
    def _check_networks(cls, value: object) -> list[str]:
        # A list, or one string: a JSON list, or CIDRs separated by commas.
        try:
            return network_list(value)
        except ValueError as error:
            raise ValueError(f"allowed_networks: {error}") from None

    @classmethod
    def from_env(cls) -> "DatasetLimits":
        """The limits the operator gave this trainer (the defaults where it gave none)."""
        return _TrainerEnvironment().dataset_limits

    def to_env(self) -> dict[str, str]:
        """The trainer's environment for these limits: what from_env() reads back."""
        return {DATASET_LIMITS_ENV: self.model_dump_json(by_alias=True)}


class _TrainerEnvironment(BaseSettings):
    """What the trainer reads of the operator's settings from its environment."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_ignore_empty=True)

    dataset_limits: DatasetLimits = Field(default_factory=DatasetLimits)
