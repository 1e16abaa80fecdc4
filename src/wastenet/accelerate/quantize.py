"""ONNX Runtime static INT8 quantisation: QDQ, per-channel weights, real calibration images.

``quant_pre_process`` (shape inference + graph clean-up) runs first, as ONNX Runtime
advises. Sensitive layers can stay in float: ``exclude`` takes node names and the
shorthands ``first`` (the stem convolution) and ``last`` (the classifier); ``auto``
measures each activation's quantisation noise (SQNR) and excludes the noisiest
layers, a few more each round, until INT8 agrees with FP32 on the calibration images.
The softmax always stays in float so probabilities keep their resolution.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path

from wastenet.accelerate.calibration import CalibrationSet
from wastenet.accelerate.onnx_export import INPUT_NAME, copy_metadata
from wastenet.errors import ConfigError
from wastenet.evaluate import metrics

log = logging.getLogger(__name__)
AUTO_ROUNDS = (0, 1, 2, 4, 8, 16)


class _Reader:
    """ORT CalibrationDataReader over a CalibrationSet (rewindable)."""

    def __init__(self, calib: CalibrationSet, limit: int | None = None) -> None:
        self._batches = calib.batches()[:limit] if limit else calib.batches()
        self._it = iter(self._batches)

    def get_next(self):
        batch = next(self._it, None)
        return None if batch is None else {INPUT_NAME: batch}

    def rewind(self) -> None:
        self._it = iter(self._batches)


def _method(name: str):
    from onnxruntime.quantization import CalibrationMethod

    table = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }
    if name not in table:
        raise ConfigError(f"calibration method {name!r} is not one of {', '.join(table)}")
    return table[name]


def _flush_every(count: int) -> int:
    """Merge MinMax ranges every N images (bounded memory). ORT fails when N divides
    the image count (nothing left for its last merge), so pick an N that does not."""
    return next(n for n in range(8, 64) if count % n)


def graph_nodes(path: Path) -> list:
    import onnx

    return list(onnx.load(str(path)).graph.node)


def resolve_exclude(path: Path, exclude: str) -> list[str]:
    """Node names from ``exclude`` (names, ``first``, ``last``); softmax always added."""
    nodes = graph_nodes(path)
    names = {n.name for n in nodes}
    out = [n.name for n in nodes if n.op_type == "Softmax"]
    for token in [t.strip() for t in (exclude or "").split(",") if t.strip()]:
        if token == "first":
            out += [n.name for n in nodes if n.op_type == "Conv"][:1]
        elif token == "last":
            out += [n.name for n in nodes if n.op_type in ("Gemm", "MatMul")][-1:]
        elif token in names:
            out.append(token)
        else:
            raise ConfigError(f"--exclude: no node named {token!r} in {path.name}")
    return list(dict.fromkeys(out))


def quantize_ort(
    fp32_path: Path,
    out_path: Path,
    calib: CalibrationSet,
    method: str = "minmax",
    exclude: list[str] | None = None,
) -> Path:
    """One static QDQ quantisation of a pre-processed FP32 model."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    quantize_static(
        str(fp32_path),
        str(out_path),
        _Reader(calib),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        calibrate_method=_method(method),
        nodes_to_exclude=list(exclude or []),
        extra_options={
            "ActivationSymmetric": False,
            "WeightSymmetric": True,
            "CalibMaxIntermediateOutputs": _flush_every(len(calib)),
        },
    )
    return out_path


def agreement(fp32_path: Path, int8_path: Path, calib: CalibrationSet) -> tuple[float, float]:
    """(top-1 agreement, max abs probability difference) of two ONNX models on ``calib``."""
    from wastenet.accelerate.backends.onnx_backend import open_session

    x = calib.stacked()
    return metrics.agreement(
        open_session(fp32_path).run(None, {INPUT_NAME: x})[0],
        open_session(int8_path).run(None, {INPUT_NAME: x})[0],
    )


def noisiest_nodes(pre_path: Path, qdq_path: Path, calib: CalibrationSet, tmp: Path) -> list[str]:
    """Conv/Gemm nodes ordered by the SQNR of their quantised output, worst first."""
    from onnxruntime.quantization.qdq_loss_debug import (
        collect_activations,
        compute_activation_error,
        create_activation_matching,
        modify_model_output_intermediate_tensors,
    )

    aug_f, aug_q = tmp / "aug_float.onnx", tmp / "aug_qdq.onnx"
    modify_model_output_intermediate_tensors(str(pre_path), str(aug_f))
    modify_model_output_intermediate_tensors(str(qdq_path), str(aug_q))
    reader = _Reader(calib, limit=16)
    float_acts = collect_activations(str(aug_f), reader)
    reader.rewind()
    qdq_acts = collect_activations(str(aug_q), reader)
    errors = compute_activation_error(create_activation_matching(qdq_acts, float_acts))
    producer = {o: n.name for n in graph_nodes(pre_path) for o in n.output}
    kinds = {n.name: n.op_type for n in graph_nodes(pre_path)}
    scored = [
        (err.get("qdq_err", float("inf")), producer[t])
        for t, err in errors.items()
        if t in producer and kinds[producer[t]] in ("Conv", "Gemm", "MatMul")
    ]
    return [name for _, name in sorted(scored)]


def export_ort_int8(
    fp32_path: Path,
    out_path: Path,
    calib: CalibrationSet,
    method: str = "minmax",
    exclude: str = "",
    min_agreement: float = 0.99,
) -> dict:
    """Quantise ``fp32_path`` to ``out_path``; returns a record of what was excluded."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    out_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="wastenet-int8-") as tmp_name:
        tmp = Path(tmp_name)
        pre = tmp / "pre.onnx"
        quant_pre_process(str(fp32_path), str(pre), skip_symbolic_shape=True)
        auto = exclude.strip() == "auto"
        base = resolve_exclude(pre, "" if auto else exclude)
        candidate = tmp / "int8.onnx"
        quantize_ort(pre, candidate, calib, method, base)
        agree, diff = agreement(pre, candidate, calib)
        excluded = list(base)
        if auto and agree < min_agreement:
            worst = noisiest_nodes(pre, candidate, calib, tmp)
            for k in AUTO_ROUNDS[1:]:
                excluded = base + worst[:k]
                quantize_ort(pre, candidate, calib, method, excluded)
                agree, diff = agreement(pre, candidate, calib)
                log.info("auto exclude %d layers: agreement %.3f", k, agree)
                if agree >= min_agreement:
                    break
        shutil.move(str(candidate), str(out_path))
    copy_metadata(fp32_path, out_path)
    from wastenet.accelerate.cpu import int8_saturation_risk

    return {
        "method": method,
        "exported_on_cpu_without_vnni": int8_saturation_risk(),
        "calibration_images": len(calib),
        "excluded_nodes": excluded,
        "calib_agreement": agree,
        "calib_max_prob_diff": diff,
    }


def build_ort_int8(exporter, fmt, opts: dict) -> tuple[Path, dict]:
    """The format table's builder of ``ort-int8``: static QDQ on real calibration images."""
    out = exporter.path(fmt.name)
    calib = exporter.calibration(opts["calib_count"])
    return out, export_ort_int8(exporter.onnx(), out, calib, opts["calib_method"], opts["exclude"])
