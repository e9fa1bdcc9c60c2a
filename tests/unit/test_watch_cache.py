"""The watch cache (what the mirror decides from between resyncs) and the coalescer (one mirror
per resource at a time, however many events)."""

import threading
import time

import pytest

from fluxlora_operator import naming
from fluxlora_operator.coalesce import Coalescer
from fluxlora_operator.watch_cache import WatchCache
from tests.objects import job, pod, running, training_job


def versioned(obj: dict, version: int) -> dict:
    obj["metadata"]["resourceVersion"] = str(version)
    return obj


def test_a_view_holds_the_resource_its_job_and_its_pods_only():
    cache = WatchCache()
    cache.record(versioned(training_job(status={"phase": "created"}), 1))
    cache.record(versioned(job(), 2))
    cache.record(versioned(pod(), 3))
    cache.record(versioned(training_job(name="other", uid="u2"), 4))
    cache.record(versioned(job(name="other", uid="job-uid-2"), 5))
    cache.record(versioned(pod(name="other-pod", job_name="other", job_uid="job-uid-2"), 6))

    view = cache.view("team-a", "portrait")

    assert view.resources["portrait"]["status"] == {"phase": "created"}
    assert list(view.resources) == ["portrait"]
    assert view.jobs[naming.job_name("portrait")]["metadata"]["uid"] == "job-uid-1"
    assert list(view.jobs) == [naming.job_name("portrait")]
    assert [
        p["metadata"]["name"] for p in view.pods_of(view.jobs[naming.job_name("portrait")])
    ] == ["portrait-train-abcde"]
    assert view.pod_creation_failures == {}
    assert cache.view("team-b", "portrait").resources == {}


def test_objects_are_kept_slim_and_copied():
    """The Job's and pod's specs (environment, volumes) are most of their size; kopf's objects
    are kopf's own."""
    original = versioned(job(), 1)
    original["metadata"]["managedFields"] = [{"manager": "kube-controller-manager"}]
    original["spec"]["template"] = {"spec": {"containers": [{"env": [{"name": "A"}]}]}}
    cache = WatchCache()
    cache.record(original)

    kept = cache.view("team-a", "portrait").jobs[naming.job_name("portrait")]

    assert kept["spec"] == {"suspend": False, "activeDeadlineSeconds": 3600}
    assert "managedFields" not in kept["metadata"]
    assert "managedFields" in original["metadata"] and "template" in original["spec"]


def test_an_older_version_never_replaces_a_newer_one():
    """A write's answer can arrive before the watch event of an earlier write."""
    cache = WatchCache()
    cache.record(versioned(training_job(status={"phase": "processing"}), 20))
    cache.record(versioned(training_job(status={"phase": "created"}), 10))
    assert cache.view("team-a", "portrait").resources["portrait"]["status"]["phase"] == (
        "processing"
    )
    cache.record(versioned(training_job(status={"phase": "completed"}), 30))
    assert cache.view("team-a", "portrait").resources["portrait"]["status"]["phase"] == (
        "completed"
    )


def test_deleted_objects_leave_and_a_forgotten_resource_takes_its_children_along():
    cache = WatchCache()
    cache.record(versioned(training_job(), 1))
    cache.record(versioned(job(), 2))
    first = versioned(pod(), 3)
    cache.record(first)
    cache.record(versioned(pod(name="second", phase="Running", state=running()), 4))

    cache.record(first, deleted=True)
    assert [p["metadata"]["name"] for p in cache.view("team-a", "portrait").pods] == ["second"]
    assert len(cache) == 3

    cache.forget("team-a", "portrait")
    view = cache.view("team-a", "portrait")
    assert (view.resources, view.jobs, view.pods) == ({}, {}, [])
    assert len(cache) == 0


def test_children_without_an_owner_label_are_not_kept():
    stray = versioned(job(), 1)
    del stray["metadata"]["labels"][naming.LABEL_TRAINING_JOB]
    cache = WatchCache()
    cache.record(stray)
    assert len(cache) == 0


def test_requests_during_a_run_make_one_more_run_not_one_each():
    coalescer = Coalescer()
    started, release = threading.Event(), threading.Event()
    runs = []

    def work():
        runs.append(time.monotonic())
        if len(runs) == 1:
            started.set()
            release.wait(5)

    first = threading.Thread(target=coalescer.run, args=("a", work))
    first.start()
    assert started.wait(5)
    # Five more events arrive while the first mirror runs: their threads return at once.
    assert [coalescer.run("a", work) for _ in range(5)] == [False] * 5
    assert coalescer.run("b", lambda: None) is True  # another resource is not held up
    release.set()
    first.join(5)
    assert len(runs) == 2  # the first, and one more for everything that came meanwhile
    assert coalescer.run("a", work) is True and len(runs) == 3


def test_a_failing_run_lets_the_next_request_run():
    coalescer = Coalescer()

    def fail():
        raise RuntimeError("API server unavailable")

    with pytest.raises(RuntimeError):
        coalescer.run("a", fail)
    assert coalescer.run("a", lambda: None) is True
