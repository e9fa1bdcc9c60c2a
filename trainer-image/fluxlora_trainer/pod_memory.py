"""The memory the trainer's container may use: its cgroup's limit (the pod's
resources.limits.memory), read the way both cgroup versions expose it."""

from pathlib import Path

CGROUP_V2_LIMIT = Path("/sys/fs/cgroup/memory.max")
CGROUP_V1_LIMIT = Path("/sys/fs/cgroup/memory/memory.limit_in_bytes")
# cgroup v1 reports "no limit" as a huge page-aligned number rather than a word.
UNLIMITED_V1 = 1 << 60


def memory_limit_bytes(v2: Path = CGROUP_V2_LIMIT, v1: Path = CGROUP_V1_LIMIT) -> int | None:
    """The container's memory limit in bytes, or None when it has none (or it cannot be read)."""
    for path in (v2, v1):
        try:
            text = path.read_text().strip()
        except OSError:
            continue
        if text == "max":
            return None
        value = int(text)
        return None if value >= UNLIMITED_V1 else value
    return None
