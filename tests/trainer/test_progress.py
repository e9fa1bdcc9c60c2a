"""Progress reaches the resource's status at most every few seconds; a failed patch never stops
training."""

import asyncio

import kmock

from fluxlora_api import resource
from fluxlora_operator.kube import path
from fluxlora_trainer.progress import ProgressReporter, StatusTarget, progress_line
from fluxlora_trainer.train_loop import StepReport
from tests.handlers.conftest import NAMESPACE, SETTINGS, make_cluster
from tests.objects import training_job


def report(step: int, total: int = 1000) -> StepReport:
    return StepReport(step, total, 0.5, 0.25, step * 1.0, (total - step) * 1.0)


def test_the_log_line_has_a_bar_the_step_the_loss_and_the_eta():
    assert progress_line(report(250)) == (
        "[#######-----------------------] step 250/1000 loss 0.2500 eta 0:12:30"
    )


async def test_progress_is_patched_into_the_status_throttled(apiserver, tmp_path):
    cluster = make_cluster(apiserver, SETTINGS)
    body = training_job(namespace=NAMESPACE)
    await cluster.apply(body)
    token = tmp_path / "token"
    token.write_text("service-account-token")
    url = str(apiserver.url).rstrip("/") + path(resource.KIND, NAMESPACE, "portrait", "status")
    reporter = ProgressReporter(StatusTarget(url, token, tmp_path / "ca.crt"))

    for step in range(1, 6):  # five steps within the patch interval: one patch
        await asyncio.to_thread(reporter, report(step, 10))
    progress = (await cluster.status("portrait"))["progress"]
    assert (progress["step"], progress["totalSteps"], progress["loss"]) == (1, 10, 0.25)
    assert progress["etaSeconds"] == 9 and progress["updatedAt"].endswith("Z")

    await asyncio.to_thread(reporter, report(10, 10))  # the last step is always recorded
    assert (await cluster.status("portrait"))["progress"]["step"] == 10
    assert len(apiserver[kmock.method.PATCH]) == 2


def test_an_unreachable_api_server_never_stops_training(tmp_path):
    token = tmp_path / "token"
    token.write_text("t")
    reporter = ProgressReporter(
        StatusTarget("http://127.0.0.1:9/status", token, tmp_path / "ca.crt")
    )
    reporter(report(1, 10))  # logs a warning, raises nothing
    reporter(report(10, 10))


def test_a_local_run_has_nothing_to_patch(monkeypatch):
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    assert StatusTarget.from_environment() is None
