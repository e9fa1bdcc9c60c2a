"""Two operator replicas sharing a kopf peering object on the real control plane: exactly one
acts, new resources get a status, and when the active one stops the other takes over without a
second Job, whether it stopped cleanly (SIGTERM: it withdraws from the peering object) or was
killed without a word (SIGKILL: its record expires after the peering lifetime): first with each
replica the installed `fluxlora-operator` command in a process of its own (so each can be
stopped either way), then as the chart installs them, two pods of its Deployment on the real
node."""

import asyncio
import time

import pytest

from fluxlora_api import resource
from fluxlora_kube.paths import path
from fluxlora_localcluster.helm import CHART, helm, uninstall
from fluxlora_localcluster.operator import operator_process
from fluxlora_localcluster.processes import stop
from fluxlora_localcluster.training_site import (
    RESTRICTED,
    chart_values,
    create_namespace,
    set_quota,
    submit,
)
from fluxlora_localcluster.waiting import eventually
from fluxlora_operator import naming
from tests.cluster.conftest import REAL_NODE_TOLERATION

pytestmark = pytest.mark.timeout(300)
PEERING = "flux-lora-operator"
STARTED = ": created the trainer Job"
RESUMED = "Resuming operations"
LIFETIME_SECONDS = 10


def replica(control_plane, namespace: str, name: str, priority: int, log):
    environment = {
        "POD_ID": name,
        "FLUXLORA_NAMESPACES": namespace,
        "FLUXLORA_PEERING": PEERING,
        "FLUXLORA_PEERING_PRIORITY": str(priority),
        "FLUXLORA_PEERING_LIFETIME_SECONDS": str(LIFETIME_SECONDS),
        "FLUXLORA_DEFAULT_OUTPUT": "s3://loras",
        "FLUXLORA_TRAINER_IMAGE": "trainer:test",
        "FLUXLORA_RESYNC_SECONDS": "1",
    }
    return operator_process(control_plane.kubeconfig, environment, log)


def kill(process) -> None:
    process.kill()
    process.wait()


# How soon the standby acts: at once after a clean stop; within the peering lifetime (plus
# kopf's next look at the peering object and the start itself) after a kill.
@pytest.mark.parametrize(
    ("how", "within"), [(stop, 30), (kill, LIFETIME_SECONDS + 30)], ids=["sigterm", "sigkill"]
)
async def test_one_replica_acts_and_the_other_takes_over_without_a_second_job(
    control_plane, cluster_admin, namespace, tmp_path, how, within
):
    applied = control_plane.kubectl("apply", "-f", str(CHART / "crds" / "kopf-peering.yaml"))
    assert applied.returncode == 0, applied.stderr
    established = control_plane.kubectl(
        "wait", "--for=condition=Established", "crd/kopfpeerings.kopf.dev", "--timeout=60s"
    )
    assert established.returncode == 0, established.stderr
    cluster_admin.request(
        "POST",
        path("KopfPeering", namespace),
        {"apiVersion": "kopf.dev/v1", "kind": "KopfPeering", "metadata": {"name": PEERING}},
    )
    logs = {name: tmp_path / f"{name}.log" for name in ("first", "second")}

    def acting(log) -> bool:
        """Whether kopf's last word on peering in this log was to resume."""
        lines = [line for line in log.read_text().splitlines() if "peering:" in line]
        return bool(lines) and RESUMED in lines[-1]

    def started(name: str) -> bool:
        return STARTED in logs[name].read_text()

    def job(name: str) -> dict | None:
        return cluster_admin.get("Job", namespace, naming.job_name(name))

    with replica(control_plane, namespace, "first", 100, logs["first"]) as first:
        await eventually(lambda: acting(logs["first"]), "the first replica acts", timeout=60)
        with replica(control_plane, namespace, "second", 50, logs["second"]):
            # It starts paused and, seeing a peer of higher priority, stays so.
            await asyncio.sleep(3)
            assert not acting(logs["second"])
            submit(cluster_admin, namespace, "one")
            status = await eventually(
                lambda: (cluster_admin.get(resource.KIND, namespace, "one") or {}).get("status"),
                "the new resource gets a status",
            )
            assert status["phase"] == "created" and job("one")
            await eventually(lambda: started("first"), "the active replica handled it")
            assert not started("second")
            first_job = job("one")["metadata"]["uid"]

            how(first)
            stopped = time.monotonic()
            submit(cluster_admin, namespace, "two")
            await eventually(
                lambda: (cluster_admin.get(resource.KIND, namespace, "two") or {}).get("status"),
                "the standby replica takes over",
                timeout=90,
            )
            handover = time.monotonic() - stopped
            await eventually(lambda: started("second"), "the standby handled it")
    print(f"handover after {how.__name__} took {handover:.1f} s")
    assert handover < within
    jobs = cluster_admin.list_objects("Job", namespace, naming.MANAGED_SELECTOR)
    assert sorted(j["metadata"]["name"] for j in jobs) == [
        naming.job_name("one"),
        naming.job_name("two"),
    ]
    assert job("one")["metadata"]["uid"] == first_job  # never made twice


