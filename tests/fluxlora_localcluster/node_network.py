"""The network between this machine and its test nodes, as between hosts: each node is a network
namespace of its own (its kubelet, kube-proxy, containerd and pods live there, so two nodes never
share ports or iptables rules), joined to this machine by a veth pair. The servers on this
machine (API server, MinIO) are reached from nodes and pods at HOST_ADDRESS, an address of this
machine's loopback interface (so it exists before any node does; a packet from a node's link to
it is delivered here like any to a local address)."""

import fcntl
import subprocess
from dataclasses import dataclass
from pathlib import Path

HOST_ADDRESS = "10.200.0.1"
HOST_INTERFACE = "lo"
NAMESPACE_PREFIX = "fluxlora-node-"
SLOTS = range(1, 250)  # the third octet of each node's link and pod ranges
LOCK = Path("/run/fluxlora-node-network.lock")


class NetworkUnavailable(RuntimeError):
    pass


def _ip(*args: str, namespace: str | None = None, check: bool = True) -> str:
    command = ["ip", *(["-n", namespace] if namespace else []), *args]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        raise NetworkUnavailable(f"{' '.join(command)}: {done.stderr.strip()}")
    return done.stdout


def ensure_host_address() -> str:
    """HOST_ADDRESS on this machine (once; later calls find it)."""
    with LOCK.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if f" {HOST_ADDRESS}/32" not in _ip("-br", "addr", "show", HOST_INTERFACE):
            _ip("addr", "add", f"{HOST_ADDRESS}/32", "dev", HOST_INTERFACE)
    return HOST_ADDRESS


@dataclass(frozen=True)
class NodeLink:
    """One node's place on the network."""

    slot: int

    @property
    def namespace(self) -> str:
        return f"{NAMESPACE_PREFIX}{self.slot}"

    @property
    def host_side(self) -> str:
        return f"flxh{self.slot}"

    @property
    def node_address(self) -> str:
        return f"10.201.{self.slot}.2"

    @property
    def gateway(self) -> str:
        return f"10.201.{self.slot}.1"

    @property
    def pod_range(self) -> str:
        return f"10.244.{self.slot}.0/24"

    @property
    def namespace_path(self) -> str:
        return f"/run/netns/{self.namespace}"


def create_link() -> NodeLink:
    """A new network namespace for a node, with its veth, addresses and routes: the node reaches
    this machine (and HOST_ADDRESS) through the veth; this machine reaches the node's pods
    through the node."""
    ensure_host_address()
    with LOCK.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        taken = {line.split()[0] for line in _ip("netns", "list").splitlines() if line.strip()}
        slot = next(s for s in SLOTS if f"{NAMESPACE_PREFIX}{s}" not in taken)
        link = NodeLink(slot)
        _ip("netns", "add", link.namespace)
    try:
        _ip(
            "link",
            "add",
            link.host_side,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            link.namespace,
        )
        _ip("addr", "add", f"{link.gateway}/24", "dev", link.host_side)
        _ip("link", "set", link.host_side, "up")
        _ip("route", "add", link.pod_range, "via", link.node_address)
        _ip("link", "set", "lo", "up", namespace=link.namespace)
        _ip("addr", "add", f"{link.node_address}/24", "dev", "eth0", namespace=link.namespace)
        _ip("link", "set", "eth0", "up", namespace=link.namespace)
        _ip("route", "add", "default", "via", link.gateway, namespace=link.namespace)
        # The node forwards between its pods' bridge and its link, and its bridged traffic
        # passes iptables (kube-proxy's Service rules), as on any Kubernetes node.
        for key in ("net.ipv4.ip_forward", "net.bridge.bridge-nf-call-iptables"):
            subprocess.run(
                ["ip", "netns", "exec", link.namespace, "sysctl", "-qw", f"{key}=1"],
                check=True,
                capture_output=True,
            )
    except BaseException:
        remove_link(link)
        raise
    return link


def remove_link(link: NodeLink) -> None:
    """The namespace goes, and its veth (and the route through it) with it."""
    _ip("netns", "delete", link.namespace, check=False)
    _ip("link", "delete", link.host_side, check=False)
