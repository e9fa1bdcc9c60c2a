"""The real node: a kubelet and containerd run the project's images, as a cluster would."""

import json
import time

import pytest

from fluxlora_kube.client import Kube
from fluxlora_kube.paths import path
from fluxlora_localcluster import node
from fluxlora_localcluster.control_plane import ControlPlane
from fluxlora_localcluster.node import Node
from fluxlora_localcluster.training_site import (
    RESTRICTED,
)
from tests.cluster.conftest import REAL_NODE_TOLERATION

pytestmark = pytest.mark.timeout(600)

OPERATOR_IMAGE = "flux-lora-operator:0.1.0"
TRAINER_IMAGE = "flux-lora-trainer:0.1.0"
# What the restricted Pod Security profile demands, as the operator's Jobs set it.
RESTRICTED_CONTAINER = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "runAsNonRoot": True,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


def _pod(name: str, image: str, command: list[str] | None, args: list[str]) -> dict:
    container = {"name": "main", "image": image, "args": args}
    if command:
        container["command"] = command
    container["securityContext"] = RESTRICTED_CONTAINER
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "restartPolicy": "Never",
            "tolerations": [REAL_NODE_TOLERATION],
            "nodeSelector": {"kubernetes.io/hostname": "gpu-node-2"},
            "containers": [container],
        },
    }


def _finished(kube: Kube, namespace: str, name: str, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pod = kube.get("Pod", namespace, name)
        if pod and pod["status"].get("phase") in ("Succeeded", "Failed"):
            return pod
        time.sleep(0.5)
    raise AssertionError(f"pod {name} did not finish within {timeout} s: {pod}")


@pytest.fixture
def restricted_namespace(cluster_admin: Kube, namespace: str) -> str:
    cluster_admin.request(
        "PATCH",
        path("Namespace", name=namespace),
        {"metadata": {"labels": RESTRICTED}},
        content_type="application/merge-patch+json",
    )
    return namespace


@pytest.mark.parametrize(
    ("image", "program", "user"),
    [(OPERATOR_IMAGE, "fluxlora-operator", 65532), (TRAINER_IMAGE, "fluxlora-trainer", 1000)],
)
def test_each_image_runs_its_program_as_its_non_root_user_under_restricted_pod_security(
    real_node: Node,
    control_plane: ControlPlane,
    cluster_admin: Kube,
    restricted_namespace: str,
    image: str,
    program: str,
    user: int,
):
    namespace = restricted_namespace
    check = (
        "import os, shutil, importlib.util as u; print(json.dumps({'uid': os.getuid(), "
        "'program': shutil.which(sys.argv[1]), 'compilers': [c for c in ('gcc', 'cc', 'g++', "
        "'clang') if shutil.which(c)], 'test_tools': [m for m in ('pytest', 'kmock', 'ruff') "
        "if u.find_spec(m)]}))"
    )
    cluster_admin.request(
        "POST",
        path("Pod", namespace),
        _pod("inside", image, ["python3", "-c", f"import json, sys; {check}"], [program]),
    )
    cluster_admin.request("POST", path("Pod", namespace), _pod("help", image, None, ["--help"]))

    inside = _finished(cluster_admin, namespace, "inside")
    assert inside["status"]["phase"] == "Succeeded", inside["status"]
    found = json.loads(control_plane.kubectl("logs", "-n", namespace, "inside").stdout)
    assert found["uid"] == user
    assert found["program"] == f"/opt/venv/bin/{program}"
    assert found["compilers"] == [] and found["test_tools"] == []

    # The image's own entrypoint, with only the pod's args.
    helped = _finished(cluster_admin, namespace, "help")
    assert helped["status"]["phase"] == "Succeeded", helped["status"]
    logs = control_plane.kubectl("logs", "-n", namespace, "help")
    assert logs.returncode == 0 and f"usage: {program}" in logs.stdout


def test_a_crashing_container_is_restarted_in_place_with_back_off(
    real_node: Node, control_plane: ControlPlane, cluster_admin: Kube, namespace: str
):
    """A Deployment's failing container restarts in its pod (CrashLoopBackOff); its
    ReplicaSet makes no new pods (the stand-in node made 380 in four minutes)."""
    pod = _pod("crash", OPERATOR_IMAGE, ["python3", "-c", "print('down'); raise SystemExit(3)"], [])
    template = {
        "metadata": {"labels": {"app": "crash"}},
        "spec": pod["spec"] | {"restartPolicy": "Always"},
    }
    cluster_admin.request(
        "POST",
        path("Deployment", namespace),
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "crash"},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": "crash"}},
                "template": template,
            },
        },
    )

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        pods = cluster_admin.request("GET", path("Pod", namespace))["items"]
        statuses = [s for p in pods for s in p["status"].get("containerStatuses", [])]
        if statuses and statuses[0]["restartCount"] >= 2:
            break
        time.sleep(1)
    else:
        raise AssertionError(f"no second restart within 120 s: {pods}")

    assert len(pods) == 1 and pods[0]["status"]["phase"] == "Running"
    last = statuses[0]["lastState"]["terminated"]
    assert last["exitCode"] == 3
    state = statuses[0]["state"]  # running again, just ended, or backing off: nothing else
    assert state.get("waiting", {}).get("reason", "CrashLoopBackOff") == "CrashLoopBackOff"
    # The last ended run's output, asked again if a restart replaced that run meanwhile: the
    # kubelet keeps one ended run, and answers for the one just removed that it has no log
    # ("unable to retrieve", or its log file's path "no such file or directory").
    replaced = ("unable to retrieve", "no such file or directory")
    for _ in range(20):
        logs = control_plane.kubectl(
            "logs", "-n", namespace, pods[0]["metadata"]["name"], "--previous"
        )
        if logs.returncode == 0 and not any(answer in logs.stdout for answer in replaced):
            break
        time.sleep(0.5)
    assert logs.stdout.strip() == "down"

    # It waited between restarts: the kubelet's back-off, reported as the pod's BackOff event
    # (events are sent in batches: asked again for a few seconds).
    def backed_off() -> bool:
        events = cluster_admin.request("GET", path("Event", namespace))["items"]
        name = pods[0]["metadata"]["name"]
        return any(e["reason"] == "BackOff" and e["involvedObject"]["name"] == name for e in events)

    for _ in range(20):
        if backed_off():
            break
        time.sleep(0.5)
    else:
        raise AssertionError("no BackOff event for the crashing pod")


