"""Engines over images and items: torch and ONNX Runtime agree; images, cache, stats, errors."""

from dataclasses import dataclass

import numpy as np
import pytest

from conftest import make_image_folder
from wastenet.classes import CLASSES
from wastenet.errors import ModelFileError, WasteNetError
from wastenet.meta import BundleMeta

torch = pytest.importorskip("torch")

SIZE_HW = (48, 64)
META = BundleMeta("tiny-seq", list(CLASSES), list(SIZE_HW), [0.5] * 3, [0.25] * 3)


@dataclass(frozen=True)
class FakeItem:
    """Only what evaluation reads from a manifest item (and the cache's sha256)."""

    path: str
    source: str
    labels: tuple
    sha256: str


@pytest.fixture
def items(tmp_path):
    root = make_image_folder(tmp_path / "imgs", per_class=2, classes=("glass", "metal"))
    return [
        FakeItem(str(p), "s", (p.parent.name,), f"{i:064x}")
        for i, p in enumerate(sorted(root.rglob("*.jpg")))
    ]


@pytest.fixture
def net():
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(4, 5),
    ).eval()


def test_onnx_engine_matches_torch(tmp_path, items, net):
    pytest.importorskip("onnxruntime")
    from wastenet.accelerate.backends.torch_backend import TorchEngine
    from wastenet.accelerate.onnx_export import export_onnx
    from wastenet.evaluate.dataset import load_images
    from wastenet.evaluate.predict import open_engine, predict_images
    from wastenet.evaluate.report import model_stats

    images, kept, skipped = load_images(items, SIZE_HW)
    assert images.shape == (len(items), *SIZE_HW, 3) and not skipped
    onnx_path = export_onnx(net, META, tmp_path / "tiny.onnx")
    engine = open_engine(onnx_path)
    torch_probs = predict_images(TorchEngine.from_model(net, META), images, batch_size=3)
    onnx_probs = predict_images(engine, images, batch_size=3)
    assert onnx_probs.shape == (len(items), 5)
    np.testing.assert_allclose(onnx_probs, torch_probs, atol=1e-5)
    stats = model_stats(engine, onnx_path)
    assert stats["parameters"] == sum(p.numel() for p in net.parameters())
    assert stats["file_size_bytes"] == onnx_path.stat().st_size


def test_safetensors_header_parameter_count(tmp_path, net):
    from safetensors.torch import save_file

    from wastenet.meta import safetensors_parameter_count

    path = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    assert safetensors_parameter_count(path) == sum(p.numel() for p in net.parameters())
    path.write_bytes(b"\x10" * 8 + b"{")  # a header longer than the file: not a bundle
    assert safetensors_parameter_count(path) is None


def test_predict_items_scores_what_loaded_and_shares_decoding(tmp_path, items, net):
    from wastenet.accelerate.backends.torch_backend import TorchEngine
    from wastenet.evaluate.dataset import load_images
    from wastenet.evaluate.metrics import score
    from wastenet.evaluate.predict import predict_images, predict_items

    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not a jpeg at all")
    engine = TorchEngine.from_model(net, META)
    loaded: dict = {}
    pred = predict_items(engine, [*items, FakeItem(str(bad), "t", ("glass",), "f" * 64)],
                         batch_size=3, loaded=loaded)  # fmt: skip
    assert pred.items == items and pred.skipped[0]["path"] == str(bad)
    images, _, _ = load_images(items, SIZE_HW)
    assert np.array_equal(pred.images, images)
    assert np.array_equal(pred.probs, predict_images(engine, images, batch_size=3))
    scored = pred.score()
    assert scored.right == score(pred.probs, [it.labels for it in items]).right
    assert list(scored.per_source) == ["s"] and scored.per_source["s"].n == len(items)
    # a second engine of the same input size reuses the decoded images
    again = predict_items(engine, [], loaded=loaded)
    assert again.images is pred.images


def test_load_images_skips_unreadable_and_cache_matches(tmp_path, items):
    from wastenet.evaluate.dataset import load_images

    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not a jpeg at all")
    with_bad = [*items, FakeItem(str(bad), "s", ("glass",), "f" * 64)]
    images, kept, skipped = load_images(with_bad, SIZE_HW)
    assert len(kept) == len(items) and skipped[0]["path"] == str(bad)
    cached, kept_c, _ = load_images(items, SIZE_HW, cache_dir=tmp_path / "cache")
    assert np.array_equal(cached, images) and kept_c == items


def test_engine_errors(tmp_path, items, net):
    from wastenet.accelerate.backends.torch_backend import TorchEngine
    from wastenet.evaluate.predict import open_engine
    from wastenet.evaluate.report import evaluate_model

    with pytest.raises(ModelFileError, match="no such model"):
        open_engine(tmp_path / "absent.onnx")
    odd = tmp_path / "model.xyz"
    odd.write_bytes(b"0" * 32)
    with pytest.raises(WasteNetError):
        open_engine(odd)

    class OneSplit:
        def items(self, split=None):
            return items

        def ood_items(self, training):
            return []

    shuffled = BundleMeta("tiny-seq", list(reversed(CLASSES)), list(SIZE_HW), [0.5] * 3, [0.25] * 3)
    with pytest.raises(WasteNetError, match="not WasteNet's classes"):
        evaluate_model(TorchEngine.from_model(net, shuffled), OneSplit(), robustness=False)
    with pytest.raises(WasteNetError, match="threshold"):
        evaluate_model(TorchEngine.from_model(net, META), OneSplit(), threshold=1.5)
