"""Progress goes to the operator's endpoint at most every few seconds, with the pod's token; a
failed report never stops training."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import pytest

from fluxlora_api.contract import (
    PROGRESS_PATH,
    PROGRESS_SECONDS_DEFAULT,
    PROGRESS_SECONDS_ENV,
    PROGRESS_SECONDS_MIN,
)
from fluxlora_trainer import progress
from fluxlora_trainer.progress import (
    ProgressReporter,
    ProgressTarget,
    progress_line,
    report_interval,
)
from fluxlora_trainer.train_loop import StepReport


def report(step: int, total: int = 1000) -> StepReport:
    return StepReport(step, total, 0.5, 0.25, step * 1.0, (total - step) * 1.0)


@pytest.fixture
def endpoint():
    """An HTTP server that records what it is sent."""
    received: list[tuple[str, str, dict]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((self.path, self.headers["Authorization"], json.loads(body)))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", received
    server.shutdown()


def test_the_log_line_has_a_bar_the_step_the_loss_and_the_eta():
    assert progress_line(report(250)) == (
        "[#######-----------------------] step 250/1000 loss 0.2500 eta 0:12:30"
    )


def test_progress_is_reported_with_the_pods_token_throttled(endpoint, tmp_path):
    url, received = endpoint
    token = tmp_path / "token"
    token.write_text("pod-bound-token\n")
    reporter = ProgressReporter(ProgressTarget(url + PROGRESS_PATH, token))

    for step in range(1, 6):  # five steps within the report interval: one report
        reporter(report(step, 10))
    token.write_text("rotated-token")  # the kubelet rotates the file: read it afresh
    reporter(report(10, 10))  # the last step is always reported
    reporter.close()
    assert [(path, auth) for path, auth, _ in received] == [
        (PROGRESS_PATH, "Bearer pod-bound-token"),
        (PROGRESS_PATH, "Bearer rotated-token"),
    ]
    assert received[0][2] == {"step": 1, "totalSteps": 10, "loss": 0.25, "etaSeconds": 9}
    assert received[1][2]["step"] == 10


def test_an_unreachable_operator_never_stops_training(tmp_path):
    token = tmp_path / "token"
    token.write_text("t")
    reporter = ProgressReporter(ProgressTarget("http://127.0.0.1:9/progress", token))
    reporter(report(1, 10))  # logs a warning, raises nothing
    reporter(report(10, 10))
    reporter.close()


def test_a_slow_operator_never_holds_a_step(tmp_path):
    """The report goes out on its own thread: the step's call returns while the endpoint is
    still answering, and the reports meanwhile are left out rather than queued."""
    answer = threading.Event()
    received = []

    class Slow(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            answer.wait(30)
            received.append(json.loads(body)["step"])
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Slow)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    token = tmp_path / "token"
    token.write_text("t")
    url = f"http://127.0.0.1:{server.server_address[1]}{PROGRESS_PATH}"
    reporter = ProgressReporter(ProgressTarget(url, token))
    try:
        reporter(report(1, 10))
        reporter.last_report = 0.0  # as if the report interval had passed
        reporter(report(2, 10))  # the first is still being answered: left out
        assert received == []  # both calls returned before the endpoint answered
        reporter(report(10, 10))  # the last step's report waits its turn
        answer.set()
        reporter.close()
        assert received == [1, 10]
    finally:
        answer.set()
        server.shutdown()


def test_reports_come_at_the_operators_interval(endpoint, tmp_path, monkeypatch):
    url, received = endpoint
    token = tmp_path / "token"
    token.write_text("t")
    clock = iter([100.0, 100.5, 101.1, 101.5, 102.2])  # step 2 half a second after step 1, ...
    monkeypatch.setattr(progress, "time", SimpleNamespace(monotonic=lambda: next(clock)))
    reporter = ProgressReporter(ProgressTarget(url + PROGRESS_PATH, token, interval=1.0))
    for step in range(1, 6):
        reporter(report(step))
        reporter.close()  # each report sent before the next step, as on a quiet endpoint
    assert [body["step"] for _, _, body in received] == [1, 3, 5]


@pytest.mark.parametrize(
    ("given", "interval"),
    [
        (None, PROGRESS_SECONDS_DEFAULT),
        ("2.5", 2.5),
        ("0.2", PROGRESS_SECONDS_MIN),  # more often than the endpoint accepts
        ("soon", PROGRESS_SECONDS_DEFAULT),
    ],
)
def test_the_interval_is_the_operators_never_under_what_its_endpoint_takes(
    given, interval, monkeypatch
):
    if given is None:
        monkeypatch.delenv(PROGRESS_SECONDS_ENV, raising=False)
    else:
        monkeypatch.setenv(PROGRESS_SECONDS_ENV, given)
    assert report_interval() == interval


def test_without_an_endpoint_progress_is_only_logged(monkeypatch):
    monkeypatch.delenv("FLUXLORA_PROGRESS_URL", raising=False)
    assert ProgressTarget.from_environment() is None


def test_a_stored_snapshot_goes_with_the_next_report_until_one_is_recorded(tmp_path):
    """The first report carrying it is refused (the endpoint's rate limit): the next carries
    it again, and close() sends what is left."""
    received: list[dict] = []
    answers = iter([204, 429])

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(next(answers, 204))
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    token = tmp_path / "token"
    token.write_text("pod-bound-token")
    url = f"http://127.0.0.1:{server.server_address[1]}{PROGRESS_PATH}"
    reporter = ProgressReporter(ProgressTarget(url, token))
    reporter(report(1, 10))
    reporter.close()
    reporter.snapshot(5, 0.123456789)
    reporter(report(6, 10))  # refused: 429
    reporter.close()
    reporter.snapshot(8, None, samples=2)
    reporter(report(9, 10))  # records step 5's snapshot
    reporter.close()  # then step 8's
    server.shutdown()
    snapshots = [body.get("snapshot") for body in received]
    first = {"step": 5, "loss": 0.123457, "samples": 0}
    assert snapshots == [None, first, first, {"step": 8, "loss": None, "samples": 2}]
    assert received[-1]["step"] == 9
