"""The trainer Job, built from a spec and the operator's settings (a pure function)."""

import json

import pytest

from fluxlora_api.contract import (
    CONFIG_ENV,
    PROGRESS_AUDIENCE,
    PROGRESS_SECONDS_DEFAULT,
    PROGRESS_SECONDS_ENV,
    PROGRESS_TOKEN_DIR,
    PROGRESS_URL_ENV,
    ExitCode,
    TrainingConfig,
)
from fluxlora_api.limits import GIB, DatasetLimits
from fluxlora_api.spec import LoRATrainingJobSpec
from fluxlora_operator import naming
from fluxlora_operator.settings import OperatorSettings, load_settings
from fluxlora_operator.start.custom_resource import InvalidSpec, TrainingJobRef
from fluxlora_operator.start.trainer_job import build_job

REF = TrainingJobRef(namespace="team-a", name="portrait", uid="uid-123")
DATA = "s3://datasets/portrait.zip"
SETTINGS = OperatorSettings(default_output="s3://loras", trainer_image="registry/trainer:1")


def make(settings: OperatorSettings = SETTINGS, **spec) -> dict:
    return build_job(REF, LoRATrainingJobSpec(data=DATA, **spec), settings)


def pod_spec(job: dict) -> dict:
    return job["spec"]["template"]["spec"]


def container(job: dict) -> dict:
    return pod_spec(job)["containers"][0]


def env(job: dict) -> dict:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container(job)["env"]}


def config(job: dict) -> TrainingConfig:
    return TrainingConfig.model_validate_json(env(job)[CONFIG_ENV])


def test_the_job_has_a_deterministic_name_labels_and_an_owner():
    job = make()
    meta = job["metadata"]
    assert meta["name"] == "portrait-train"
    assert meta["labels"]["fluxlora.dev/training-job"] == "portrait"
    assert meta["labels"]["app.kubernetes.io/managed-by"] == "flux-lora-operator"
    assert job["spec"]["template"]["metadata"]["labels"] == {
        k: v for k, v in meta["labels"].items() if not k.startswith("kueue")
    }
    (owner,) = meta["ownerReferences"]
    assert (owner["kind"], owner["uid"], owner["controller"]) == (
        "LoRATrainingJob",
        "uid-123",
        True,
    )
    assert make() == job  # same input, same Job: a restart never builds another one


def test_retries_ignore_disruptions_and_never_retry_bad_input():
    job = make(backoffLimit=4)
    assert job["spec"]["backoffLimit"] == 4
    assert pod_spec(job)["restartPolicy"] == "Never"
    ignore, fail = job["spec"]["podFailurePolicy"]["rules"]
    assert ignore == {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}
    assert fail["action"] == "FailJob"
    assert fail["onExitCodes"]["values"] == [ExitCode.BAD_INPUT]
    assert fail["onExitCodes"]["containerName"] == container(job)["name"]


def test_a_stopped_trainer_has_the_operators_grace_to_checkpoint_its_step():
    assert pod_spec(make())["terminationGracePeriodSeconds"] == 120
    longer = SETTINGS.model_copy(update={"trainer_grace_seconds": 600})
    assert pod_spec(make(longer))["terminationGracePeriodSeconds"] == 600


def test_the_deadline_is_set_only_when_asked():
    assert "activeDeadlineSeconds" not in make()["spec"]
    assert make(activeDeadlineSeconds=7200)["spec"]["activeDeadlineSeconds"] == 7200


@pytest.mark.parametrize(
    ("gpus", "resource_name"), [(1, "nvidia.com/gpu"), (4, "nvidia.com/gpu"), (2, "amd.com/gpu")]
)
def test_the_gpu_resource_is_requested_gpus_times(gpus, resource_name):
    settings = SETTINGS.model_copy(update={"gpu_resource": resource_name})
    limits = container(make(settings, gpus=gpus))["resources"]["limits"]
    assert limits[resource_name] == str(gpus)


