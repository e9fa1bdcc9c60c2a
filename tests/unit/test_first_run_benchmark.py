"""benchmarks/first_run.py measures the longest wait without output, and where it happened."""

import importlib.util
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("first_run", ROOT / "benchmarks" / "first_run.py")
first_run = importlib.util.module_from_spec(spec)
spec.loader.exec_module(first_run)


def test_the_longest_silence_and_the_line_before_it_are_measured(capsys):
    script = "echo starting; echo -n half; sleep 0.3; echo ' done'; sleep 1.2; echo end; exit 3"
    timing = first_run.timed("probe", ["sh", "-c", script], ROOT, dict(os.environ))
    assert timing.code == 3
    assert 1.1 < timing.silence < 2.5
    assert timing.silent_after == "half done"
    assert timing.seconds >= timing.silence
    assert "] half done" in capsys.readouterr().out
