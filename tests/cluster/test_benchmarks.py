"""The benchmarks run, each at a small size on the session's control plane (a few resources
through benchmarks/operator_scale.py, a few lookups through benchmarks/gateway_lookup.py), so
the scripts cannot rot between measurements (the numbers are not judged)."""

import pytest

from benchmarks import gateway_lookup
from benchmarks.operator_scale import measure

pytestmark = pytest.mark.timeout(300)


def test_the_scale_benchmark_takes_resources_to_completed_and_reports(
    control_plane, cluster_admin, tmp_path
):
    report = measure(control_plane, cluster_admin, 5, tmp_path)
    assert report["resources"] == 5
    for latency in ("creation_to_job", "exit_to_completed"):
        numbers = report[latency]
        assert 0 < numbers["p50_ms"] <= numbers["p99_ms"] <= numbers["max_ms"]
    assert report["wall_seconds"] > 0
    assert report["operator_peak_rss_mib"] > 20  # a Python process with kopf loaded


def test_the_lookup_benchmark_finds_predictions_by_id_and_reports(
    control_plane, cluster_admin, tmp_path
):
    report = gateway_lookup.measure(control_plane, cluster_admin, 30, 20, tmp_path)
    assert report["resources"] == 30
    for latency in ("result_lookup", "namespace_listing"):
        numbers = report[latency]
        assert 0 < numbers["p50_ms"] <= numbers["p99_ms"] <= numbers["max_ms"]
    assert report["gateway_peak_rss_mib"] > 20  # a Python process with aiohttp loaded
