"""PyTorch -> ONNX (FP32 and FP16), softmax inside the graph, metadata embedded.

Every ONNX artifact has input ``input`` (float32 NCHW, dynamic batch) and output
``probs`` (float32 probabilities), and carries ``BundleMeta`` JSON under the key
``wastenet`` in ``metadata_props`` so ONNX Runtime reads it without the onnx package.
Needs torch and onnx (the export side); loading needs neither.
"""

from __future__ import annotations

import os
from pathlib import Path

from wastenet.errors import ModelFileError
from wastenet.meta import META_KEY, BundleMeta
from wastenet.onnx_file import read_onnx_meta

OPSET = 17
INPUT_NAME = "input"
OUTPUT_NAME = "probs"


def _atomic_target(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.with_name(f".{path.name}.tmp{os.getpid()}")


def set_metadata(model, meta: BundleMeta) -> None:
    """Put ``meta`` in an in-memory onnx ModelProto's ``metadata_props`` (replacing any)."""
    keep = [p for p in model.metadata_props if p.key != META_KEY]
    del model.metadata_props[:]
    for prop in keep:
        model.metadata_props.append(prop)
    entry = model.metadata_props.add()
    entry.key = META_KEY
    entry.value = meta.to_json()
    model.producer_name = "wastenet"


def save_onnx(model, path: Path) -> Path:
    """Check and write an onnx ModelProto atomically."""
    import onnx

    onnx.checker.check_model(model)
    tmp = _atomic_target(path)
    try:
        onnx.save(model, str(tmp))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def export_onnx(model, meta: BundleMeta, path: str | Path) -> Path:
    """Trace ``model`` (logits) with softmax(logits / meta.temperature) appended."""
    import onnx
    import torch

    path = Path(path)

    class Scale(torch.nn.Module):
        def forward(self, x):
            return x * (1.0 / meta.temperature)

    layers = [model.eval()] + ([Scale()] if meta.temperature != 1.0 else [])
    wrapped = torch.nn.Sequential(*layers, torch.nn.Softmax(dim=1)).eval()
    dummy = torch.zeros(1, 3, meta.height, meta.width)
    tmp = _atomic_target(path)
    try:
        with torch.inference_mode(False), torch.no_grad():
            torch.onnx.export(
                wrapped,
                (dummy,),
                str(tmp),
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                opset_version=OPSET,
                do_constant_folding=True,
                dynamo=False,
            )
        proto = onnx.load(str(tmp))
    except Exception as exc:
        raise ModelFileError(f"{path}: ONNX export failed ({str(exc).splitlines()[0]})") from exc
    finally:
        tmp.unlink(missing_ok=True)
    set_metadata(proto, meta)
    return save_onnx(proto, path)


def convert_fp16(src: str | Path, dst: str | Path) -> Path:
    """FP16 weights and activations, float32 input/output (so the protocol stays float32)."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    proto = onnx.load(str(src))
    meta_props = {p.key: p.value for p in proto.metadata_props}
    half = convert_float_to_float16(proto, keep_io_types=True, disable_shape_infer=False)
    _toposort(half.graph)  # the converter appends its input casts after their consumers
    del half.metadata_props[:]
    for key, value in meta_props.items():
        entry = half.metadata_props.add()
        entry.key, entry.value = key, value
    return save_onnx(half, Path(dst))


def _toposort(graph) -> None:
    """Reorder ``graph.node`` so each node follows the producers of its inputs."""
    ready = {i.name for i in graph.input} | {t.name for t in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        progress = [n for n in pending if all(i in ready for i in n.input)]
        if not progress:
            raise ModelFileError("FP16 conversion produced a graph with a cycle")
        for node in progress:
            ordered.append(node)
            ready.update(node.output)
        pending = [n for n in pending if n not in progress]
    nodes = [type(n)() for n in ordered]
    for copy, node in zip(nodes, ordered, strict=True):
        copy.CopyFrom(node)
    del graph.node[:]
    graph.node.extend(nodes)


def copy_metadata(src: str | Path, dst: str | Path) -> None:
    """Re-attach ``src``'s metadata to ``dst`` (quantisers drop metadata_props)."""
    import onnx

    meta = read_onnx_meta(src)
    proto = onnx.load(str(dst))
    set_metadata(proto, meta)
    save_onnx(proto, Path(dst))


def build_onnx(exporter, fmt, opts: dict) -> tuple[Path, dict]:
    """The format table's builder of ``onnx``: the FP32 hub every other row is made from."""
    return export_onnx(exporter.model, exporter.meta, exporter.path(fmt.name)), {}


def build_fp16(exporter, fmt, opts: dict) -> tuple[Path, dict]:
    """The format table's builder of ``onnx-fp16``."""
    return convert_fp16(exporter.onnx(), exporter.path(fmt.name)), {}
