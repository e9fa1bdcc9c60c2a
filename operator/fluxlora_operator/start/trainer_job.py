"""Builds the batch/v1 Job that runs the trainer for one LoRATrainingJob (a pure function)."""

from typing import Any

from fluxlora_api import contract
from fluxlora_api.contract import ExitCode, TrainingConfig
from fluxlora_api.spec import LoRATrainingJobSpec
from fluxlora_operator import naming
from fluxlora_operator.settings import OperatorSettings
from fluxlora_operator.start.custom_resource import TrainingJobRef
from fluxlora_operator.start.mounts import (
    MODEL_CACHE_MOUNT_PATH,
    OUTPUT_MOUNT_PATH,
    WORK_MOUNT_PATH,
)
from fluxlora_operator.start.run_settings import (
    resolve_gpus,
    resolve_output_folder,
    resolve_placement,
    resolve_queue,
)

TRAINER_COMMAND = ["fluxlora-trainer"]
# The dataset, caches and outputs live on the scratch volume, not in the container's /tmp.
TRAINER_ARGS = ["train", "--workdir", f"{WORK_MOUNT_PATH}/run"]

GIB = 1024**3
# Latent and text caches, checkpoints and outputs of a run; FLUX.1-dev in the Hugging Face cache.
WORK_HEADROOM_BYTES = 16 * GIB
BASE_MODEL_BYTES = 40 * GIB
PROGRESS_TOKEN_VOLUME = "progress-token"
PROGRESS_TOKEN_SECONDS = 3600

