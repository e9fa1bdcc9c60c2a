"""The operator's Prometheus series: runs by phase, and each run's own series, gone with it."""

from fluxlora_operator.metrics import Metrics

RUN = {"namespace": "team-a", "name": "portrait"}


def run(phase: str, step: int | None = None, **spec) -> dict:
    status = {"phase": phase}
    if step is not None:
        status["progress"] = {"step": step, "totalSteps": 1000, "loss": 0.31, "etaSeconds": 75}
    return {"spec": {"steps": 1000, **spec}, "status": status}


def value(metrics: Metrics, name: str, **labels) -> float | None:
    return metrics.registry.get_sample_value(name, {**RUN, **labels})


def test_a_runs_series_follow_its_progress_and_phase():
    metrics = Metrics()
    metrics.observe_run("team-a", "portrait", run("created"))
    assert value(metrics, "fluxlora_run_phase", phase="created") == 1
    assert value(metrics, "fluxlora_run_total_steps") == 1000
    assert value(metrics, "fluxlora_run_step") is None  # no progress yet

    metrics.observe_run("team-a", "portrait", run("processing", 250, batchSize=2, gpus=2))
    assert value(metrics, "fluxlora_run_phase", phase="created") is None  # one phase at a time
    assert value(metrics, "fluxlora_run_phase", phase="processing") == 1
    assert value(metrics, "fluxlora_run_step") == 250
    assert value(metrics, "fluxlora_run_loss") == 0.31
    assert value(metrics, "fluxlora_run_eta_seconds") == 75
    # 750 steps in 75 s, 2 images on each of 2 GPUs a step.
    assert value(metrics, "fluxlora_run_samples_per_second") == 40


def test_a_deleted_runs_series_go_with_it():
    metrics = Metrics()
    metrics.observe_run("team-a", "portrait", run("processing", 250))
    metrics.observe_run("team-a", "other", run("completed", 1000))
    metrics.observe_run("team-a", "portrait", None)
    exposed = [
        sample.labels.get("name")
        for family in metrics.registry.collect()
        if family.name.startswith("fluxlora_run_")
        for sample in family.samples
    ]
    assert "portrait" not in exposed and "other" in exposed
