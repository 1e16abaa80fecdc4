"""The CPU check behind the ORT INT8 saturation warning (AVX2 without VNNI)."""

from __future__ import annotations

import logging

import pytest

from wastenet.accelerate.cpu import int8_saturation_risk
from wastenet.provenance import cpu_flags

EPYC_AVX2 = "processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu sse2 avx avx2 fma\n"
ICELAKE = "processor\t: 0\nflags\t\t: fpu avx avx2 avx512f avx512_vnni\n"


def test_flags_are_read_from_cpuinfo_text():
    assert cpu_flags(EPYC_AVX2) == {"fpu", "sse2", "avx", "avx2", "fma"}
    assert cpu_flags("processor : 0\nFeatures : fp asimd asimddp\n") == {"fp", "asimd", "asimddp"}
    assert cpu_flags("no flags line here") is None


@pytest.mark.parametrize(
    ("text", "machine", "risk"),
    [
        (EPYC_AVX2, "x86_64", True),
        (ICELAKE, "x86_64", False),
        ("flags : avx2 avx_vnni\n", "x86_64", False),
        ("flags : sse2 sse4_2\n", "x86_64", False),  # no AVX2: ORT does not use vpmaddubsw
        (EPYC_AVX2, "aarch64", False),
    ],
)
def test_saturation_risk(text, machine, risk):
    assert int8_saturation_risk(cpu_flags(text), machine) is risk


def test_unknown_cpu_is_no_risk():
    assert int8_saturation_risk(set(), "x86_64") is False


def test_loading_ort_int8_warns_on_a_cpu_without_vnni(tmp_path, monkeypatch, caplog):
    pytest.importorskip("onnxruntime")
    torch = pytest.importorskip("torch")
    from conftest import make_image_folder
    from wastenet.accelerate import cpu, load_engine
    from wastenet.accelerate.export import CalibSource, export_model
    from wastenet.classes import CLASSES
    from wastenet.meta import BundleMeta

    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, stride=2), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(), torch.nn.Linear(4, len(CLASSES)),
    ).eval()  # fmt: skip
    meta = BundleMeta("tiny", list(CLASSES), [32, 32], [0.5] * 3, [0.25] * 3, source_hash="cd" * 32)
    images = make_image_folder(tmp_path / "imgs", per_class=2)
    (result,) = [
        r
        for r in export_model(
            model,
            meta,
            ["ort-int8"],
            tmp_path / "out",
            options={"calib_count": 10},
            calib=CalibSource(folder=images),
        )  # fmt: skip
        if r.status == "ok"
    ]
    for risky, expected in ((True, 1), (False, 0)):
        monkeypatch.setattr(
            cpu, "cpu_flags", lambda *a, r=risky: {"avx2"} if r else {"avx2", "avx512_vnni"}
        )
        monkeypatch.setattr(cpu.platform, "machine", lambda: "x86_64")
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            load_engine(result.path).close()
        assert sum("no VNNI" in r.getMessage() for r in caplog.records) == expected