@pytest.mark.parametrize(
    ("spec_gpus", "default", "expected"), [(None, 1, 1), (None, 2, 2), (4, 2, 4)]
)
def test_the_spec_gpus_win_over_the_operators_default(spec_gpus, default, expected):
    settings = SETTINGS.model_copy(update={"gpus": default})
    job = make(settings, gpus=spec_gpus) if spec_gpus else make(settings)
    assert container(job)["resources"]["limits"]["nvidia.com/gpu"] == str(expected)
    config = next(e for e in container(job)["env"] if e["name"] == CONFIG_ENV)
    assert json.loads(config["value"])["gpus"] == expected


def test_the_pod_runs_under_the_restricted_pod_security_profile():
    job = make()
    pod_security = pod_spec(job)["securityContext"]
    security = container(job)["securityContext"]
    assert pod_security["runAsNonRoot"] is True and pod_security["runAsUser"] != 0
    assert pod_security["seccompProfile"] == {"type": "RuntimeDefault"}
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["runAsNonRoot"] is True
    assert container(job)["terminationMessagePolicy"] == "FallbackToLogsOnError"


def test_shared_memory_and_work_volumes_are_mounted():
    job = make()
    mounts = {m["mountPath"]: m["name"] for m in container(job)["volumeMounts"]}
    volumes = {v["name"]: v for v in pod_spec(job)["volumes"]}
    assert volumes[mounts["/dev/shm"]]["emptyDir"]["medium"] == "Memory"
    assert "emptyDir" in volumes[mounts["/scratch"]]
    assert env(job)["HOME"] == "/scratch"


def test_the_trainer_gets_its_config_and_its_resource():
    job = make(triggerWord=None, steps=1500, loraRank=8)
    cfg = config(job)
    assert cfg.data == DATA
    assert cfg.trigger_word is None  # explicit null survives: no trigger word
    assert (cfg.steps, cfg.lora_rank, cfg.job_id) == (1500, 8, "uid-123")
    assert cfg.output == "s3://loras/team-a/portrait-uid-123"
    assert container(job)["image"] == "registry/trainer:1"


@pytest.mark.parametrize(
    ("spec_output", "settings_update", "expected"),
    [
        (
            None,
            {"default_output": "s3://loras/prefix/"},
            "s3://loras/prefix/team-a/portrait-uid-123",
        ),
        ("s3://mine", {"default_output": "s3://loras"}, "s3://mine/team-a/portrait-uid-123"),
        (None, {"default_output": None, "output_pvc": "loras"}, "/output/team-a/portrait-uid-123"),
        ("/mnt/x", {"default_output": None}, "/mnt/x/team-a/portrait-uid-123"),
    ],
)
def test_the_output_goes_under_a_per_resource_prefix(spec_output, settings_update, expected):
    settings = SETTINGS.model_copy(update=settings_update)
    assert config(make(settings, output=spec_output)).output == expected


def test_no_output_destination_is_an_error_naming_spec_output():
    settings = SETTINGS.model_copy(update={"default_output": None})
    with pytest.raises(InvalidSpec, match=r"^spec\.output: no output destination"):
        make(settings)


@pytest.mark.parametrize(
    ("defaults", "spec", "expected"),
    [
        ({}, {}, None),
        ({"pool": "gpu"}, {}, {"pool": "gpu"}),
        ({"pool": "gpu"}, {"pool": "gpu", "zone": "b"}, {"pool": "gpu", "zone": "b"}),
        ({}, {"gpu": "h100"}, {"gpu": "h100"}),
    ],
)
def test_a_spec_adds_node_selector_keys_to_the_operators(defaults, spec, expected):
    settings = SETTINGS.model_copy(update={"node_selector": defaults})
    assert pod_spec(make(settings, nodeSelector=spec or None)).get("nodeSelector") == expected


def test_a_spec_cannot_change_a_pinned_node_selector():
    settings = SETTINGS.model_copy(update={"node_selector": {"pool": "gpu"}})
    with pytest.raises(InvalidSpec, match=r"^spec\.nodeSelector\.pool: the operator pins it"):
        make(settings, nodeSelector={"pool": "control-plane"})


