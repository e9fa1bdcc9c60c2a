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


def filled_store(folder, name: str, taken_days_ago: float):
    """A store as containerd leaves it: a blob, an unpacked layer with a folder owned by the
    image's user, and the databases it rewrites in place."""
    path = store(folder, name, taken_days_ago)
    root = path / "root"
    blob = root / "io.containerd.content.v1.content" / "blobs" / "sha256" / "abc"
    layer = root / "io.containerd.snapshotter.v1.overlayfs" / "snapshots" / "1" / "fs" / "home"
    for folder_ in (blob.parent, layer):
        folder_.mkdir(parents=True)
    blob.write_bytes(b"compressed layer")
    os.chown(layer, 1000, 1000)
    (layer / "app.py").write_text("print('hi')")
    for database in ("io.containerd.metadata.v1.bolt/meta.db",
                     "io.containerd.snapshotter.v1.overlayfs/metadata.db"):  # fmt: skip
        (root / database).parent.mkdir(parents=True, exist_ok=True)
        (root / database).write_bytes(b"bolt " + name.encode())
    return path


def test_a_new_store_is_made_from_the_idle_store_taken_last_sharing_its_layers(
    tmp_path, monkeypatch
):
    monkeypatch.setattr(node, "CACHE", tmp_path)
    nodes = tmp_path / "nodes"
    nodes.mkdir()
    filled_store(nodes, "gpu-node-1-1", taken_days_ago=1)  # idle, but taken before the next
    newest = filled_store(nodes, "gpu-node-2-1", taken_days_ago=0.5)
    held = filled_store(nodes, "gpu-node-3-1", taken_days_ago=0)
    with (held / "lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a running node's: not copied
        with node._free_store("gpu-node-4") as made:  # a name with no store yet
            assert made == nodes / "gpu-node-4-1"
    root, source = made / "root", newest / "root"  # the idle one taken last
    shared = [
        "io.containerd.content.v1.content/blobs/sha256/abc",
        "io.containerd.snapshotter.v1.overlayfs/snapshots/1/fs/home/app.py",
    ]
    for part in shared:  # the same files: no second copy on the disk
        assert (root / part).stat().st_ino == (source / part).stat().st_ino
    home = root / "io.containerd.snapshotter.v1.overlayfs/snapshots/1/fs/home"
    assert (home.stat().st_uid, home.stat().st_gid) == (1000, 1000)
    for database in ("io.containerd.metadata.v1.bolt/meta.db",
                     "io.containerd.snapshotter.v1.overlayfs/metadata.db"):  # fmt: skip
        assert (root / database).read_bytes() == b"bolt gpu-node-2-1"
        assert (root / database).stat().st_ino != (source / database).stat().st_ino
    assert not (made / "root.seeding").exists()
