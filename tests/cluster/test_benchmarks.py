"""The benchmarks run: a few resources through benchmarks/operator_scale.py on the session's
control plane, so the script cannot rot between measurements (the numbers are not judged)."""

import pytest

from benchmarks.operator_scale import measure

pytestmark = pytest.mark.timeout(300)


def test_the_scale_benchmark_takes_resources_to_completed_and_reports(
    control_plane, cluster_admin, tmp_path
):
    report = measure(control_plane, cluster_admin, 5, tmp_path)
    assert report["resources"] == 5
    for latency in ("creation_to_job", "job_complete_to_completed"):
        numbers = report[latency]
        assert 0 < numbers["p50_ms"] <= numbers["p99_ms"] <= numbers["max_ms"]
    assert report["wall_seconds"] > 0
    assert report["operator_peak_rss_mib"] > 20  # a Python process with kopf loaded
