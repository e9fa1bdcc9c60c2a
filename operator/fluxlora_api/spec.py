"""What a user asks for: the hosted trainer's parameters plus the Kubernetes placement knobs.

The first five fields are the hosted API's request (same names in camelCase, same defaults and
ranges); a spec holding only `data` trains exactly what the hosted API trains for a request
holding only `data`. Every other field is optional and its default keeps that behaviour.
"""

import ipaddress
from typing import Annotated, Literal, Self
from urllib.parse import urlsplit

from pydantic import Field, StringConstraints, field_validator, model_validator

from fluxlora_api.base import ApiModel

# The hosted API's request fields, in its own (snake_case) spelling: the first five fields below.
HOSTED_REQUEST_FIELDS = ("data", "trigger_word", "steps", "learning_rate", "lora_rank")
DEFAULT_TRIGGER_WORD = "p3r5on"
DEFAULT_BASE_MODEL = "black-forest-labs/FLUX.1-dev"

DATA_URL_PATTERN = r"^(https?|s3)://\S+$"
WEBHOOK_URL_PATTERN = r"^https?://[^/\s?#]+\S*$"
MAX_WEBHOOK_CHARS = 2048
WEBHOOK_LINK_LOCAL = "webhook: link-local and cloud metadata addresses are never called"
# A webhook URL whose host is a literal link-local address (169.254/16, fe80::/10).
WEBHOOK_LINK_LOCAL_PATTERN = (  # the CEL string's escapes doubled
    r"(?i)^https?://([^/?#@]*@)?"
    r"(169\\.254\\.[0-9]{1,3}\\.[0-9]{1,3}|\\[fe[89ab][0-9a-f]:[^\\]]*\\])([:/?#]|$)"
)
OUTPUT_PATTERN = r"^(s3://[^/\s]+(/\S*)?|/\S*)$"
BASE_MODEL_PATTERN = r"^(/\S*|[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+)$"
DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_SUBDOMAIN_PATTERN = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"

Optimizer = Literal["adamw", "adamw8bit", "prodigy"]
LoraTarget = Literal["attention", "context", "feed-forward", "single-blocks", "modulation"]
# Every linear layer of the double and single blocks but their modulation, as ai-toolkit and
# kohya's sd-scripts train by default.
DEFAULT_LORA_TARGETS: tuple[LoraTarget, ...] = (
    "attention",
    "context",
    "feed-forward",
    "single-blocks",
)
LoraInit = Literal["kaiming", "gaussian"]
DEFAULT_LEARNING_RATE = 0.0004  # the hosted API's, tuned for AdamW over kaiming-initialised LoRAs
PRODIGY_LEARNING_RATE = 1.0  # prodigy finds its own step size; this scales it
BaseWeights = Literal["bf16", "int8", "nf4"]
SamplePrompt = Annotated[str, StringConstraints(min_length=1, max_length=1000)]
LabelValue = Annotated[str, StringConstraints(max_length=63)]
MIN_SAVE_EVERY_STEPS = 50  # at most 80 snapshots of a 4,000-step run
SAMPLES_NEED_PROMPTS = "sampleEverySteps: needs samplePrompts, the prompts to render"


SYSTEM_PRIORITY_PREFIX = "system-"
SYSTEM_PRIORITY = "priorityClassName: system-* classes are for cluster components, not training"


class Toleration(ApiModel):
    """A Kubernetes toleration for the trainer pod (core/v1 Toleration)."""

    key: str = Field(min_length=1, max_length=316)
    """Taint key the toleration applies to (required: a toleration of every taint is never
    given to a trainer); the operator allows only its allowed-toleration-keys."""
    operator: Literal["Exists", "Equal"] | None = None
    """Exists or Equal (the Kubernetes default is Equal)."""
    value: str | None = Field(None, max_length=63)
    """Taint value to match when operator is Equal."""
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    """Taint effect to match; empty matches all effects."""
    toleration_seconds: int | None = Field(None, ge=0)
    """For NoExecute: how long the pod stays bound after the taint appears."""


