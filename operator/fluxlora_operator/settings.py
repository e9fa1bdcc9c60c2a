"""Operator configuration (pydantic-settings): every setting is a flag (--trainer-image) and an
environment variable (FLUXLORA_TRAINER_IMAGE); a flag wins over the environment, which wins over
the default. Lists are comma-separated or JSON, maps k=v,k=v or JSON, objects JSON."""

import json
import sys
from collections.abc import Sequence
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, Field
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from fluxlora_api.contract import (
    PROGRESS_SECONDS_DEFAULT,
    PROGRESS_SECONDS_MAX,
    PROGRESS_SECONDS_MIN,
)
from fluxlora_api.limits import DatasetLimits
from fluxlora_api.setting_values import comma_list, network_list, pair_map
from fluxlora_api.spec import Toleration
from fluxlora_operator.command_settings import flag, load_command_settings

ENV_PREFIX = "FLUXLORA_"
OPERATOR_VERSION = "0.1.0"
PROGRAM = "fluxlora-operator"


# NoDecode: the string reaches the validator as given (pydantic-settings would want JSON).
CommaList = Annotated[list[str], NoDecode, BeforeValidator(comma_list)]
PairMap = Annotated[dict[str, str], NoDecode, BeforeValidator(pair_map)]
NetworkList = Annotated[list[str], NoDecode, BeforeValidator(network_list)]


class OperatorSettings(BaseSettings):
    """Run the LoRATrainingJob operator. Every flag is also an environment variable:
    FLUXLORA_<FLAG_IN_UPPER_SNAKE_CASE>."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_ignore_empty=True,  # an empty variable is unset: the default applies
        cli_prog_name=PROGRAM,
        cli_kebab_case=True,
        cli_parse_none_str="",  # an empty flag is unset too
        cli_hide_none_type=True,
        extra="forbid",
        use_attribute_docstrings=True,
        frozen=True,
    )

    namespaces: CommaList = Field(default_factory=list)
    """Namespaces to watch (comma-separated names, not patterns); empty watches all namespaces."""
    trainer_image: str = f"flux-lora-trainer:{OPERATOR_VERSION}"
    """Container image of the trainer."""
    trainer_image_pull_policy: str = "IfNotPresent"
    """imagePullPolicy of the trainer container."""
    image_pull_secrets: CommaList = Field(default_factory=list)
    """Secrets (in the training namespace) used to pull the trainer image."""
    gpu_resource: str = "nvidia.com/gpu"
    """Extended resource name of a GPU; the trainer requests spec.gpus of it."""
    gpus: int = Field(1, ge=1, le=8)
    """GPUs per trainer pod when spec.gpus is unset."""
    cpu_request: str = "4"
    """CPU request of the trainer container; torch's CPU threads (OMP_NUM_THREADS) follow it."""
    memory_request: str = "32Gi"
    """Memory request of the trainer container."""
    memory_limit: str = "96Gi"
    """Memory limit of the trainer container."""
    shm_size: str = "16Gi"
    """Size of the in-memory /dev/shm volume (data-loader workers share tensors through it)."""
    work_volume_size: str | None = None
    """sizeLimit of the /scratch volume (downloaded dataset, caches); unset is unlimited."""
    ephemeral_storage_limit: str | None = None
    """ephemeral-storage limit of the trainer container; unset: sized from dataset-limits (the
    download and what it unpacks to) plus room for caches, outputs and, without a model cache,
    the base model."""
    dataset_limits: DatasetLimits = Field(default_factory=DatasetLimits)
    """What a dataset may cost the trainer (JSON object): maxDownloadBytes, maxUncompressedBytes,
    maxFiles, maxImagePixels, maxTotalPixels, maxCaptionBytes, downloadTimeoutSeconds,
    downloadAttempts, downloadDeadlineSeconds, and allowedNetworks: the non-public networks
    (CIDRs) `data` may be downloaded from (public addresses always; link-local and cloud
    metadata never). Unset keys keep their defaults."""
    node_selector: PairMap = Field(default_factory=dict)
    """Node selector of trainer pods (JSON object or k=v,k=v), pinned: a spec may add keys but
    not change these."""
    tolerations: list[Toleration] = Field(default_factory=list)
    """Default tolerations of trainer pods (JSON list); the spec's are added."""
    allowed_toleration_keys: CommaList = Field(default_factory=list)
    """Taint keys a spec's tolerations may name; empty: a spec may add no tolerations."""
    priority_class_name: str | None = None
    """Default PriorityClass of trainer pods."""
    allowed_priority_classes: CommaList = Field(default_factory=list)
    """PriorityClasses a spec may choose besides the default; empty: only the default."""
    runtime_class_name: str | None = None
    """RuntimeClass of trainer pods (for example nvidia)."""
    queue_name: str | None = None
    """Default Kueue LocalQueue; spec.queueName wins. Unset: Jobs start at once."""
    default_output: str | None = None
    """Default output prefix (s3://bucket/prefix or a path on output-pvc); spec.output wins."""
    output_secret: str | None = None
    """Secret in the training namespace whose keys (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, ...)
    become the trainer's environment, for S3 output and s3:// data."""
    s3_endpoint: str | None = None
    """S3 endpoint URL for MinIO and other S3-compatible stores (AWS_ENDPOINT_URL)."""
    output_pvc: str | None = None
    """PersistentVolumeClaim mounted at /output in trainer pods, for file-system output."""
    model_cache_pvc: str | None = None
    """PersistentVolumeClaim with the Hugging Face cache, mounted at /models (HF_HOME)."""
    hf_token_secret: str | None = None
    """Secret with key `token`: the Hugging Face token for gated base models (HF_TOKEN)."""
    run_as_user: int = 1000
    """UID (and GID, fsGroup) of the trainer container; never root."""
    job_ttl_seconds: int | None = None
    """ttlSecondsAfterFinished of trainer Jobs; unset keeps them (their pods hold the logs). Keep
    it well above any operator downtime: a Job deleted before the operator saw it end runs again."""
    webhook_allowed_networks: NetworkList = Field(default_factory=list)
    """Non-public networks (CIDRs) a spec.webhook may be sent to; public addresses always may,
    link-local and cloud metadata addresses never."""
    webhook_retry_seconds: float = Field(3600.0, gt=0)
    """How long a webhook the receiver does not take is retried (5 s, then doubling up to 5
    min apart) before it is recorded as failed."""
    ttl_seconds_after_finished: int | None = Field(None, ge=0)
    """Delete finished LoRATrainingJobs that many seconds after they completed or failed (their
    outputs stay in storage); spec.ttlSecondsAfterFinished wins. Unset: kept until deleted."""
    trainer_grace_seconds: int = Field(120, ge=1)
    """terminationGracePeriodSeconds of trainer pods: after a SIGTERM (eviction, preemption,
    deletion) the trainer finishes its step and uploads a checkpoint of it, so the retry loses
    no step; size it for one step plus the upload of a checkpoint (LoRA and optimizer state)."""
    image_pull_grace_seconds: int = 300
    """How long a trainer pod may fail to pull its image or start before the resource fails."""
    resync_seconds: float = 30.0
    """How often unfinished resources are re-checked even without events."""
    metrics_port: int = 8080
    """Port of the Prometheus /metrics endpoint; 0 disables it."""
    health_port: int = 8081
    """Port of the /healthz liveness endpoint; 0 disables it."""
    progress_port: int = 8082
    """Port of the endpoint trainer pods report progress to; 0 disables it."""
    progress_url: str | None = None
    """URL trainer pods report progress to (this operator's Service and progress-port, e.g.
    http://flux-lora-operator.flux-lora-system.svc:8082); unset, progress is only logged."""
    progress_seconds: float = Field(
        PROGRESS_SECONDS_DEFAULT, ge=PROGRESS_SECONDS_MIN, le=PROGRESS_SECONDS_MAX
    )
    """Seconds between a trainer's progress reports (status.progress): shorter shows each run's
    step sooner, longer writes the resources' status less often."""
    peering: str | None = None
    """kopf peering object name, for a standby replica; unset runs standalone."""
    peering_priority: int | None = Field(None, ge=1)
    """kopf peering priority of this replica (the highest live one acts); unset: random, so
    that of several replicas exactly one acts."""
    peering_lifetime_seconds: int = Field(20, ge=10, le=600)
    """How long a replica's peering record lasts without its keep-alive: a replica that dies
    without a word (SIGKILL, a lost node) hands over to a standby within this."""
    log_level: str = "INFO"
    """Log level: DEBUG, INFO, WARNING or ERROR."""

    @property
    def all_namespaces(self) -> bool:
        return not self.namespaces


