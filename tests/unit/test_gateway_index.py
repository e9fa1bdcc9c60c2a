"""The gateway's index of prediction ids: one paged listing per namespace, then a watch; a
lookup by id never lists the namespace again."""

import queue
import threading
import time

from fluxlora_gateway.index import PAGE_SIZE, NamespaceIndex
from fluxlora_kube.client import ApiError


def run(uid: str, name: str) -> dict:
    return {"metadata": {"uid": uid, "name": name, "resourceVersion": uid}}


class FakeKube:
    """Serves listings in pages and a watch fed by the test; counts every call."""

    def __init__(self, items: list[dict]) -> None:
        self.items = items
        self.lists = 0
        self.watches = 0
        self.events: queue.Queue = queue.Queue()

    def request(self, method: str, url: str, body=None, query=None, content_type=None) -> dict:
        assert method == "GET" and url.endswith("/loratrainingjobs")
        start = int(query.get("continue") or 0)
        self.lists += start == 0
        end = start + int(query["limit"])
        page = {"resourceVersion": "10"}
        if end < len(self.items):
            page["continue"] = str(end)
        return {"metadata": page, "items": self.items[start:end]}

    def watch(self, url: str, query: dict, timeout_seconds: int):
        self.watches += 1
        while True:
            event = self.events.get()
            if isinstance(event, Exception):
                raise event
            yield event


def eventually(condition, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return False


def test_a_large_namespace_is_listed_once_in_pages_and_lookups_read_nothing():
    items = [run(f"uid-{i}", f"prediction-{i}") for i in range(PAGE_SIZE * 2 + 7)]
    kube = FakeKube(items)
    index = NamespaceIndex(kube, "team-a")
    assert index.name("uid-0") == "prediction-0"
    assert index.name(f"uid-{PAGE_SIZE * 2 + 6}") == f"prediction-{PAGE_SIZE * 2 + 6}"
    for i in range(0, len(items), 97):
        assert index.name(f"uid-{i}") == f"prediction-{i}"
    assert kube.lists == 1
    index.stop()


def test_the_watch_adds_and_forgets_runs_and_a_too_old_version_lists_again():
    kube = FakeKube([run("a", "prediction-a")])
    index = NamespaceIndex(kube, "team-a")
    assert index.name("a") == "prediction-a"
    kube.events.put(("ADDED", run("b", "prediction-b")))
    assert index.name("b", miss_wait=5) == "prediction-b"
    kube.events.put(("DELETED", run("a", "prediction-a")))
    assert eventually(lambda: index.name("a", miss_wait=0) is None)

    kube.items = [run("b", "prediction-b"), run("c", "prediction-c")]
    kube.events.put(ApiError(410, "Gone", "too old resource version"))
    assert index.name("c", miss_wait=5) == "prediction-c"
    assert kube.lists == 2 and eventually(lambda: kube.watches == 2)
    index.stop()


def test_an_unknown_id_waits_only_briefly_and_is_unknown():
    index = NamespaceIndex(FakeKube([]), "team-a")
    began = time.monotonic()
    assert index.name("made-up", miss_wait=0.2) is None
    assert 0.2 <= time.monotonic() - began < 2


def test_a_run_remembered_at_submission_is_found_before_its_watch_event():
    kube = FakeKube([])
    index = NamespaceIndex(kube, "team-a")
    found = []
    waiter = threading.Thread(target=lambda: found.append(index.name("new", miss_wait=5)))
    waiter.start()
    index.remember("new", "prediction-new")
    waiter.join(timeout=5)
    assert found == ["prediction-new"]