def test_tolerations_add_up_without_duplicates_for_allowed_keys():
    gpu = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    spot = {"key": "spot", "operator": "Equal", "value": "true", "effect": "NoExecute"}
    settings = OperatorSettings.model_validate(
        {**SETTINGS.model_dump(), "tolerations": [gpu], "allowed_toleration_keys": ["spot"]}
    )
    tolerations = pod_spec(make(settings, tolerations=[spot]))["tolerations"]
    assert tolerations == [gpu, spot]
    with pytest.raises(InvalidSpec, match=r"^spec\.tolerations\[0\]\.key: 'nvidia.com/gpu' is"):
        make(settings, tolerations=[gpu])  # the operator's own toleration is not the spec's


def test_a_toleration_of_every_taint_is_refused_by_the_model():
    with pytest.raises(ValueError, match="key"):
        make(tolerations=[{"operator": "Exists"}])


@pytest.mark.parametrize(
    ("default", "allowed", "spec", "expected"),
    [
        (None, [], None, None),
        ("low", [], None, "low"),
        ("low", [], "low", "low"),
        ("low", ["high"], "high", "high"),
        (None, ["high"], "high", "high"),
    ],
)
def test_priority_class_comes_from_the_spec_when_allowed_or_the_default(
    default, allowed, spec, expected
):
    settings = SETTINGS.model_copy(
        update={"priority_class_name": default, "allowed_priority_classes": allowed}
    )
    assert pod_spec(make(settings, priorityClassName=spec)).get("priorityClassName") == expected


@pytest.mark.parametrize("spec", ["high", "system-node-critical"])
def test_a_priority_class_the_operator_does_not_allow_never_reaches_a_pod(spec):
    settings = SETTINGS.model_copy(update={"priority_class_name": "low"})
    with pytest.raises((InvalidSpec, ValueError), match="priorityClassName"):
        make(settings, priorityClassName=spec)


@pytest.mark.parametrize(
    ("default", "spec", "expected"),
    [(None, None, None), ("team", None, "team"), ("team", "urgent", "urgent")],
)
def test_a_kueue_queue_makes_a_suspended_labelled_job(default, spec, expected):
    settings = SETTINGS.model_copy(update={"queue_name": default})
    job = make(settings, queueName=spec)
    assert job["metadata"]["labels"].get("kueue.x-k8s.io/queue-name") == expected
    assert job["spec"]["suspend"] is (expected is not None)


def test_credentials_and_caches_come_from_the_operator_settings(monkeypatch):
    # The operator's own credentials, in its environment, must never be copied into a Job.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "operator-own-key-id")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "operator-own-secret")
    settings = SETTINGS.model_copy(
        update={
            "output_secret": "s3-creds",
            "s3_endpoint": "http://minio:9000",
            "hf_token_secret": "hf",
            "model_cache_pvc": "hf-cache",
            "runtime_class_name": "nvidia",
            "image_pull_secrets": ["regcred"],
        }
    )
    job = make(settings)
    assert container(job)["envFrom"] == [{"secretRef": {"name": "s3-creds"}}]
    assert env(job)["AWS_ENDPOINT_URL"] == "http://minio:9000"
    assert env(job)["HF_TOKEN"] == {"secretKeyRef": {"name": "hf", "key": "token"}}
    assert env(job)["HF_HOME"] == "/models"
    claims = [
        v["persistentVolumeClaim"]["claimName"]
        for v in pod_spec(job)["volumes"]
        if "persistentVolumeClaim" in v
    ]
    assert claims == ["hf-cache"]
    assert pod_spec(job)["runtimeClassName"] == "nvidia"
    assert pod_spec(job)["imagePullSecrets"] == [{"name": "regcred"}]
    # The trainer gets credentials only by the Secret's name, never a value.
    written = json.dumps(job)
    assert "operator-own-secret" not in written and "operator-own-key-id" not in written