def test_a_store_filled_ahead_starts_its_node_with_nothing_left_to_unpack(
    control_plane: ControlPlane,
    cluster_admin: Kube,
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch,
):
    """What a cold `make images` does for the demo's node while the other servers compile:
    the node that then starts on the store finds every layer of its images unpacked."""
    folder = tmp_path_factory.mktemp("filled")  # short: the node's sockets live under it
    monkeypatch.setattr(node, "CACHE", folder / "cache")  # a machine with no store yet
    assert node.fill_store((OPERATOR_IMAGE,))
    assert not node.fill_store((OPERATOR_IMAGE,))  # a store exists: nothing to do
    store = folder / "cache" / "nodes" / f"{node.FIRST_NODE}-1" / "root"
    snapshots = store / "io.containerd.snapshotter.v1.overlayfs" / "snapshots"
    filled = sorted(snapshot.name for snapshot in snapshots.iterdir())
    assert len(filled) >= 2  # the pause image's layer and the operator image's
    try:
        # A taint no pod tolerates: the other tests' pods on this control plane (which tolerate
        # the real node's) must never be bound to a node that is about to go.
        with node.running_node(
            control_plane,
            folder / "node",
            images=(OPERATOR_IMAGE,),
            taints=("fluxlora.dev/store-test=true:NoSchedule",),
        ) as started:
            assert f"docker.io/library/{OPERATOR_IMAGE}" in started.images()
            assert sorted(snapshot.name for snapshot in snapshots.iterdir()) == filled
    finally:
        cluster_admin.delete("Node", None, node.FIRST_NODE)  # gone, as it is from the cluster
