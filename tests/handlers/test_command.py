"""`fluxlora-operator`, the installed command, as a process: settings from the environment,
credentials from a kubeconfig (for both the client and kopf), and a clean stop on SIGTERM."""

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from fluxlora_operator import naming
from tests.handlers.conftest import SETTINGS, make_cluster
from tests.handlers.test_operator import submit
from tests.support.waiting import eventually

pytestmark = pytest.mark.timeout(90)


def kubeconfig(path: Path, server: str) -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "test", "cluster": {"server": server}}],
                "users": [{"name": "test", "user": {"token": "not-checked"}}],
                "contexts": [{"name": "test", "context": {"cluster": "test", "user": "test"}}],
                "current-context": "test",
            }
        )
    )
    return path


async def test_the_command_runs_the_operator_with_a_kubeconfig(apiserver, tmp_path):
    env = {
        **os.environ,
        "KUBECONFIG": str(kubeconfig(tmp_path / "config", str(apiserver.url).rstrip("/"))),
        "FLUXLORA_DEFAULT_OUTPUT": "s3://loras",
        "FLUXLORA_METRICS_PORT": "0",
        "FLUXLORA_HEALTH_PORT": "0",
        "FLUXLORA_PROGRESS_PORT": "0",
    }
    command = Path(sys.executable).parent / "fluxlora-operator"
    process = subprocess.Popen(
        [str(command)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        cluster = make_cluster(apiserver, SETTINGS)  # the test's own client
        await submit(cluster)

        async def job_created():
            """the operator process created the trainer Job"""
            return await cluster.get("Job", naming.job_name("portrait"))

        async def created():
            """the operator process wrote the first status (its own call, after the Job's)"""
            return (await cluster.status("portrait")).get("phase") == "created"

        await eventually(job_created, timeout=30)
        await eventually(created, timeout=30)
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = await asyncio.to_thread(process.communicate, timeout=30)
    assert process.returncode == 0, output
    assert "Traceback" not in output, output
