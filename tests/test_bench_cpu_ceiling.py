"""The CPU-ceiling benchmark counts multiply-accumulates the way the probes define them."""

import sys

import pytest

from conftest import BENCHMARKS, load_benchmark

ov = pytest.importorskip("openvino")

sys.path.insert(0, str(BENCHMARKS))  # the script imports its sibling, as when run from there
ceiling = load_benchmark("bench_cpu_ceiling")


@pytest.mark.parametrize(
    ("kind", "field", "per_layer"),
    [("pointwise", "dense_conv", 8 * 8 * 5 * 6), ("depthwise", "depthwise_conv", 8 * 9 * 5 * 6)],
)
def test_counted_macs_match_the_probe(tmp_path, kind, field, per_layer):
    model, macs = ceiling.probe_model(kind, 8, (5, 6), 3)
    assert macs == 3 * per_layer
    path = tmp_path / "probe.xml"
    ov.save_model(model, str(path))
    counted = ceiling.conv_macs(str(path))
    assert counted[field] == macs
    assert counted["total"] == macs
