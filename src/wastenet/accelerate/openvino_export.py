"""ONNX -> OpenVINO IR (FP32), and INT8 by NNCF post-training quantisation.

The IR keeps ``BundleMeta`` in its ``rt_info`` under ``wastenet``. INT8 uses NNCF
on the same real calibration images as ONNX Runtime; when nncf is not installed it
falls back to converting the QDQ ONNX model (OpenVINO runs QDQ natively) and says so.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

import numpy as np

from wastenet.accelerate.calibration import CalibrationSet
from wastenet.errors import ConfigError
from wastenet.meta import META_KEY, BundleMeta

log = logging.getLogger(__name__)


def save_ir(model, meta: BundleMeta, path: Path) -> Path:
    import openvino as ov

    model.set_rt_info(meta.to_json(), [META_KEY])
    path.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(model, str(path), compress_to_fp16=False)
    return path


def convert_onnx(onnx_path: Path):
    import openvino as ov

    return ov.convert_model(str(onnx_path))


def export_openvino(onnx_path: Path, meta: BundleMeta, out_path: Path) -> Path:
    return save_ir(convert_onnx(onnx_path), meta, out_path)


def _ignored(model, exclude: str):
    """NNCF IgnoredScope for ``first`` / ``last`` / OpenVINO op names."""
    import nncf

    ops = model.get_ordered_ops()
    names: list[str] = []
    for token in [t.strip() for t in (exclude or "").split(",") if t.strip()]:
        if token == "first":
            names += [op.get_friendly_name() for op in ops if op.get_type_name() == "Convolution"][
                :1
            ]
        elif token == "last":
            names += [op.get_friendly_name() for op in ops if op.get_type_name() == "MatMul"][-1:]
        else:
            names.append(token)
    return nncf.IgnoredScope(names=names, validate=False) if names else None


def _nncf_quantize(model, calib: CalibrationSet, method: str, exclude: str):
    import nncf
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters
    from nncf.quantization.range_estimator import RangeEstimatorParametersSet

    estimators = {
        "minmax": RangeEstimatorParametersSet.MINMAX,
        "percentile": RangeEstimatorParametersSet.MEAN_QUANTILE,
        "entropy": RangeEstimatorParametersSet.HISTOGRAM,  # histogram search, closest to KL
    }
    advanced = AdvancedQuantizationParameters(activations_range_estimator_params=estimators[method])
    kwargs = {"ignored_scope": _ignored(model, exclude)} if exclude else {}
    return nncf.quantize(
        model,
        nncf.Dataset(calib.batches()),
        subset_size=len(calib),
        advanced_parameters=advanced,
        **kwargs,
    )


def _agreement(a_model, b_model, calib: CalibrationSet) -> float:
    import openvino as ov

    core = ov.Core()
    fa, fb = core.compile_model(a_model, "CPU"), core.compile_model(b_model, "CPU")
    agree = [
        np.argmax(fa(x)[fa.output(0)]) == np.argmax(fb(x)[fb.output(0)]) for x in calib.batches()
    ]
    return float(np.mean(agree))


def export_openvino_int8(
    onnx_path: Path,
    meta: BundleMeta,
    out_path: Path,
    calib: CalibrationSet,
    method: str = "minmax",
    exclude: str = "",
    qdq_onnx: Path | None = None,
    min_agreement: float = 0.99,
) -> dict:
    """INT8 IR; returns a record of the quantiser used and what stayed in float."""
    if importlib.util.find_spec("nncf") is None:
        if qdq_onnx is None:
            raise ConfigError("openvino-int8 without nncf needs the ort-int8 QDQ model first")
        log.warning("nncf is not installed: OpenVINO INT8 runs the ONNX Runtime QDQ model")
        save_ir(convert_onnx(qdq_onnx), meta, out_path)
        return {"quantiser": "onnxruntime QDQ through OpenVINO (nncf not installed)"}
    fp32 = convert_onnx(onnx_path)
    auto = exclude.strip() == "auto"
    quantized = _nncf_quantize(fp32, calib, method, "" if auto else exclude)
    agree = _agreement(fp32, quantized, calib)
    used = exclude
    if auto and agree < min_agreement:
        used = "first,last"
        quantized = _nncf_quantize(convert_onnx(onnx_path), calib, method, used)
        agree = _agreement(fp32, quantized, calib)
    save_ir(quantized, meta, out_path)
    return {"quantiser": "nncf", "method": method, "excluded": used, "calib_agreement": agree}
