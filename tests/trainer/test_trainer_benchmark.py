"""benchmarks/trainer_gpu.py: its FLOPs per step are FLUX.1-dev's, and its tiny mode runs every
case through the trainer's own step and the reference's."""

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("trainer_gpu", ROOT / "benchmarks/trainer_gpu.py")
benchmark = importlib.util.module_from_spec(spec)
spec.loader.exec_module(benchmark)


@pytest.mark.parametrize(("resolution", "without", "recompute"), [(1024, 172, 74), (512, 45, 21)])
def test_flops_per_step_are_flux_dev_s(resolution, without, recompute):
    config = benchmark.FLUX_DEV_TRANSFORMER
    plain = benchmark.model_flops(config, resolution, 1, recompute=False) / 1e12
    checkpointed = benchmark.model_flops(config, resolution, 1, recompute=True) / 1e12
    # the figures, rounded to whole TFLOP
    assert plain == pytest.approx(without, rel=0.03)
    assert checkpointed - plain == pytest.approx(recompute, rel=0.03)


def test_the_tiny_mode_measures_every_case(tmp_path, capsys):
    rows_file = tmp_path / "rows.json"
    assert benchmark.main(["--tiny", "--json", str(rows_file)]) == 0
    rows = json.loads(rows_file.read_text())
    cases = [(r["case"]["step"], r["case"]["weights"], r["case"]["checkpointing"]) for r in rows]
    assert ("reference", "bf16", True) in cases
    for weights in ("bf16", "int8", "nf4"):
        assert ("ours", weights, False) in cases and ("ours", weights, True) in cases
    assert all(row["seconds_per_step"] > 0 for row in rows)
    printed = capsys.readouterr().out
    assert "| reference | 256² | bf16 | full | attention (q/k/v/out) |" in printed
