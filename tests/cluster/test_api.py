"""The LoRATrainingJob API as the real kube-apiserver enforces it, and as kubectl shows it."""

from pathlib import Path

import pytest

from fluxlora_api import resource
from fluxlora_api.spec import SAMPLES_NEED_PROMPTS
from fluxlora_api.status import ConditionType
from fluxlora_kube.client import ApiError
from fluxlora_kube.paths import COLLECTIONS, path
from fluxlora_localcluster.training_site import submit
from fluxlora_operator import naming
from fluxlora_operator.start.custom_resource import parse_spec

pytestmark = pytest.mark.timeout(300)
ROOT = Path(__file__).resolve().parents[2]


def test_a_minimal_resource_gets_the_hosted_defaults(cluster_admin, namespace):
    spec = submit(cluster_admin, namespace)["spec"]
    assert (spec["triggerWord"], spec["steps"], spec["loraRank"]) == ("p3r5on", 1000, 16)
    # Left unset, so that each optimizer gets its own: the hosted 0.0004 for AdamW.
    assert "learningRate" not in spec
    assert parse_spec(spec).effective_learning_rate == 0.0004


def test_an_explicit_null_trigger_word_is_kept(cluster_admin, namespace):
    spec = submit(cluster_admin, namespace, triggerWord=None)["spec"]
    assert "triggerWord" in spec and spec["triggerWord"] is None


@pytest.mark.parametrize("verb", ["create", "apply", "apply --server-side"])
def test_an_empty_trigger_word_means_none_with_every_kubectl_path(
    control_plane, cluster_admin, namespace, tmp_path, verb
):
    """The documented way to say "no trigger word" survives create, client-side apply and
    server-side apply; a null does not survive client-side apply (kubectl drops it, and the
    default fills in), which is why the docs say \"\"."""
    for name, word in (("empty-word", '""'), ("null-word", "null")):
        manifest = tmp_path / f"{name}.yaml"
        manifest.write_text(
            f"apiVersion: {resource.API_VERSION}\nkind: {resource.KIND}\n"
            f"metadata: {{name: {name}}}\n"
            f"spec: {{data: 'https://example.com/a.zip', triggerWord: {word}}}\n"
        )
        done = control_plane.kubectl(*verb.split(), "-n", namespace, "-f", str(manifest))
        assert done.returncode == 0, done.stderr
    stored = {
        name: parse_spec(cluster_admin.get(resource.KIND, namespace, name)["spec"])
        for name in ("empty-word", "null-word")
    }
    assert stored["empty-word"].effective_trigger_word is None
    null_survives = verb != "apply"
    assert (stored["null-word"].effective_trigger_word is None) is null_survives
    assert "kubectl apply" in control_plane.kubectl("explain", "ltj.spec.triggerWord").stdout


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"data": None, "steps": 1000}, "spec.data"),  # null is pruned: missing
        ({"data": "ftp://example.com/a.zip"}, "spec.data"),
        ({"data": "https://x/a.zip", "steps": 499}, "spec.steps"),
        ({"data": "https://x/a.zip", "steps": 4001}, "spec.steps"),
        ({"data": "https://x/a.zip", "steps": "many"}, "spec.steps"),
        ({"data": "https://x/a.zip", "learningRate": 1.5}, "spec.learningRate"),
        ({"data": "https://x/a.zip", "learningRate": 0}, "spec.learningRate"),
        ({"data": "https://x/a.zip", "loraRank": 0}, "spec.loraRank"),
        ({"data": "https://x/a.zip", "loraRank": 65}, "spec.loraRank"),
        ({"data": "https://x/a.zip", "resolution": 1000}, "spec.resolution"),
        ({"data": "https://x/a.zip", "optimizer": "sgd"}, "spec.optimizer"),
        ({"data": "https://x/a.zip", "gpus": 0}, "spec.gpus"),
        ({"data": "https://x/a.zip", "queueName": "Bad_Queue"}, "spec.queueName"),
        # Scheduling power a training user must not get, refused at admission.
        (
            {"data": "https://x/a.zip", "priorityClassName": "system-node-critical"},
            "spec.priorityClassName",
        ),
        (
            {"data": "https://x/a.zip", "tolerations": [{"operator": "Exists"}]},
            "spec.tolerations[0].key",
        ),
        # Webhooks: http(s) only, and never a link-local (cloud metadata) address.
        ({"data": "https://x/a.zip", "webhook": "ftp://hooks.example/in"}, "spec.webhook"),
        ({"data": "https://x/a.zip", "webhook": "http://169.254.169.254/x"}, "spec.webhook"),
        ({"data": "https://x/a.zip", "webhook": "http://[fe80::1]:80/x"}, "spec.webhook"),
        # Samples while training: a sensible interval, and prompts to render.
        ({"data": "https://x/a.zip", "sampleEverySteps": 10}, "spec.sampleEverySteps"),
        ({"data": "https://x/a.zip", "sampleEverySteps": 100}, SAMPLES_NEED_PROMPTS),
        (
            {"data": "https://x/a.zip", "sampleEverySteps": 100, "samplePrompts": []},
            SAMPLES_NEED_PROMPTS,
        ),
    ],
)
def test_bad_fields_are_rejected_naming_the_field(cluster_admin, namespace, spec, field):
    with pytest.raises(ApiError) as error:
        submit(cluster_admin, namespace, **spec)
    assert error.value.status == 422
    assert field in error.value.message


