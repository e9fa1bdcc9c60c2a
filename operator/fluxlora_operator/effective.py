"""What the spec and the operator's defaults make effective: the spec wins, defaults fill in."""

from dataclasses import dataclass, field
from typing import Any

from fluxlora_api.outputs import run_folder
from fluxlora_api.spec import LoRATrainingJobSpec
from fluxlora_operator.settings import OperatorSettings
from fluxlora_operator.training_job import InvalidSpec, TrainingJobRef

OUTPUT_MOUNT_PATH = "/output"
MODEL_CACHE_MOUNT_PATH = "/models"


@dataclass(frozen=True)
class Placement:
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: list[dict[str, Any]] = field(default_factory=list)
    priority_class_name: str | None = None
    runtime_class_name: str | None = None


def effective_placement(spec: LoRATrainingJobSpec, settings: OperatorSettings) -> Placement:
    tolerations: list[dict[str, Any]] = []
    for toleration in [*settings.tolerations, *(spec.tolerations or [])]:
        wire = toleration.to_wire()
        if wire not in tolerations:
            tolerations.append(wire)
    return Placement(
        node_selector={**settings.node_selector, **(spec.node_selector or {})},
        tolerations=tolerations,
        priority_class_name=spec.priority_class_name or settings.priority_class_name,
        runtime_class_name=settings.runtime_class_name,
    )


def effective_gpus(spec: LoRATrainingJobSpec, settings: OperatorSettings) -> int:
    return spec.gpus or settings.gpus


def effective_queue(spec: LoRATrainingJobSpec, settings: OperatorSettings) -> str | None:
    return spec.queue_name or settings.queue_name


def effective_output(
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