def test_the_trainer_holds_no_api_token_only_a_progress_token_bound_to_its_pod():
    settings = SETTINGS.model_copy(update={"progress_url": "http://op.ops.svc:8082"})
    job = make(settings)
    spec = pod_spec(job)
    assert spec["automountServiceAccountToken"] is False
    assert "serviceAccountName" not in spec  # the namespace's default account, no rights
    volumes = {v["name"]: v for v in spec["volumes"]}
    (mount,) = [m for m in container(job)["volumeMounts"] if m["mountPath"] == PROGRESS_TOKEN_DIR]
    assert mount["readOnly"] is True
    (source,) = volumes[mount["name"]]["projected"]["sources"]
    assert source["serviceAccountToken"]["audience"] == PROGRESS_AUDIENCE
    assert source["serviceAccountToken"]["expirationSeconds"] <= 3600
    assert env(job)[PROGRESS_URL_ENV] == "http://op.ops.svc:8082"
    assert PROGRESS_URL_ENV not in env(make())  # no endpoint configured: log only
    assert float(env(job)[PROGRESS_SECONDS_ENV]) == PROGRESS_SECONDS_DEFAULT
    faster = make(settings.model_copy(update={"progress_seconds": 1.5}))
    assert env(faster)[PROGRESS_SECONDS_ENV] == "1.5"


def test_the_trainer_works_on_the_work_volume():
    command = container(make())["command"] + container(make())["args"]
    assert command[:2] == ["fluxlora-trainer", "train"]
    workdir = command[command.index("--workdir") + 1]
    mounts = [m["mountPath"] for m in container(make())["volumeMounts"]]
    assert any(workdir.startswith(mount + "/") for mount in mounts)


def test_only_the_controller_reference_with_the_uid_makes_an_object_the_resources_own():
    own = {"metadata": {"ownerReferences": [REF.owner_reference()]}}
    assert REF.owns(own)
    not_controller = {
        "metadata": {"ownerReferences": [{**REF.owner_reference(), "controller": False}]}
    }
    other_uid = {"metadata": {"ownerReferences": [{**REF.owner_reference(), "uid": "uid-999"}]}}
    other_kind = {"metadata": {"ownerReferences": [{**REF.owner_reference(), "kind": "Job"}]}}
    for obj in (not_controller, other_uid, other_kind, {"metadata": {}}):
        assert not REF.owns(obj)


def test_the_job_is_held_until_the_operator_has_recorded_how_it_ended():
    assert make()["metadata"]["finalizers"] == [naming.RESULT_FINALIZER]


def test_the_operators_dataset_limits_reach_the_trainer_and_size_its_disk(monkeypatch):
    limits = DatasetLimits(allowedNetworks=["10.0.0.0/8"], maxDownloadBytes=2 * GIB)
    settings = SETTINGS.model_copy(update={"dataset_limits": limits})
    job = make(settings)
    for name, value in env(job).items():  # what the trainer reads back
        if isinstance(value, str):
            monkeypatch.setenv(name, value)
    assert DatasetLimits.from_env() == limits
    disk = container(job)["resources"]["limits"]["ephemeral-storage"]
    # download + unpacked (8 GiB default) + caches and outputs + the base model (no cache)
    assert disk == f"{2 + 8 + 16 + 40}Gi"
    cached = settings.model_copy(update={"model_cache_pvc": "hf-cache"})
    assert container(make(cached))["resources"]["limits"]["ephemeral-storage"] == "26Gi"


def test_dataset_limits_are_a_json_setting_and_wrong_ones_name_the_key():
    settings = load_settings(["--dataset-limits", '{"allowedNetworks": ["127.0.0.0/8"]}'])
    assert settings.dataset_limits.allowed_networks == ["127.0.0.0/8"]
    with pytest.raises(SystemExit, match=r"10\.0\.0\.300/8. is not a network"):
        load_settings(["--dataset-limits", '{"allowedNetworks": ["10.0.0.300/8"]}'])


def test_the_trainer_runs_as_many_cpu_threads_as_cpus_it_requested():
    job = make(SETTINGS.model_copy(update={"cpu_request": "2500m"}))
    ref = env(job)["OMP_NUM_THREADS"]["resourceFieldRef"]
    assert ref["resource"] == "requests.cpu"
    assert ref["containerName"] == container(job)["name"]
    assert container(job)["resources"]["requests"]["cpu"] == "2500m"
