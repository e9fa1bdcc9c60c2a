"""Names and labels of the objects the operator creates for a LoRATrainingJob."""

from fluxlora_api import resource

PART_OF = "flux-lora-operator"
MANAGED_BY = "flux-lora-operator"
TRAINER_COMPONENT = "trainer"
TRAINER_CONTAINER = "trainer"

LABEL_NAME = "app.kubernetes.io/name"
LABEL_INSTANCE = "app.kubernetes.io/instance"
LABEL_COMPONENT = "app.kubernetes.io/component"
LABEL_PART_OF = "app.kubernetes.io/part-of"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
# The one label that names the owning LoRATrainingJob (its value is the resource's name).
LABEL_TRAINING_JOB = f"{resource.GROUP}/training-job"
KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
# Holds a trainer Job until the operator has recorded how it ended: a Job deleted early (a short
# ttlSecondsAfterFinished while the operator was down) must not look like one that never ran.
RESULT_FINALIZER = f"{resource.GROUP}/result"

# Server-side selector for the Jobs and pods this operator watches.
MANAGED_SELECTOR = f"{LABEL_MANAGED_BY}={MANAGED_BY}"


def job_name(resource_name: str) -> str:
    return f"{resource_name}{resource.JOB_NAME_SUFFIX}"


def child_labels(resource_name: str) -> dict[str, str]:
    return {
        LABEL_NAME: "flux-lora-trainer",
        LABEL_INSTANCE: resource_name,
        LABEL_COMPONENT: TRAINER_COMPONENT,
        LABEL_PART_OF: PART_OF,
        LABEL_MANAGED_BY: MANAGED_BY,
        LABEL_TRAINING_JOB: resource_name,
    }
