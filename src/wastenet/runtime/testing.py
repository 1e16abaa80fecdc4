"""Test and benchmark parts: a tiny, real ONNX classifier (nearest colour centroid) and a
frame source that replays prepared frames.

Global average pooling, one MatMul and a Softmax, fitted on example images through
the real preprocessing path and carrying real ``BundleMeta``, so the bin, the
replay tests and the loop benchmark exercise ONNX Runtime without a trained CNN.
Needs the ``onnx`` package (build time only); running it needs only onnxruntime.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from wastenet.meta import META_KEY, BundleMeta
from wastenet.preprocess import preprocess

# The tiny model's own input normalisation, written into its card like any model's (any
# fixed values would do; a real model's come from its backbone's config).
TINY_MODEL_MEAN = [0.485, 0.456, 0.406]
TINY_MODEL_STD = [0.229, 0.224, 0.225]


def write_colour_model(
    path: str | Path,
    examples: dict[str, list[np.ndarray]],
    input_hw: tuple[int, int] = (48, 64),
    sharpness: float = 40.0,
    mean: list[float] = TINY_MODEL_MEAN,
    std: list[float] = TINY_MODEL_STD,
    not_sure_below: float | None = None,
) -> BundleMeta:
    """Fit class centroids of the pooled input on RGB ``examples`` and write a .onnx model
    (``not_sure_below``: the card's "not sure" threshold; None leaves the default)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    labels = list(examples)
    centroids = np.stack(
        [
            np.mean(
                [preprocess(img, input_hw, mean, std).mean(axis=(2, 3))[0] for img in imgs], axis=0
            )
            for imgs in examples.values()
        ]
    ).astype(np.float32)  # (K, 3)
    # softmax(-s * |x - c|^2) == softmax(2s x.c - s |c|^2): one MatMul and an Add
    weight = (2 * sharpness * centroids.T).astype(np.float32)
    bias = (-sharpness * (centroids**2).sum(axis=1)).astype(np.float32)
    h, w = input_hw
    graph = helper.make_graph(
        [
            helper.make_node("GlobalAveragePool", ["input"], ["pooled"]),
            helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
            helper.make_node("MatMul", ["flat", "W"], ["mm"]),
            helper.make_node("Add", ["mm", "B"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["probs"], axis=1),
        ],
        "colour_centroids",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, h, w])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", len(labels)])],
        [numpy_helper.from_array(weight, "W"), numpy_helper.from_array(bias, "B")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    meta = BundleMeta(
        architecture="colour-centroids",
        labels=labels,
        input_size=[h, w],
        mean=list(mean),
        std=list(std),
        source_hash="colour" + str(abs(hash(weight.tobytes())) % 10**8),
        created="test",
    )
    if not_sure_below is not None:
        meta.not_sure_below = not_sure_below
    helper.set_model_props(model, {META_KEY: meta.to_json()})
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return meta


class FrameReplay:
    """A frame source over prepared RGB frames, in order, stamped when read: what a fixed
    camera would have captured, for replays of the real loop."""

    def __init__(self, frames: list[np.ndarray]) -> None:
        self.frames, self.i = frames, 0

    def read(self):
        import time

        from wastenet.runtime.sources import Frame

        if self.i >= len(self.frames):
            return None
        self.i += 1
        return Frame(self.frames[self.i - 1], time.perf_counter(), self.i - 1)

    def close(self) -> None:
        pass