@pytest.mark.parametrize(
    "change",
    [
        {"steps": 2000},  # a value changed
        {"output": "s3://elsewhere/loras"},  # a field added
        {"triggerWord": None, "loraRank": 8},  # one removed (merge patch null), one changed
        {"tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists"}]},
    ],
)
def test_the_spec_cannot_change_after_creation_but_for_suspend(cluster_admin, namespace, change):
    submit(cluster_admin, namespace, triggerWord="sks")

    def patch(spec: dict) -> dict:
        return cluster_admin.request(
            "PATCH", path(resource.KIND, namespace, "portrait"), {"spec": spec},
            content_type="application/merge-patch+json",
        )  # fmt: skip

    with pytest.raises(ApiError) as error:
        patch(change)
    assert error.value.status == 422
    assert "spec is immutable but for suspend: create a new LoRATrainingJob" in error.value.message
    assert patch({"suspend": True})["spec"]["suspend"] is True
    assert patch({"suspend": False})["spec"]["suspend"] is False
    with pytest.raises(ApiError):
        patch({"suspend": True, **change})


def test_names_longer_than_the_job_name_allows_are_rejected(cluster_admin, namespace):
    with pytest.raises(ApiError, match=r"metadata\.name must be at most 57 characters"):
        submit(cluster_admin, namespace, "x" * 58)


def test_status_is_a_subresource(cluster_admin, namespace):
    submit(cluster_admin, namespace)
    cluster_admin.patch_status(resource.KIND, namespace, "portrait", {"phase": "processing"})
    ignored = cluster_admin.request(
        "PATCH",
        path(resource.KIND, namespace, "portrait"),
        {"status": {"phase": "completed"}},
        content_type="application/merge-patch+json",
    )
    assert ignored["status"]["phase"] == "processing"  # status changes only through /status


def test_kubectl_applies_the_example_and_shows_the_columns_and_field_docs(
    control_plane, cluster_admin, namespace
):
    applied = control_plane.kubectl(
        "apply", "-n", namespace, "-f", str(ROOT / "examples" / "minimal.yaml")
    )
    assert applied.returncode == 0, applied.stderr
    assert "loratrainingjob.fluxlora.dev/portrait created" in applied.stdout

    cluster_admin.patch_status(resource.KIND, namespace, "portrait", {"phase": "processing"})
    table = control_plane.kubectl("get", "ltj", "-n", namespace).stdout.splitlines()
    assert table[0].split() == ["NAME", "PHASE", "STEPS", "PROGRESS", "RANK", "SUSPENDED", "AGE"]
    assert table[1].split()[:3] == ["portrait", "processing", "1000"]
    # The short name, and the categories shared with the other fluxlora resources.
    listed = control_plane.kubectl("get", "fluxlora", "-n", namespace, "-o", "name").stdout
    assert listed.strip() == "loratrainingjob.fluxlora.dev/portrait"

    snapshots = [{"step": 250, "files": []}, {"step": 500, "files": []}]
    cluster_admin.patch_status(resource.KIND, namespace, "portrait", {"snapshots": snapshots})
    wide = control_plane.kubectl("get", "ltj", "-n", namespace, "-o", "wide").stdout.splitlines()
    # Only with -o wide: the newest snapshot's step, and the error.
    assert wide[0].split()[-2:] == ["SNAPSHOT", "ERROR"]
    assert wide[1][wide[0].index("SNAPSHOT") :].split()[0] == "500"

    explained = control_plane.kubectl("explain", "loratrainingjob.spec.loraRank")
    assert explained.returncode == 0, explained.stderr
    assert "integer" in explained.stdout and "rank" in explained.stdout.lower()
    # What each condition type and reason means, as the API defines them.
    conditions = control_plane.kubectl("explain", "ltj.status.conditions").stdout
    flat = " ".join(conditions.split())
    for type_ in ConditionType:
        assert f"{type_.value}: " in flat, type_
    assert "NameConflict: " in flat