async def test_the_charts_two_replicas_on_the_real_node_keep_one_active_and_hand_over(
    control_plane, cluster_admin, namespace, real_node, host_s3
):
    """The chart's own two-replica Deployment (peering.enabled, replicaCount 2) on the real
    kubelet: both pods run, one acts, and when its pod is deleted (the kubelet's SIGTERM) a
    live replica takes over; every resource gets exactly one Job."""
    kube, plane = cluster_admin, control_plane
    set_quota(kube, namespace, "no-pods", {"pods": "0"})  # Jobs, not trainers, are the point
    release_namespace = f"{namespace}-ops"
    create_namespace(kube, release_namespace, RESTRICTED)
    values = [
        *chart_values(host_s3, "loras", [namespace], (REAL_NODE_TOLERATION,)),
        "--set", "gateway.enabled=false",
        "--set", "peering.enabled=true", "--set", "replicaCount=2",
        "--set", f"peering.lifetimeSeconds={LIFETIME_SECONDS}",
    ]  # fmt: skip
    installed = helm(
        "install", "fluxlora", str(CHART), "--namespace", release_namespace,
        "--wait", "--timeout", "180s", *values, kubeconfig=plane.kubeconfig,
    )  # fmt: skip
    assert installed.returncode == 0, installed.stderr

    def replicas() -> dict[str, str]:
        """Each live operator pod's log, by pod name."""
        pods = kube.list_objects("Pod", release_namespace, "app.kubernetes.io/component=operator")
        return {
            pod["metadata"]["name"]: plane.kubectl(
                "logs", "-n", release_namespace, pod["metadata"]["name"]
            ).stdout
            for pod in pods
            if not pod["metadata"].get("deletionTimestamp")
        }

    def acting(log: str) -> bool:
        lines = [line for line in log.splitlines() if "peering:" in line]
        return bool(lines) and RESUMED in lines[-1]

    def job(name: str) -> dict | None:
        return kube.get("Job", namespace, naming.job_name(name))

    try:
        logs = await eventually(
            lambda: (found := replicas()) and sum(map(acting, found.values())) == 1 and found,
            "exactly one of the two replicas acts",
            timeout=90,
        )
        assert len(logs) == 2 and all(
            pod["spec"]["nodeName"] == real_node.name
            for pod in kube.list_objects("Pod", release_namespace, "")
        )
        (active,) = [name for name, log in logs.items() if acting(log)]
        (standby,) = [name for name in logs if name != active]
        submit(kube, namespace, "one")
        await eventually(lambda: job("one"), "the active replica makes the Job")
        assert STARTED in replicas()[active] and STARTED not in replicas()[standby]
        first_job = job("one")["metadata"]["uid"]

        deleted = plane.kubectl("delete", "pod", "-n", release_namespace, active, "--wait=false")
        assert deleted.returncode == 0, deleted.stderr
        # Until its pod is gone the deleted replica may still act (it stops within its grace
        # period), so the next resource comes once it is gone: then only a live one can act.
        await eventually(
            lambda: kube.get("Pod", release_namespace, active) is None,
            "the active replica's pod is gone",
            timeout=60,
        )
        submit(kube, namespace, "two")
        await eventually(lambda: job("two"), "a live replica takes over", timeout=90)
        # The standby, or the Deployment's new pod if kopf's random priority ranks it higher.
        made_two = [
            name
            for name, log in replicas().items()
            if any(STARTED in line and "two" in line for line in log.splitlines())
        ]
        assert made_two and active not in made_two
    finally:
        uninstalled = uninstall(kube, plane.kubeconfig, release_namespace)
    assert uninstalled.returncode == 0, uninstalled.stderr
    jobs = kube.list_objects("Job", namespace, naming.MANAGED_SELECTOR)
    assert sorted(j["metadata"]["name"] for j in jobs) == [
        naming.job_name("one"),
        naming.job_name("two"),
    ]
    assert job("one")["metadata"]["uid"] == first_job  # never made twice
