"""ONNX -> OpenVINO IR (FP32), and INT8 by NNCF post-training quantisation.

The IR keeps ``BundleMeta`` in its ``rt_info`` under ``wastenet``. INT8 uses NNCF
on the same real calibration images as ONNX Runtime; when nncf is not installed it
falls back to converting the QDQ ONNX model (OpenVINO runs QDQ natively) and says so.

With ``max_drop`` (points) INT8 is accuracy-controlled: NNCF quantises, measures
top-1 on the manifest's *validation* split (never the test split that ``verify``
reports), ranks the quantised layers by how much each costs and returns them to float
one at a time until the drop is within ``max_drop``.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

import numpy as np

from wastenet.accelerate.calibration import CalibrationSet
from wastenet.errors import ConfigError
from wastenet.evaluate.metrics import agreement, label_masks, score
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


def _advanced(method: str):
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters
    from nncf.quantization.range_estimator import RangeEstimatorParametersSet

    estimators = {
        "minmax": RangeEstimatorParametersSet.MINMAX,
        "percentile": RangeEstimatorParametersSet.MEAN_QUANTILE,
        "entropy": RangeEstimatorParametersSet.HISTOGRAM,  # histogram search, closest to KL
    }
    return AdvancedQuantizationParameters(activations_range_estimator_params=estimators[method])


def _nncf_quantize(model, calib: CalibrationSet, method: str, exclude: str):
    import nncf

    advanced = _advanced(method)
    kwargs = {"ignored_scope": _ignored(model, exclude)} if exclude else {}
    return nncf.quantize(
        model,
        nncf.Dataset(calib.batches()),
        subset_size=len(calib),
        advanced_parameters=advanced,
        **kwargs,
    )


class ValidationSet:
    """Preprocessed validation images with their label masks (a set label allows any member)."""

    def __init__(self, manifest: str | Path, meta: BundleMeta, split: str = "val") -> None:
        from wastenet.data.manifest import load_split

        items = load_split(manifest, split, meta.trained_sources, "measure INT8's accuracy")
        images = CalibrationSet([Path(item.path) for item in items], meta).batches()
        self.labels = tuple(meta.labels)
        masks = label_masks([item.labels for item in items], self.labels)
        self.items = list(zip(images, masks, strict=True))

    def __len__(self) -> int:
        return len(self.items)

    def top1(self, compiled, data) -> tuple[float, list[float]]:
        """NNCF's validation_fn: set-aware top-1 (``metrics.score``) and the per-image 0/1
        values it ranks layers with."""
        out = compiled.output(0)
        data = list(data)
        if not data:
            return 0.0, []
        pred = np.array([int(np.argmax(compiled(x)[out])) for x, _ in data], np.int64)
        scored = score(pred, np.stack([mask for _, mask in data]), self.labels)
        return scored.accuracy, scored.hits.astype(float).tolist()


def _nncf_quantize_controlled(
    model, calib: CalibrationSet, val: ValidationSet, method: str, exclude: str, max_drop: float
):
    import nncf

    advanced = _advanced(method)
    kwargs = {"ignored_scope": _ignored(model, exclude)} if exclude else {}
    return nncf.quantize_with_accuracy_control(
        model,
        nncf.Dataset(calib.batches()),
        nncf.Dataset(val.items, lambda item: item[0]),
        validation_fn=val.top1,
        max_drop=max_drop / 100.0,
        drop_type=nncf.DropType.ABSOLUTE,
        subset_size=len(calib),
        advanced_quantization_parameters=advanced,
        **kwargs,
    )


def _compile(model):
    import openvino as ov

    from wastenet.accelerate.backends.openvino_backend import compile_config

    return ov.Core().compile_model(model, "CPU", compile_config())


def _agreement(a_model, b_model, calib: CalibrationSet) -> float:
    fa, fb = _compile(a_model), _compile(b_model)
    batches = calib.batches()
    return agreement(
        np.concatenate([fa(x)[fa.output(0)] for x in batches]),
        np.concatenate([fb(x)[fb.output(0)] for x in batches]),
    )[0]


def export_openvino_int8(
    onnx_path: Path,
    meta: BundleMeta,
    out_path: Path,
    calib: CalibrationSet,
    method: str = "minmax",
    exclude: str = "",
    qdq_onnx: Path | None = None,
    min_agreement: float = 0.99,
    val: ValidationSet | None = None,
    max_drop: float | None = None,
) -> dict:
    """INT8 IR; returns a record of the quantiser used and what stayed in float."""
    if importlib.util.find_spec("nncf") is None:
        if qdq_onnx is None:
            raise ConfigError("openvino-int8 without nncf needs the ort-int8 QDQ model first")
        log.warning("nncf is not installed: OpenVINO INT8 runs the ONNX Runtime QDQ model")
        save_ir(convert_onnx(qdq_onnx), meta, out_path)
        return {"quantiser": "onnxruntime QDQ through OpenVINO (nncf not installed)"}
    fp32 = convert_onnx(onnx_path)
    if max_drop is not None:
        if val is None:
            raise ConfigError("max_drop measures the val split: give --calib-manifest")
        if exclude.strip() == "auto":
            raise ConfigError("openvino-int8: use max_drop or exclude=auto, not both")
        quantized = _nncf_quantize_controlled(fp32, calib, val, method, exclude, max_drop)
        save_ir(quantized, meta, out_path)
        fp32_acc = val.top1(_compile(fp32), val.items)[0]
        int8_acc = val.top1(_compile(quantized), val.items)[0]
        return {
            "quantiser": "nncf accuracy control",
            "method": method,
            "excluded": exclude,
            "max_drop_points": max_drop,
            "val_images": len(val),
            "val_top1_fp32": fp32_acc,
            "val_top1_int8": int8_acc,
            "calib_agreement": _agreement(fp32, quantized, calib),
        }
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


def build_openvino(exporter, fmt, opts: dict) -> tuple[Path, dict]:
    """The format table's builder of ``openvino`` (FP32 IR)."""
    return export_openvino(exporter.onnx(), exporter.meta, exporter.path(fmt.name)), {}


def build_openvino_int8(exporter, fmt, opts: dict) -> tuple[Path, dict]:
    """The format table's builder of ``openvino-int8``: NNCF, accuracy-controlled on the
    manifest's val split with ``max_drop``; the QDQ ONNX model when nncf is absent."""
    out = exporter.path(fmt.name)
    calib = exporter.calibration(opts["calib_count"])
    manifest = exporter.calib_source.manifest
    measure = opts["max_drop"] is not None and manifest is not None
    val = ValidationSet(manifest, exporter.meta) if measure else None
    rec = export_openvino_int8(
        exporter.onnx(), exporter.meta, out, calib, opts["calib_method"], opts["exclude"],
        exporter.built("ort-int8"), val=val, max_drop=opts["max_drop"],
    )  # fmt: skip
    return out, rec