RESTRICTED_CONTAINER_SECURITY = {
    "allowPrivilegeEscalation": False,
    "privileged": False,
    "readOnlyRootFilesystem": True,
    "runAsNonRoot": True,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


def build_training_config(
    ref: TrainingJobRef, spec: LoRATrainingJobSpec, settings: OperatorSettings
) -> TrainingConfig:
    """The trainer's config: the spec's training parameters plus where the outputs go."""
    own = {"output", "job_id", "gpus"}
    parameters = spec.model_dump(include=set(TrainingConfig.model_fields) - own)
    return TrainingConfig(
        **parameters,
        output=resolve_output_folder(spec, settings, ref),
        job_id=ref.uid,
        gpus=resolve_gpus(spec, settings),
    )


def build_pod_failure_policy() -> dict[str, Any]:
    return {
        "rules": [
            # Preemption, eviction, node drain: retry, and do not count it as a failure.
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
            # The dataset or config is unusable: retrying cannot help.
            {
                "action": "FailJob",
                "onExitCodes": {
                    "containerName": naming.TRAINER_CONTAINER,
                    "operator": "In",
                    "values": [int(ExitCode.BAD_INPUT)],
                },
            },
        ]
    }


def _env(config: TrainingConfig, settings: OperatorSettings) -> list[dict[str, Any]]:
    hf_home = (
        MODEL_CACHE_MOUNT_PATH if settings.model_cache_pvc else f"{WORK_MOUNT_PATH}/huggingface"
    )
    env: list[dict[str, Any]] = [
        {"name": contract.CONFIG_ENV, "value": config.model_dump_json(by_alias=True)},
        {"name": "HOME", "value": WORK_MOUNT_PATH},
        {"name": "HF_HOME", "value": hf_home},
        # torch starts a thread per host core whatever the pod was given: on a 64-core node a
        # 4-CPU trainer would run 64 threads in 4 CPUs' time. The kubelet fills in the request,
        # rounded up to a whole CPU.
        {
            "name": "OMP_NUM_THREADS",
            "valueFrom": {
                "resourceFieldRef": {
                    "containerName": naming.TRAINER_CONTAINER,
                    "resource": "requests.cpu",
                    "divisor": "1",
                }
            },
        },
    ]
    env += [{"name": k, "value": v} for k, v in settings.dataset_limits.to_env().items()]
    if settings.progress_url:
        env.append({"name": contract.PROGRESS_URL_ENV, "value": settings.progress_url})
        env.append({"name": contract.PROGRESS_SECONDS_ENV, "value": str(settings.progress_seconds)})
    if settings.s3_endpoint:
        env.append({"name": "AWS_ENDPOINT_URL", "value": settings.s3_endpoint})
    if settings.hf_token_secret:
        env.append(
            {
                "name": "HF_TOKEN",
                "valueFrom": {"secretKeyRef": {"name": settings.hf_token_secret, "key": "token"}},
            }
        )
    return env


def trainer_ephemeral_storage(settings: OperatorSettings) -> str:
    """The most local disk a trainer may fill before the kubelet evicts it: the dataset as
    downloaded and unpacked, caches and outputs, and the base model when there is no cache."""
    if settings.ephemeral_storage_limit:
        return settings.ephemeral_storage_limit
    limits = settings.dataset_limits
    total = limits.max_download_bytes + limits.max_uncompressed_bytes + WORK_HEADROOM_BYTES
    if not settings.model_cache_pvc:
        total += BASE_MODEL_BYTES
    return f"{-(-total // GIB)}Gi"


def build_progress_token_volume() -> dict[str, Any]:
    """The pod's only credential: a token bound to the pod, for the operator's progress
    endpoint alone (the API server refuses its audience). The kubelet rotates it."""
    token = {
        "audience": contract.PROGRESS_AUDIENCE,
        "expirationSeconds": PROGRESS_TOKEN_SECONDS,
        "path": contract.PROGRESS_TOKEN_FILE,
    }
    return {
        "name": PROGRESS_TOKEN_VOLUME,
        "projected": {"sources": [{"serviceAccountToken": token}]},
    }


def _volumes(settings: OperatorSettings) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    work: dict[str, Any] = {}
    if settings.work_volume_size:
        work["sizeLimit"] = settings.work_volume_size
    volumes: list[dict[str, Any]] = [
        {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": settings.shm_size}},
        {"name": "work", "emptyDir": work},
        {"name": "tmp", "emptyDir": {}},
        build_progress_token_volume(),
    ]
    mounts: list[dict[str, Any]] = [
        {"name": "dshm", "mountPath": "/dev/shm"},
        {"name": "work", "mountPath": WORK_MOUNT_PATH},
        {"name": "tmp", "mountPath": "/tmp"},
        {"name": PROGRESS_TOKEN_VOLUME, "mountPath": contract.PROGRESS_TOKEN_DIR, "readOnly": True},
    ]
    if settings.output_pvc:
        volumes.append(
            {"name": "output", "persistentVolumeClaim": {"claimName": settings.output_pvc}}
        )
        mounts.append({"name": "output", "mountPath": OUTPUT_MOUNT_PATH})
    if settings.model_cache_pvc:
        volumes.append(
            {"name": "models", "persistentVolumeClaim": {"claimName": settings.model_cache_pvc}}
        )
        mounts.append({"name": "models", "mountPath": MODEL_CACHE_MOUNT_PATH})
    return volumes, mounts


def build_job(
    ref: TrainingJobRef, spec: LoRATrainingJobSpec, settings: OperatorSettings
) -> dict[str, Any]:
    """The trainer Job: one pod, retried on failure, never on bad input, not on disruption."""
    config = build_training_config(ref, spec, settings)
    placement = resolve_placement(spec, settings)
    queue = resolve_queue(spec, settings)
    labels = naming.child_labels(ref.name)
    volumes, mounts = _volumes(settings)

    envs_from = [{"secretRef": {"name": settings.output_secret}}] if settings.output_secret else []
    container: dict[str, Any] = {
        "name": naming.TRAINER_CONTAINER,
        "image": settings.trainer_image,
        "imagePullPolicy": settings.trainer_image_pull_policy,
        "command": TRAINER_COMMAND,
        "args": TRAINER_ARGS,
        "env": _env(config, settings),
        "envFrom": envs_from,
        "resources": {
            "requests": {"cpu": settings.cpu_request, "memory": settings.memory_request},
            "limits": {
                "memory": settings.memory_limit,
                "ephemeral-storage": trainer_ephemeral_storage(settings),
                settings.gpu_resource: str(config.gpus),
            },
        },
        "volumeMounts": mounts,
        "securityContext": RESTRICTED_CONTAINER_SECURITY,
        "terminationMessagePath": contract.TERMINATION_MESSAGE_PATH,
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    if not envs_from:
        del container["envFrom"]

    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        # A SIGTERM (eviction, preemption) lets the trainer finish its step and checkpoint it.
        "terminationGracePeriodSeconds": settings.trainer_grace_seconds,
        # The namespace's default account, with no API token: the trainer runs untrusted data
        # and holds no Kubernetes rights (it reports progress with the token above).
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        # The pod's pause process is PID 1, not the trainer: the kernel drops a signal that
        # PID 1 has no handler for, so a SIGTERM in the trainer's first second (a run cancelled,
        # preempted or suspended as its pod starts) was lost, and it trained on to the end,
        # holding the GPU. Not PID 1, the trainer dies of it, or stops as its handler says.
        "shareProcessNamespace": True,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": settings.run_as_user,
            "runAsGroup": settings.run_as_user,
            "fsGroup": settings.run_as_user,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
        "volumes": volumes,
    }
    if placement.node_selector:
        pod_spec["nodeSelector"] = placement.node_selector
    if placement.tolerations:
        pod_spec["tolerations"] = placement.tolerations
    if placement.priority_class_name:
        pod_spec["priorityClassName"] = placement.priority_class_name
    if placement.runtime_class_name:
        pod_spec["runtimeClassName"] = placement.runtime_class_name
    if settings.image_pull_secrets:
        pod_spec["imagePullSecrets"] = [{"name": name} for name in settings.image_pull_secrets]

    job_labels = dict(labels)
    if queue:
        job_labels[naming.KUEUE_QUEUE_LABEL] = queue
    job_spec: dict[str, Any] = {
        "backoffLimit": spec.backoff_limit,
        "completions": 1,
        "parallelism": 1,
        "podFailurePolicy": build_pod_failure_policy(),
        # Kueue admits a suspended Job by un-suspending it; the operator never does.
        "suspend": bool(queue),
        "template": {"metadata": {"labels": labels}, "spec": pod_spec},
    }
    if spec.active_deadline_seconds is not None:
        job_spec["activeDeadlineSeconds"] = spec.active_deadline_seconds
    if settings.job_ttl_seconds is not None:
        job_spec["ttlSecondsAfterFinished"] = settings.job_ttl_seconds

    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": naming.job_name(ref.name),
            "namespace": ref.namespace,
            "labels": job_labels,
            "ownerReferences": [ref.owner_reference()],
            "finalizers": [naming.RESULT_FINALIZER],
        },
        "spec": job_spec,
    }