def load_settings(argv: Sequence[str] | None = None) -> OperatorSettings:
    """Settings from flags (`argv`, default: the command line) over the environment over the
    defaults; a bad value stops the operator with a message naming its flag or variable."""
    return load_command_settings(OperatorSettings, sys.argv[1:] if argv is None else argv, PROGRAM)


def render_settings_doc() -> str:
    """docs/operator.md: every setting with its flag, variable and default (`make generate`)."""
    lines = [
        "<!-- Generated by `make generate` from operator/fluxlora_operator/settings.py. -->",
        "# Operator settings",
        "",
        "`fluxlora-operator` reads each setting from its flag, else from its environment variable,",
        "else uses the default. Lists are comma-separated or JSON; maps are `k=v,k=v` or JSON.",
        "",
        "| flag | environment variable | default | meaning |",
        "|---|---|---|---|",
    ]
    for name, field in OperatorSettings.model_fields.items():
        default = field.get_default(call_default_factory=True)
        if isinstance(default, BaseModel):
            default = json.dumps(default.model_dump(mode="json", by_alias=True))
        shown = "" if default in (None, [], {}) else f"`{default}`"
        description = " ".join((field.description or "").split()).replace("|", "\\|")
        lines.append(f"| `{flag(name)}` | `{ENV_PREFIX}{name.upper()}` | {shown} | {description} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(render_settings_doc(), end="")
