"""A local server that cannot start says which it is and why, in its own words."""

import socket
import time

import pytest

from fluxlora_localcluster import control_plane
from fluxlora_localcluster.control_plane import running_control_plane
from fluxlora_localcluster.minio import free_port
from fluxlora_localcluster.processes import ServerFailed


def test_a_control_plane_whose_etcd_cannot_start_names_it_and_quotes_its_log(tmp_path, monkeypatch):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", free_port()))
        taken.listen()
        ports = iter([taken.getsockname()[1], free_port(), free_port()])  # etcd's client port
        monkeypatch.setattr(control_plane, "free_port", lambda: next(ports))
        began = time.monotonic()
        with pytest.raises(ServerFailed) as failure, running_control_plane(tmp_path / "plane"):
            pass
    # within seconds, not after the API server's grace period for a stop (20 s)
    assert time.monotonic() - began < 10
    message = str(failure.value)
    assert message.startswith("etcd exited with code 1 while starting; the end of its log")
    assert "address already in use" in message
