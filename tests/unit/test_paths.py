"""The one table of API paths: a collection, an object, a subresource, across namespaces."""

from fluxlora_kube.paths import path


def test_namespaced_kinds_live_under_their_namespace():
    assert path("Job", "team-a") == "/apis/batch/v1/namespaces/team-a/jobs"
    assert path("Pod", "team-a", "p", "eviction") == "/api/v1/namespaces/team-a/pods/p/eviction"
    assert path("LoRATrainingJob", "team-a", "portrait", "status") == (
        "/apis/fluxlora.dev/v1alpha1/namespaces/team-a/loratrainingjobs/portrait/status"
    )


def test_without_a_namespace_a_namespaced_kind_is_listed_across_all():
    assert path("Pod") == "/api/v1/pods"


def test_cluster_scoped_kinds_ignore_a_namespace_and_names_are_quoted():
    assert path("Node", name="gpu 1") == "/api/v1/nodes/gpu%201"
    assert path("Namespace", "ignored", "team-a") == "/api/v1/namespaces/team-a"
