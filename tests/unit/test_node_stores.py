"""The real node's image stores (one per node running at once, gigabytes each): a store no node
has taken for days is deleted; one a node holds, or took lately, is kept. A node is not
started on a disk too full for its kubelet to admit pods."""

import fcntl
import os
import shutil
import time

import pytest

from fluxlora_localcluster import node
from fluxlora_localcluster.node import remove_stale_stores

DAY = 86400


def store(folder, name: str, taken_days_ago: float):
    path = folder / name
    path.mkdir()
    (path / "root").mkdir()
    (path / "root" / "layer").write_bytes(b"unpacked image")
    lock = path / "lock"
    lock.touch()
    taken = time.time() - taken_days_ago * DAY
    os.utime(lock, (taken, taken))
    return path


def test_only_stores_unused_for_days_and_held_by_no_node_are_deleted(tmp_path):
    stale = store(tmp_path, "gpu-node-2-3", taken_days_ago=5)
    held = store(tmp_path, "gpu-node-2-2", taken_days_ago=5)
    recent = store(tmp_path, "gpu-node-2-1", taken_days_ago=0.5)
    with (held / "lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a running node holds it
        removed = remove_stale_stores(tmp_path, time.time() - 3 * DAY)
    assert removed == [stale]
    assert not stale.exists()
    assert (held / "root" / "layer").exists() and (recent / "root" / "layer").exists()


def test_a_node_is_not_started_on_a_nearly_full_disk(tmp_path, monkeypatch):
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(node.shutil, "disk_usage", lambda path: usage._replace(free=1 << 29))
    with pytest.raises(RuntimeError, match=r"only 0\.5 GiB free on the disk of .*: a node needs 3"):
        node._check_disk(tmp_path)
