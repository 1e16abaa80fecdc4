"""The CPU-ceiling benchmark counts multiply-accumulates the way the probes define them."""

import importlib.util
import sys
from pathlib import Path

import pytest

ov = pytest.importorskip("openvino")

_BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(_BENCHMARKS))  # the script imports its sibling, as when run from there
_PATH = _BENCHMARKS / "bench_cpu_ceiling.py"
_spec = importlib.util.spec_from_file_location("bench_cpu_ceiling", _PATH)
ceiling = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ceiling)


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
