"""Weights back from an exported ONNX model, so the bundled model (shipped as ONNX only)
can be fine-tuned.

Export folds each batch norm into the convolution before it: the ONNX holds, per
convolution, ``W' = W * g / s`` and ``b' = beta - mu * g / s`` (``s = sqrt(var + eps)``),
and the split of ``g``, ``s``, ``mu`` and ``beta`` is gone. The import rebuilds the
architecture the model's card names, puts ``W'`` in each convolution and, in the batch
norm after it, a parametrisation that computes exactly ``x + b'`` in eval mode and
normalises as the original did in train mode:

    running_mean = m, running_var = v, weight = sqrt(v + eps), bias = m + b'

where ``m`` and ``v`` are the per-channel mean and variance of the convolution's output
on real images (``calibration``; measured with the network already exact in eval mode).
So the imported model predicts what the ONNX predicts (checked on those images: it
refuses if any probability differs by more than ``TOLERANCE``), and fine-tuning starts
from batch statistics close to the running ones, as it would from the original weights.
Convolutions pair with ONNX ``Conv`` nodes in execution order, by shape; the classifier
with the ``Gemm`` node.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from wastenet.errors import ModelFileError

TOLERANCE = 1e-4  # the largest probability difference the import accepts


def _graph_weights(path: Path) -> tuple[list[tuple[np.ndarray, np.ndarray | None]], tuple]:
    """``[(W, b)]`` of each Conv node in graph order, and the Gemm's (W, b)."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    inits = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    convs, gemms = [], []
    for node in graph.node:
        if node.op_type not in ("Conv", "Gemm"):
            continue
        if node.input[1] not in inits:
            raise ModelFileError(f"{path}: {node.op_type} {node.name} has no stored weights")
        bias = inits.get(node.input[2]) if len(node.input) > 2 else None
        (convs if node.op_type == "Conv" else gemms).append((inits[node.input[1]], bias))
    if len(gemms) != 1:
        raise ModelFileError(f"{path}: {len(gemms)} Gemm nodes, not one classifier")
    return convs, gemms[0]


def _conv_bn_pairs(model: torch.nn.Module, shape: tuple[int, int]) -> list[tuple]:
    """``(conv, bn or None)`` in execution order: the batch norm that runs right after a
    convolution, on its channels."""
    order: list[torch.nn.Module] = []
    hooks = [
        m.register_forward_pre_hook(lambda mod, _inp: order.append(mod))
        for m in model.modules()
        if isinstance(m, torch.nn.Conv2d | torch.nn.BatchNorm2d)
    ]
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, 3, *shape))
    finally:
        for h in hooks:
            h.remove()
    pairs = []
    for i, module in enumerate(order):
        if isinstance(module, torch.nn.Conv2d):
            after = order[i + 1] if i + 1 < len(order) else None
            fits = (
                isinstance(after, torch.nn.BatchNorm2d)
                and after.num_features == module.out_channels
            )
            pairs.append((module, after if fits else None))
    return pairs


def _channel_stats(model, bns: list, images: torch.Tensor, batch: int = 16) -> dict:
    """Per-channel mean and variance of each batch norm's input over ``images``."""
    sums: dict = {bn: [0.0, 0.0, 0] for bn in bns}

    def hook(bn, inputs):
        x = inputs[0].detach().double()
        s = sums[bn]
        s[0] = s[0] + x.sum(dim=(0, 2, 3))
        s[1] = s[1] + (x * x).sum(dim=(0, 2, 3))
        s[2] += x.shape[0] * x.shape[2] * x.shape[3]

    hooks = [bn.register_forward_pre_hook(hook) for bn in bns]
    try:
        with torch.no_grad():
            for start in range(0, len(images), batch):
                model(images[start : start + batch])
    finally:
        for h in hooks:
            h.remove()
    stats = {}
    for bn, (total, squares, n) in sums.items():
        mean = total / n
        stats[bn] = (mean.float(), (squares / n - mean * mean).clamp_min(0).float())
    return stats


def import_onnx(path: str | Path, calibration: np.ndarray):
    """``(model, meta)``: a torch model with the ONNX's weights, its batch norms measured
    on ``calibration`` (float32 NCHW, preprocessed with the model's mean and std)."""
    import onnxruntime as ort

    from wastenet.models.registry import create_model
    from wastenet.onnx_file import read_onnx_meta

    path = Path(path)
    meta = read_onnx_meta(path)
    model = create_model(meta.architecture, len(meta.labels), pretrained=False).eval()
    convs, (head_w, head_b) = _graph_weights(path)
    pairs = _conv_bn_pairs(model, (meta.height, meta.width))
    if len(pairs) != len(convs):
        raise ModelFileError(
            f"{path}: {len(convs)} convolutions in the graph, {len(pairs)} in "
            f"{meta.architecture}: not an export of the architecture its card names"
        )
    folded_bias = {}
    with torch.no_grad():
        for (conv, bn), (w, b) in zip(pairs, convs, strict=True):
            if tuple(conv.weight.shape) != w.shape:
                raise ModelFileError(
                    f"{path}: a convolution of shape {w.shape} where {meta.architecture} has "
                    f"{tuple(conv.weight.shape)}: not an export of that architecture"
                )
            conv.weight.copy_(torch.from_numpy(np.array(w)))
            bias = torch.zeros(w.shape[0]) if b is None else torch.from_numpy(np.array(b)).float()
            if bn is None:
                if conv.bias is None:
                    raise ModelFileError(
                        f"{path}: a folded bias with no place in {meta.architecture}"
                    )
                conv.bias.copy_(bias)
                continue
            if conv.bias is not None:
                conv.bias.zero_()
            bn.running_mean.zero_()
            bn.running_var.fill_(1.0 - bn.eps)  # with weight 1 and bias b': exactly x + b'
            bn.weight.fill_(1.0)
            bn.bias.copy_(bias)
            folded_bias[bn] = bias
        head = model.get_classifier()
        if tuple(head.weight.shape) != head_w.shape:
            raise ModelFileError(
                f"{path}: classifier {head_w.shape}, not {tuple(head.weight.shape)}"
            )
        head.weight.copy_(torch.from_numpy(np.array(head_w)))
        head.bias.copy_(torch.from_numpy(np.array(head_b)))
        images = torch.from_numpy(np.ascontiguousarray(calibration, dtype=np.float32))
        for bn, (m, v) in _channel_stats(model, list(folded_bias), images).items():
            bn.running_mean.copy_(m)
            bn.running_var.copy_(v)
            bn.weight.copy_(torch.sqrt(v + bn.eps))
            bn.bias.copy_(m + folded_bias[bn])
        ours = torch.softmax(model(images) / meta.temperature, dim=1).numpy()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    theirs = session.run(None, {session.get_inputs()[0].name: images.numpy()})[0]
    worst = float(np.abs(ours - theirs).max())
    if worst > TOLERANCE:
        raise ModelFileError(
            f"{path}: the imported weights predict up to {worst:.2g} away from the ONNX "
            f"(more than {TOLERANCE:g}); this export cannot be imported"
        )
    return model, meta
