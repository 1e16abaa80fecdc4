"""End to end: a real split of generated images, real torch models, every output file."""

import json

import numpy as np
import pytest

from conftest import make_image_folder
from wastenet.classes import CLASSES
from wastenet.cli import main
from wastenet.meta import BundleMeta

torch = pytest.importorskip("torch")

SIZE_HW = (48, 64)
MEAN, STD = [0.5, 0.5, 0.5], [0.25, 0.25, 0.25]
SECTIONS = ("model", "data", "overall", "per_source", "ood", "robustness", "threshold")


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny models on a shared 2-core machine: one thread avoids spin-wait contention."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def manifest_path(tmp_path_factory):
    """Two sources like the real ones: exact labels + trash (OOD), and a set label."""
    from wastenet.data.split import build_split

    root = tmp_path_factory.mktemp("eval_data")
    make_image_folder(root / "tn", per_class=8, classes=(*CLASSES, "trash"))
    make_image_folder(root / "web", per_class=8, classes=("glass", "metal", "paper_and_cardboard"))
    result = build_split(
        [root / "tn", root / "web"],
        seed=0,
        folds=0,
        ratios=(0.5, 0.1, 0.4),
        workers=1,
        progress=False,
    )
    return result.manifest.save(root / "manifest.json")


def test_evaluate_model_api_with_a_trained_tiny_net(manifest_path, tmp_path):
    """The training stage's path: an in-memory model, evaluate_model, files written."""
    from wastenet.accelerate.backends.torch_backend import TorchEngine
    from wastenet.evaluate.dataset import load_images, load_manifest
    from wastenet.evaluate.report import REPORT_SECTIONS, evaluate_model
    from wastenet.preprocess import normalize

    manifest = load_manifest(manifest_path)
    train = [it for it in manifest.items(split="train") if len(it.labels) == 1]
    images, _, _ = load_images(train, SIZE_HW)
    x = torch.from_numpy(normalize(images, MEAN, STD))
    y = torch.tensor([CLASSES.index(it.labels[0]) for it in train])
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(8, 5),
    )
    opt = torch.optim.Adam(net.parameters(), lr=0.05)
    for _ in range(80):
        loss = torch.nn.functional.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    meta = BundleMeta("tiny-seq", list(CLASSES), list(SIZE_HW), MEAN, STD)
    predictor = TorchEngine.from_model(net, meta)
    report = evaluate_model(
        predictor,
        manifest,
        threshold=0.6,
        severities=(1, 5),
        corruptions=("dim_light", "white_balance"),
        out_dir=tmp_path / "eval",
    )
    assert set(REPORT_SECTIONS) <= set(report)
    # one colour per class: a trained net gets the exactly-labelled test items right
    tn = report["per_source"]["tn"]
    assert tn["top1"] >= 0.8
    lo, hi = tn["top1_ci95"]
    assert lo < tn["top1"] <= hi
    assert f"{100 * lo:.1f}-{100 * hi:.1f} %" in (tmp_path / "eval" / "report.md").read_text()
    assert report["model"]["parameters"] == sum(p.numel() for p in net.parameters())
    rob = report["robustness"]
    # a colour classifier must suffer from a strong colour cast more than from a mild one
    assert rob["accuracy"]["white_balance"]["5"] <= rob["accuracy"]["white_balance"]["1"]
    assert rob["accuracy"]["white_balance"]["5"] < rob["clean_accuracy"]
    for name in (
        "report.json",
        "report.md",
        "confusion_tn.png",
        "confusion_web.png",
        "robustness.png",
        "robustness_preview.png",
    ):
        assert (tmp_path / "eval" / name).stat().st_size > 0, name


@pytest.mark.slow
def test_cli_evaluates_a_bundle_and_writes_every_file(manifest_path, tmp_path, capsys):
    """`wastenet evaluate` on a real timm architecture saved as a bundle."""
    from wastenet.models import create_model, save_bundle

    torch.manual_seed(0)
    model = create_model("efficientnet_lite0", num_classes=5, pretrained=False)
    meta = BundleMeta("efficientnet_lite0", list(CLASSES), list(SIZE_HW), MEAN, STD)
    bundle = save_bundle(model, meta, tmp_path / "lite0.safetensors")
    out = tmp_path / "eval"
    code = main(
        [
            "evaluate",
            str(bundle),
            "--manifest",
            str(manifest_path),
            "--out",
            str(out),
            "--severities",
            "3",
            "--corruptions",
            "glare",
            "zoom_out_card",
            "--limit",
            "6",
            "--threshold",
            "0.5",
            "--device",
            "cpu",
        ]
    )
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    assert set(SECTIONS) <= set(report)
    assert set(report["per_source"]) == {"tn", "web"}
    assert report["per_source"]["web"]["n_set_label"] > 0
    assert report["ood"]["n"] > 0 and report["ood"]["auroc"] is not None
    assert report["model"]["parameters"] == sum(p.numel() for p in model.parameters())
    assert report["model"]["file_size_bytes"] == bundle.stat().st_size
    assert set(report["robustness"]["accuracy"]) == {"glare", "zoom_out_card"}
    assert report["threshold"] == 0.5
    for name in (
        "report.md",
        "confusion_tn.png",
        "confusion_web.png",
        "robustness.png",
        "robustness_preview.png",
    ):
        assert (out / name).stat().st_size > 0, name
    md = (out / "report.md").read_text()
    for heading in ("Top-1 accuracy per source", "Per class", "Not sure", "Robustness"):
        assert heading.lower() in md.lower()
    assert "report:" in capsys.readouterr().out


def test_cli_errors_exit_2_with_one_line(manifest_path, tmp_path, capsys):
    bad_manifest = tmp_path / "m.json"
    bad_manifest.write_text(json.dumps({"something": "else"}))
    model = tmp_path / "absent.safetensors"
    cases = [
        (["evaluate", str(model), "--manifest", str(manifest_path)], "no such model"),
        (["evaluate", str(model), "--manifest", str(tmp_path / "none.json")], "no such manifest"),
        (["evaluate", str(model), "--manifest", str(bad_manifest)], "not a WasteNet split"),
        (["evaluate", str(model)], "--manifest is required"),
        (["evaluate", "realworld"], "usage"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, (argv, err)
    fake = tmp_path / "fake.safetensors"
    fake.write_bytes(np.arange(64, dtype=np.uint8).tobytes())
    assert main(["evaluate", str(fake), "--manifest", str(manifest_path)]) == 2


def test_cli_realworld(tmp_path, capsys):
    csv = tmp_path / "rw.csv"
    csv.write_text("item,true,predicted,error\na,glass,glass,\nb,metal,glass,glare\n")
    assert main(["evaluate", "realworld", str(csv), "--out", str(tmp_path / "rw")]) == 0
    assert "excluding errors 100.0%" in capsys.readouterr().out
    assert (tmp_path / "rw" / "realworld.png").is_file()
