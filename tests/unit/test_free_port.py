"""The tests' servers get ports that outgoing connections never take: below the ephemeral
range, and free on every address."""

import socket
from pathlib import Path

from fluxlora_localcluster import minio
from fluxlora_localcluster.minio import SERVER_PORTS, free_port


def test_a_free_port_is_outside_the_ephemeral_range_and_can_be_bound_on_any_address():
    low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    ports = {free_port() for _ in range(20)}
    assert len(ports) > 1  # chosen at random, not handed out in order
    for port in ports:
        assert port in SERVER_PORTS and not low <= port <= high
        with socket.socket() as server:
            server.bind(("0.0.0.0", port))


def test_a_port_in_use_is_passed_over(monkeypatch):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", free_port()))  # in use on one address only
        taken.listen()
        busy, other = taken.getsockname()[1], free_port()
        monkeypatch.setattr(minio, "_handed_out", set())  # `other` is as yet unclaimed
        draws = iter([busy, busy, other])
        monkeypatch.setattr(minio._choice, "choice", lambda ports: next(draws))
        assert free_port() == other


def test_a_port_is_handed_out_once_so_a_servers_ports_never_collide(monkeypatch):
    """etcd's client and peer ports are both chosen before it binds either."""
    port, other = free_port(), free_port()
    monkeypatch.setattr(minio, "_handed_out", set())
    draws = iter([port, port, other])
    monkeypatch.setattr(minio._choice, "choice", lambda ports: next(draws))
    assert (free_port(), free_port()) == (port, other)