class TrainingParameters(ApiModel):
    """The training recipe: what the trainer needs, shared by the spec and the trainer config."""

    model_config = ApiModel.model_config | {
        "json_schema_extra": {
            "x-kubernetes-validations": [
                {
                    "rule": "!has(self.sampleEverySteps) || "
                    "(has(self.samplePrompts) && size(self.samplePrompts) > 0)",
                    "message": SAMPLES_NEED_PROMPTS,
                }
            ]
        }
    }

    data: str = Field(pattern=DATA_URL_PATTERN, max_length=4096)
    """URL of a .zip of images (jpg, png, webp, bmp), each with an optional caption in a .txt
    file of the same name. Schemes: https, http, s3 (s3://bucket/key). Use at least 4 images;
    more is better."""
    trigger_word: str | None = Field(DEFAULT_TRIGGER_WORD, max_length=200)
    """Word that stands for the subject or style. Images without a caption are captioned with it;
    images with a caption use their caption unchanged (a "[trigger]" placeholder in a caption is
    replaced by it). "" means no trigger word at all; write it so in manifests: `kubectl apply`
    drops a null field before sending, and the default then fills it in. null also means none
    from clients that send it (create, server-side apply, the hosted API)."""
    steps: int = Field(1000, ge=500, le=4000)
    """Number of optimisation steps to train the LoRA for."""
    learning_rate: float | None = Field(None, gt=0, le=1)
    """Learning rate of the LoRA weights (constant after a short warmup); unset means 0.0004
    (the hosted API's default), or 1.0 with the prodigy optimizer, whose learning rate scales
    the step size it finds."""
    lora_rank: int = Field(16, ge=1, le=64)
    """Rank of the LoRA matrices: higher learns more detail and gives a larger file."""
    lora_alpha: float | None = Field(None, gt=0, le=1024)
    """LoRA scaling alpha; unset means equal to loraRank (a scale of 1)."""
    lora_targets: list[LoraTarget] = Field(
        default_factory=lambda: list(DEFAULT_LORA_TARGETS), min_length=1, max_length=5
    )
    """Transformer layers that get LoRA matrices: attention (q/k/v/out of every block), context
    (the text-stream projections), feed-forward, single-blocks (their MLP and output
    projections), modulation (every block's adaptive-norm projection). The default, the first
    four, is every linear layer of the blocks but the modulation; fewer layers (for example
    attention and context) learn less and make a smaller file."""
    lora_init: LoraInit = "kaiming"
    """Initial LoRA weights: kaiming (A kaiming-uniform, B zero: peft's default, as ai-toolkit
    and kohya's sd-scripts start) or gaussian (A drawn with standard deviation 1/rank, which
    moves the output several times more per step at the same learning rate)."""
    resolution: int = Field(1024, ge=256, le=2048, multiple_of=64)
    """Training resolution in pixels of the longer side; images are bucketed by aspect ratio."""
    multi_resolution: bool = False
    """Also train at the standard resolutions below `resolution` (512 and 768 under 1024), each
    image cached at each, as Replicate's trainer does by default: the LoRA holds up at every
    size it is used at."""
    batch_size: int = Field(1, ge=1, le=32)
    """Images per optimisation step on each GPU: with gpus N, a step trains on batchSize x N
    images."""
    seed: int | None = Field(None, ge=0, le=2**32 - 1)
    """Random seed for a reproducible run; unset means the trainer picks one and records it."""
    caption_dropout: float = Field(0.05, ge=0, le=1)
    """Probability of training a step with an empty caption (helps the LoRA follow prompts)."""
    optimizer: Optimizer = "adamw"
    """Optimizer: adamw, adamw8bit (bitsandbytes) or prodigy (learning-rate free)."""
    base_model: str = Field(DEFAULT_BASE_MODEL, pattern=BASE_MODEL_PATTERN, max_length=1024)
    """Base model: a Hugging Face repo id in diffusers layout or an absolute path to one inside the
    trainer pod (for example a mounted model cache)."""
    base_weights: BaseWeights = "bf16"
    """Precision of the frozen transformer weights: bf16 (as released), or int8 / nf4
    (bitsandbytes) to fit 24 GB GPUs at some cost in quality and speed."""
    gradient_checkpointing: bool | None = None
    """Recompute activations in the backward pass: much less GPU memory for about 45% more time
    per step (the forward pass runs twice). Unset: the trainer plans from the GPU's free memory
    and recomputes as few blocks as fit (none when all fit: the fastest); true: every block;
    false: none. A run that cannot fit even recomputing every block fails before loading."""
    checkpoint_every_steps: int = Field(250, ge=0, le=4000)
    """Save a resumable checkpoint every this many steps, so a preempted or evicted pod resumes
    instead of starting over; 0 disables checkpoints."""
    ema_decay: float | None = Field(None, gt=0, lt=1)
    """Keep an exponential moving average of the LoRA weights with this decay (ai-toolkit and
    Replicate's trainer use 0.99) and save the average as the LoRA: smoother, less overfit to
    the last steps. Unset: off."""
    save_every_steps: int | None = Field(None, ge=MIN_SAVE_EVERY_STEPS, le=4000)
    """Also save the LoRA every this many steps, in both formats (lora-step-000250.safetensors,
    lora_comfyui-step-000250.safetensors), kept beside the final one so that a step from before
    it overfit can be picked; status.snapshots lists them as they are saved. Unset: only the
    final LoRA (as the hosted API)."""
    sample_every_steps: int | None = Field(None, ge=MIN_SAVE_EVERY_STEPS, le=4000)
    """Also render samplePrompts with the LoRA as it is every this many steps (the same seed per
    prompt at every step, so the images compare), to sample_0-step-000250.png and so on;
    status.snapshots lists them as they are stored. The time it takes is not training time:
    progress.samplingSeconds counts it. Needs samplePrompts."""
    sample_prompts: list[SamplePrompt] | None = Field(None, max_length=8)
    """Prompts rendered with the trained LoRA after training and uploaded as sample images
    (sample_0.png, ...), and every sampleEverySteps while training."""

    @model_validator(mode="after")
    def _samples_have_prompts(self) -> Self:
        # The same rule as the CRD's CEL rule, for specs that bypass the API server.
        if self.sample_every_steps is not None and not self.sample_prompts:
            raise ValueError(SAMPLES_NEED_PROMPTS)
        return self

    @property
    def effective_trigger_word(self) -> str | None:
        """The trigger word in force: None when unset or blank (null and "" both mean none)."""
        word = (self.trigger_word or "").strip()
        return word or None

    @property
    def effective_learning_rate(self) -> float:
        if self.learning_rate is not None:
            return self.learning_rate
        return PRODIGY_LEARNING_RATE if self.optimizer == "prodigy" else DEFAULT_LEARNING_RATE

    @property
    def effective_lora_alpha(self) -> float:
        return self.lora_alpha if self.lora_alpha is not None else float(self.lora_rank)


