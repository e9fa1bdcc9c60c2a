"""The operator in tests: embedded as kopf documents it (its own thread and event loop, stopped
by a flag, run with the options `fluxlora-operator` derives from its settings), or as the
installed command in a process of its own."""

import asyncio
import contextlib
import os
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import kopf

from fluxlora_kube.client import Kube
from fluxlora_localcluster.processes import stop
from fluxlora_operator.events import EventPoster
from fluxlora_operator.handlers import register
from fluxlora_operator.main import operator_options
from fluxlora_operator.metrics import Metrics
from fluxlora_operator.reconciler import Reconciler
from fluxlora_operator.settings import ENV_PREFIX, OperatorSettings, load_settings


def settings_from(environment: dict[str, str]) -> OperatorSettings:
    """The settings an operator process started with `environment` (FLUXLORA_* variables) would
    read, for an embedded operator: each variable passed as its flag, which the same parsers
    read (and flags win over the test process's own environment)."""
    flags = [
        f"--{name.removeprefix(ENV_PREFIX).lower().replace('_', '-')}={value}"
        for name, value in environment.items()
        if name.startswith(ENV_PREFIX)
    ]
    return load_settings(flags)


@contextlib.asynccontextmanager
async def embedded_operator(
    kube: Kube, connection: kopf.ConnectionInfo, settings: OperatorSettings, scanning: bool = True
) -> AsyncIterator[tuple[Reconciler, Metrics]]:
    metrics = Metrics()
    reconciler = Reconciler(kube, settings, metrics, EventPoster(kube))
    registry = kopf.OperatorRegistry()
    register(registry, reconciler, settings)

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        return connection

    if not scanning:

        @kopf.on.startup(registry=registry)
        def no_crd_scanning(settings: kopf.OperatorSettings, **_: Any) -> None:
            settings.scanning.disabled = True  # an API without CRD and Namespace objects

    stop, ready = threading.Event(), threading.Event()
    options = operator_options(settings.model_copy(update={"health_port": 0}))
    operator = kopf.operator(registry=registry, stop_flag=stop, ready_flag=ready, **options)
    thread = threading.Thread(target=asyncio.run, args=(operator,), daemon=True)
    thread.start()
    assert await asyncio.to_thread(ready.wait, 30), "the operator did not start"
    try:
        yield reconciler, metrics
    finally:
        stop.set()
        await asyncio.to_thread(thread.join, 30)
    assert not thread.is_alive(), "the operator did not stop"


@contextlib.contextmanager
def operator_process(kubeconfig: Path, environment: dict[str, str], log: Path) -> Iterator:
    """The installed `fluxlora-operator` command as a process of its own (as in a pod), with
    FLUXLORA_* settings from `environment`; its output goes to `log`."""
    command = [str(Path(sys.executable).parent / "fluxlora-operator")]
    quiet = ("METRICS_PORT", "HEALTH_PORT", "PROGRESS_PORT")  # 0: no server on a shared port
    settings = {**{f"FLUXLORA_{name}": "0" for name in quiet}, **environment}
    with log.open("wb") as output:
        process = subprocess.Popen(
            command,
            env={**os.environ, **settings, "KUBECONFIG": str(kubeconfig)},
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        try:
            yield process
        finally:
            stop(process)