def test_a_user_without_a_role_binding_cannot_submit_until_granted(
    control_plane, cluster_admin, namespace
):
    def can_i(verb: str) -> str:
        answer = control_plane.kubectl(
            "auth", "can-i", verb, "loratrainingjobs.fluxlora.dev", "-n", namespace, user="alice"
        )
        return answer.stdout.strip()

    denied = control_plane.kubectl(
        "apply", "-n", namespace, "-f", str(ROOT / "examples" / "minimal.yaml"), user="alice"
    )
    assert denied.returncode != 0 and "forbidden" in denied.stderr
    assert can_i("create") == "no"

    rules = [{"apiGroups": [resource.GROUP], "resources": [resource.PLURAL], "verbs": ["*"]}]
    cluster_admin.request(
        "POST",
        path("Role", namespace),
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
         "metadata": {"name": "trainers"}, "rules": rules},
    )  # fmt: skip
    cluster_admin.request(
        "POST",
        path("RoleBinding", namespace),
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": {"name": "alice-trains"},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "trainers"},
         "subjects": [{"kind": "User", "name": "alice", "apiGroup": "rbac.authorization.k8s.io"}]},
    )  # fmt: skip
    assert can_i("create") == "yes"
    granted = control_plane.kubectl(
        "apply", "-n", namespace, "-f", str(ROOT / "examples" / "minimal.yaml"), user="alice"
    )
    assert granted.returncode == 0, granted.stderr
    # The grant is for this namespace only.
    elsewhere = control_plane.kubectl(
        "auth", "can-i", "create", "loratrainingjobs.fluxlora.dev", "-n", "default", user="alice"
    )
    assert elsewhere.stdout.strip() == "no"


def test_every_kind_in_the_path_table_is_where_the_api_server_serves_it(cluster_admin):
    """The one table of API paths against the real API server's discovery (kopf's peering
    kinds only where their CRD is installed, which this plane's tests do not need)."""
    served: dict[str, dict[str, bool]] = {}
    checked = []
    for kind, collection in COLLECTIONS.items():
        if collection.prefix not in served:
            try:
                listing = cluster_admin.request("GET", collection.prefix)
            except ApiError as error:
                assert error.status == 404 and collection.api_version.startswith("kopf.dev/")
                listing = {}
            served[collection.prefix] = {
                item["name"]: item["namespaced"] for item in listing.get("resources") or []
            }
        if collection.api_version.startswith("kopf.dev/") and not served[collection.prefix]:
            continue
        assert served[collection.prefix].get(collection.plural) == collection.namespaced, kind
        assert path(kind, "ns", "x").startswith(collection.prefix)
        checked.append(kind)
    assert {"Job", "Pod", resource.KIND, "TokenReview"} <= set(checked)


def test_a_finalizer_comes_off_whatever_else_changed_and_only_that_one(cluster_admin, namespace):
    """How the operator releases a finished run's Job, on the real API server: its finalizer
    comes off an object the operator last saw before a controller wrote its status, without
    reading it again, and another's finalizer stays. If the list itself changed since, the
    object as last seen is not acted on (its watch event brings the newer one)."""
    submit(cluster_admin, namespace, "held", data="https://x/a.zip")
    own, other = naming.RESULT_FINALIZER, "example.com/other"

    def hold(*finalizers: str) -> dict:
        body = {"metadata": {"finalizers": list(finalizers)}}
        url = path(resource.KIND, namespace, "held")
        return cluster_admin.request(
            "PATCH", url, body, content_type="application/merge-patch+json"
        )

    def finalizers() -> list[str]:
        return cluster_admin.get(resource.KIND, namespace, "held")["metadata"]["finalizers"]

    seen = hold(other, own)
    cluster_admin.patch_status(resource.KIND, namespace, "held", {"phase": "processing"})
    cluster_admin.remove_finalizer(resource.KIND, namespace, "held", own, seen)
    assert finalizers() == [other]

    seen = hold(other, own)
    hold(own)  # someone else took theirs off: ours moved
    cluster_admin.remove_finalizer(resource.KIND, namespace, "held", own, seen)
    assert finalizers() == [own]  # the stale view was not acted on
    cluster_admin.remove_finalizer(resource.KIND, namespace, "held", own)  # reads it
    assert cluster_admin.get(resource.KIND, namespace, "held")["metadata"].get("finalizers") is None
