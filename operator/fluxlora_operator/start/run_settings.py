"""What a run's spec and the operator's settings resolve to: the spec wins where the operator's
allow-lists let it, the operator's defaults fill in."""

from dataclasses import dataclass, field
from typing import Any

from fluxlora_api.outputs import run_folder
from fluxlora_api.spec import LoRATrainingJobSpec
from fluxlora_operator.settings import OperatorSettings
from fluxlora_operator.start.custom_resource import InvalidSpec, TrainingJobRef
from fluxlora_operator.start.mounts import OUTPUT_MOUNT_PATH


@dataclass(frozen=True)
class Placement:
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: list[dict[str, Any]] = field(default_factory=list)
    priority_class_name: str | None = None
    runtime_class_name: str | None = None


def resolve_placement(spec: LoRATrainingJobSpec, settings: OperatorSettings) -> Placement:
    """Where the trainer pod may run: the operator's choices, plus what its allow-lists let a
    spec add. A user who may only create LoRATrainingJobs must not gain scheduling power
    (system priority, tolerating every taint, leaving the GPU pool)."""
    for key, value in (spec.node_selector or {}).items():
        pinned = settings.node_selector.get(key)
        if pinned is not None and pinned != value:
            raise InvalidSpec(
                f"spec.nodeSelector.{key}: the operator pins it to {pinned!r}; leave it out"
            )
    tolerations: list[dict[str, Any]] = [t.to_wire() for t in settings.tolerations]
    for index, toleration in enumerate(spec.tolerations or []):
        if toleration.key not in settings.allowed_toleration_keys:
            raise InvalidSpec(
                f"spec.tolerations[{index}].key: {toleration.key!r} is not allowed "
                f"(the operator allows {_listed(settings.allowed_toleration_keys)}; "
                "--allowed-toleration-keys)"
            )
        if toleration.to_wire() not in tolerations:
            tolerations.append(toleration.to_wire())
    priority = spec.priority_class_name
    allowed = {
        name for name in (settings.priority_class_name, *settings.allowed_priority_classes) if name
    }
    if priority and priority not in allowed:
        raise InvalidSpec(
            f"spec.priorityClassName: {priority!r} is not allowed (the operator allows "
            f"{_listed(sorted(allowed))}; --allowed-priority-classes)"
        )
    return Placement(
        node_selector={**(spec.node_selector or {}), **settings.node_selector},
        tolerations=tolerations,
        priority_class_name=priority or settings.priority_class_name,
        runtime_class_name=settings.runtime_class_name,
    )


def _listed(names: list[str]) -> str:
    return ", ".join(names) if names else "none"


def resolve_gpus(spec: LoRATrainingJobSpec, settings: OperatorSettings) -> int:
    return spec.gpus or settings.gpus


def resolve_queue(spec: LoRATrainingJobSpec, settings: OperatorSettings) -> str | None:
    return spec.queue_name or settings.queue_name


def resolve_output_folder(
    spec: LoRATrainingJobSpec, settings: OperatorSettings, ref: TrainingJobRef
) -> str:
    """The per-resource destination <prefix>/<namespace>/<name>-<uid>.

    The uid keeps a re-created resource of the same name from resuming the old one's checkpoints.
    """
    prefix = spec.output or settings.default_output
    if not prefix and settings.output_pvc:
        prefix = OUTPUT_MOUNT_PATH
    if not prefix:
        raise InvalidSpec(
            "spec.output: no output destination: set spec.output (s3://bucket/prefix or a mounted "
            "path) or configure the operator's default output (--default-output / --output-pvc)"
        )
    return run_folder(prefix, ref.namespace, ref.name, ref.uid)
