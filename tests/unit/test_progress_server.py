"""Who may report progress: only a pod-bound token for the progress audience, and only from a
trainer pod of the operator's making (pure checks; the real plane proves the whole path)."""

import pytest

from fluxlora_api.contract import PROGRESS_AUDIENCE
from fluxlora_operator.progress_server import Reporter, reporter_of, training_job_of
from tests.objects import pod

REPORTER = Reporter("team-a", "portrait-train-abcde", "pod-uid-1")


def review(
    authenticated: bool = True,
    audiences: tuple[str, ...] = (PROGRESS_AUDIENCE,),
    username: str = "system:serviceaccount:team-a:default",
    extra: dict | None = None,
) -> dict:
    if extra is None:
        extra = {
            "authentication.kubernetes.io/pod-name": ["portrait-train-abcde"],
            "authentication.kubernetes.io/pod-uid": ["pod-uid-1"],
        }
    return {
        "status": {
            "authenticated": authenticated,
            "audiences": list(audiences),
            "user": {"username": username, "extra": extra},
        }
    }


def test_a_pod_bound_progress_token_names_its_pod():
    assert reporter_of(review()) == REPORTER


@pytest.mark.parametrize(
    "case",
    [
        review(authenticated=False),
        review(audiences=("https://kubernetes.default.svc",)),  # an API token
        review(username="alice"),  # a person, not a pod
        review(extra={}),  # `kubectl create token`: not bound to any pod
    ],
    ids=["unauthenticated", "other-audience", "not-a-service-account", "not-pod-bound"],
)
def test_anything_else_is_no_reporter(case):
    assert reporter_of(case) is None


def trainer_pod(**changes) -> dict:
    obj = pod(name="portrait-train-abcde", job_name="portrait", job_uid="job-uid-1")
    obj["metadata"]["uid"] = "pod-uid-1"
    obj["metadata"].update(changes)
    return obj


def test_the_trainer_pod_of_a_resource_reports_for_that_resource():
    assert training_job_of(trainer_pod(), REPORTER) == ("portrait", "job-uid-1")


def test_a_pod_that_is_not_the_operators_trainer_reports_for_nothing():
    reused_name = trainer_pod(uid="pod-uid-2")
    other_namespace = trainer_pod(namespace="team-b")
    unlabelled = trainer_pod(labels={})
    not_controlled = trainer_pod()
    not_controlled["metadata"]["ownerReferences"][0]["controller"] = False
    other_job = trainer_pod()
    other_job["metadata"]["ownerReferences"][0]["name"] = "someone-elses-job"
    for obj in (reused_name, other_namespace, unlabelled, not_controlled, other_job):
        assert training_job_of(obj, REPORTER) is None
