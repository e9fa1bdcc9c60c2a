"""`fluxlora-operator`, the installed command, as a process: settings from the environment,
credentials from a kubeconfig (for both the client and kopf), and a clean stop on SIGTERM."""

import pytest

from fluxlora_localcluster.kubeconfig import write_kubeconfig
from fluxlora_localcluster.operator import operator_process
from fluxlora_localcluster.waiting import eventually
from fluxlora_operator import naming
from tests.handlers.conftest import SETTINGS, make_cluster

pytestmark = pytest.mark.timeout(90)


async def test_the_command_runs_the_operator_with_a_kubeconfig(apiserver, tmp_path):
    server = str(apiserver.url).rstrip("/")
    config = write_kubeconfig(tmp_path / "config", server, "not-checked")
    log = tmp_path / "operator.log"
    environment = {"FLUXLORA_DEFAULT_OUTPUT": "s3://loras"}
    with operator_process(config, environment, log) as process:
        cluster = make_cluster(apiserver, SETTINGS)  # the test's own client
        await cluster.submit()

        async def job_created():
            """the operator process created the trainer Job"""
            return await cluster.get("Job", naming.job_name("portrait"))

        async def created():
            """the operator process wrote the first status (its own call, after the Job's)"""
            return (await cluster.status("portrait")).get("phase") == "created"

        await eventually(job_created, timeout=30)
        await eventually(created, timeout=30)
    # Stopped with SIGTERM, as the kubelet stops a pod: a clean exit.
    output = log.read_text()
    assert process.returncode == 0, output
    assert "Traceback" not in output, output