MUTABLE_SPEC_FIELDS = ("suspend",)


class LoRATrainingJobSpec(TrainingParameters):
    """Desired training run. Immutable once created but for suspend: create a new resource to
    change anything else."""

    output: str | None = Field(None, pattern=OUTPUT_PATTERN, max_length=1024)
    """Destination prefix for the outputs (s3://bucket/prefix or an absolute path on a mounted
    volume), overriding the operator's default. Files land under
    <output>/<namespace>/<name>-<uid>/."""
    gpus: int | None = Field(None, ge=1, le=8)
    """Number of GPUs requested for the trainer pod; unset takes the operator's default (1
    unless configured). The trainer runs a data-parallel rank on each: every step trains on
    batchSize images per GPU, with the gradients averaged over the GPUs."""
    node_selector: dict[str, LabelValue] | None = Field(None, max_length=64)
    """Node labels the trainer pod must match, added to the operator's node selector (whose
    keys the spec cannot change)."""
    tolerations: list[Toleration] | None = Field(None, max_length=32)
    """Tolerations for the trainer pod, added to the operator's defaults; only taint keys the
    operator allows (allowed-toleration-keys)."""
    priority_class_name: str | None = Field(
        None,
        pattern=DNS_SUBDOMAIN_PATTERN,
        max_length=253,
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": f"!self.startsWith('{SYSTEM_PRIORITY_PREFIX}')",
                    "message": SYSTEM_PRIORITY,
                }
            ]
        },
    )
    """PriorityClass of the trainer pod, overriding the operator's default; only those the
    operator allows (allowed-priority-classes), never a system-* class."""
    queue_name: str | None = Field(None, pattern=DNS_LABEL_PATTERN, max_length=63)
    """Kueue LocalQueue to submit the Job to. The Job is created suspended and Kueue starts it;
    the phase stays created while it waits. Overrides the operator's default queue."""
    backoff_limit: int = Field(2, ge=0, le=20)
    """How many failed trainer pods are retried. Preemption and eviction never count; bad input
    (an unusable dataset) is never retried."""
    active_deadline_seconds: int | None = Field(None, ge=60)
    """Wall-clock limit for the whole Job, retries included; the resource fails when it passes."""
    ttl_seconds_after_finished: int | None = Field(None, ge=0, le=365 * 24 * 3600)
    """Delete this resource that many seconds after its run completed or failed (its outputs
    stay in storage), as a Job's ttlSecondsAfterFinished; unset: the operator's default (off
    unless set). A webhook still being delivered is waited for."""
    suspend: bool = False
    """Pause the run: the trainer checkpoints the step it is on and its pod goes, freeing the
    GPU (the Job is removed); false again resumes it from that step. The one field that may
    change after creation (kubectl patch ltj NAME --type=merge -p '{"spec":{"suspend":true}}')."""
    webhook: str | None = Field(
        None,
        pattern=WEBHOOK_URL_PATTERN,
        max_length=MAX_WEBHOOK_CHARS,
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    # A literal link-local address is refused here; a name is checked by the
                    # operator when it connects (it may resolve anywhere).
                    "rule": f"!self.matches('{WEBHOOK_LINK_LOCAL_PATTERN}')",
                    "message": WEBHOOK_LINK_LOCAL,
                }
            ]
        },
    )
    """URL (http or https) the operator POSTs the prediction object to when the run completes or
    fails, signed with the namespace's webhook secret as the hosted platform signs (headers
    webhook-id, webhook-timestamp, webhook-signature: v3,<HMAC-SHA256 hex>); retried until
    delivered, for a bounded time. Link-local addresses are never called; private and loopback
    ones only if the operator allows them. status.webhook records the delivery."""

    @field_validator("webhook")
    @classmethod
    def _not_link_local(cls, value: str | None) -> str | None:
        # The same rule as the CRD's CEL rule, for specs that bypass the API server.
        host = urlsplit(value).hostname if value else None
        try:
            literal = ipaddress.ip_address(host or "")
        except ValueError:
            return value
        if literal.is_link_local:
            raise ValueError(WEBHOOK_LINK_LOCAL)
        return value

    @field_validator("priority_class_name")
    @classmethod
    def _not_a_system_class(cls, value: str | None) -> str | None:
        # The same rule as the CRD's CEL rule, for specs that bypass the API server.
        if value and value.startswith(SYSTEM_PRIORITY_PREFIX):
            raise ValueError(SYSTEM_PRIORITY)
        return value
