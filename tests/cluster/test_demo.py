"""`make demo` as a user runs it: the kept demo stops on Ctrl-C within seconds and leaves no
process behind; a demo whose operator cannot start says why within seconds and fails."""

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from fluxlora_localcluster.node import cgroup_processes

ROOT = Path(__file__).resolve().parents[2]
STOP_SECONDS = 30

pytestmark = pytest.mark.timeout(600)


def process_tree(root: int) -> dict[int, str]:
    """Every process descended from `root` (itself included): pid -> its start time, which
    tells a process from a later one given the same pid."""
    parents, started = {}, {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            parents[int(entry.name)], started[int(entry.name)] = int(fields[1]), fields[19]
    tree, frontier = {root}, [root]
    while frontier:
        children = [pid for pid, parent in parents.items() if parent in frontier]
        tree.update(children)
        frontier = children
    return {pid: started[pid] for pid in tree if pid in started}


def with_node_processes(processes: dict[int, str]) -> dict[int, str]:
    """`processes` and every process of the nodes among them (containerd's shims leave their
    parent, so a node's containers are found by its cgroup)."""
    cgroups = set()
    for pid in processes:
        try:
            lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
        except OSError:
            continue
        for line in lines:
            _, controllers, path = line.split(":", 2)
            if controllers == "pids" and path.startswith("/fluxlora/"):
                cgroups.add("/".join(path.split("/")[1:3]))  # fluxlora/<node>-<slot>
    found = dict(processes)
    for cgroup in cgroups:
        for pid in cgroup_processes(cgroup):
            found.update(process_tree(pid))
    return found


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""  # it has ended


def still_running(processes: dict[int, str]) -> list[str]:
    left = []
    for pid, started in processes.items():
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and fields[19] == started:  # not a zombie, not a reused pid
            left.append(f"{pid} ({fields[0]}): {command_line(pid)[:200]}")
    return left


def left_behind(processes: dict[int, str], seconds: float = 5) -> list[str]:
    """Those of `processes` still running `seconds` after the demo has ended: a container the
    node killed last may still be freeing its memory as the demo exits (no command line left
    in /proc, not yet a zombie); what was left behind is still there."""
    deadline = time.monotonic() + seconds
    while (left := still_running(processes)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


def start_demo(*flags: str) -> subprocess.Popen:
    """`make demo` in a process group of its own, as a terminal's foreground job is."""
    return subprocess.Popen(
        ["make", "--no-print-directory", "demo", f"DEMO_FLAGS={' '.join(flags)}"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        process_group=0,
    )


def read_until(demo: subprocess.Popen, wanted: str, seconds: float) -> list[str]:
    lines, deadline = [], time.monotonic() + seconds
    for line in demo.stdout:
        lines.append(line)
        if wanted in line or time.monotonic() > deadline:
            break
    assert lines and wanted in lines[-1], "".join(lines[-60:])
    return lines


def test_ctrl_c_stops_the_kept_demo_within_seconds_leaving_nothing_running():
    demo = start_demo("--keep")
    try:
        # Mid-training, when the most is running: the servers, the node with the operator's,
        # gateway's and trainer's containers, and kubectl's watch.
        read_until(demo, "$ kubectl -n demo get ltj -w", seconds=300)
        read_until(demo, " processing ", seconds=120)
        started = with_node_processes(process_tree(demo.pid))
        commands = " ".join(command_line(pid) for pid in started)
        for program in ("kube-apiserver", "etcd", "minio", "containerd-shim", "kubelet",
                        "fluxlora-operator", "fluxlora-gateway", "fluxlora-trainer"):  # fmt: skip
            assert program in commands
        os.killpg(demo.pid, signal.SIGINT)
        sent = time.monotonic()
        rest = demo.communicate(timeout=STOP_SECONDS)[0]
        took = time.monotonic() - sent
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
    assert took < STOP_SECONDS
    assert "stopping everything the demo started" in rest
    assert "stopped the node and its pods, MinIO and the control plane in" in rest
    assert "Traceback" not in rest, rest
    assert left_behind(started) == []


def test_a_demo_whose_operator_cannot_start_says_why_and_fails():
    # A setting with a value it cannot take: the operator refuses to start and says which.
    demo = start_demo("--set extraEnv[0].name=FLUXLORA_GPUS --set extraEnv[0].value=some")
    try:
        output = demo.communicate(timeout=480)[0]
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
    assert demo.returncode != 0
    assert "$ helm install" in output, output[-4000:]  # it got as far as installing
    tail = output[output.index("$ helm install") :]
    assert "a pod of the release has stopped" in tail, tail
    # Exited on its own (as the current state, or the last one once the kubelet restarts it).
    assert re.search(r"container operator: (last )?terminated \(reason Error", tail), tail
    assert "FLUXLORA_GPUS: Input should be a valid integer" in tail, tail
    assert "stopped the node and its pods, MinIO and the control plane" in tail
