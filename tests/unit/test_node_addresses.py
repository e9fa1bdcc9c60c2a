"""A node's pods get their addresses from the real host-local plugin, recorded in the node's own
folder: addresses a stopped node never released do not exhaust the pod range of the next node
given the same range."""

import json
import os
import subprocess
from pathlib import Path

from fluxlora_localcluster.node import CNI_PLUGINS, _cni_config
from fluxlora_localcluster.node_network import NodeLink

LINK = NodeLink(slot=7)
USABLE_ADDRESSES = 253  # a /24 less its network, gateway and broadcast addresses


def add_pod(addresses: Path, pod: str) -> subprocess.CompletedProcess:
    """What containerd asks of the pod network's address manager when it starts a pod."""
    bridge = _cni_config(LINK, addresses)["plugins"][0]
    network = {"cniVersion": "1.0.0", "name": "pods", "type": "bridge", "ipam": bridge["ipam"]}
    environment = {
        **os.environ,
        "CNI_COMMAND": "ADD",
        "CNI_CONTAINERID": pod,
        "CNI_NETNS": "/run/netns/unused",
        "CNI_IFNAME": "eth0",
        "CNI_PATH": CNI_PLUGINS,
    }
    return subprocess.run(
        [f"{CNI_PLUGINS}/host-local"],
        input=json.dumps(network),
        env=environment,
        capture_output=True,
        text=True,
        check=False,
    )


def address(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout)["ips"][0]["address"]


def test_a_new_node_starts_with_its_whole_pod_range_whatever_an_earlier_one_leaked(tmp_path):
    earlier, later = tmp_path / "earlier-node", tmp_path / "later-node"
    given = [address(add_pod(earlier, f"pod-{n}")) for n in range(USABLE_ADDRESSES)]
    assert len(set(given)) == USABLE_ADDRESSES
    assert all(a.startswith("10.244.7.") for a in given)
    # The earlier node was stopped with all its pods on it: its range is used up ...
    exhausted = add_pod(earlier, "one-more")
    assert exhausted.returncode != 0 and "no IP addresses available" in exhausted.stdout
    # ... and the next node on the same range is not affected.
    assert address(add_pod(later, "pod-0")) == given[0]
    assert (later / "pods" / given[0].split("/")[0]).read_text().startswith("pod-0")
