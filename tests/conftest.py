"""Shared fixtures: the real data folder (skipped when absent) and tiny generated datasets."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from wastenet.classes import CLASSES

try:  # one thread: tests share two cores with each other and with training jobs
    import torch

    torch.set_num_threads(1)
except ImportError:  # the deploy-side install has no torch
    pass

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
BENCHMARKS = REPO / "benchmarks"


def load_benchmark(name: str):
    """Import benchmarks/NAME.py (a script folder, not a package) as a module."""
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# One colour per class: trivially separable, so a tiny model learns them in seconds.
CLASS_COLOURS = {
    "cardboard": (150, 100, 50),
    "glass": (40, 200, 90),
    "metal": (160, 160, 170),
    "paper": (250, 250, 240),
    "plastic": (30, 60, 220),
}


BACKGROUND = (30, 30, 30)  # the bin's dark floor


def item_image(colour, seed, size_wh=(64, 48)):
    """A coloured disc on the bin's dark, slightly noisy floor."""
    rng = np.random.default_rng(seed)
    w, h = size_wh
    img = np.clip(np.array(BACKGROUND) + rng.integers(-6, 7, (h, w, 3)), 0, 255)
    yy, xx = np.mgrid[0:h, 0:w]
    cy, cx = h / 2 + rng.integers(-4, 5), w / 2 + rng.integers(-6, 7)
    mask = (yy - cy) ** 2 + (xx - cx) ** 2 < (0.3 * h) ** 2
    img[mask] = np.clip(np.array(colour) + rng.integers(-15, 16, (h, w, 3)), 0, 255)[mask]
    return img.astype(np.uint8)


@pytest.fixture(scope="module")
def flat_colour_model(tmp_path_factory) -> Path:
    """A real ONNX nearest-colour model (48x64 input) fitted on one flat image per class."""
    pytest.importorskip("onnx")
    from wastenet.runtime.testing import write_colour_model

    path = tmp_path_factory.mktemp("model") / "colour.onnx"
    examples = {c: [np.full((48, 64, 3), rgb, np.uint8)] for c, rgb in CLASS_COLOURS.items()}
    write_colour_model(path, examples, input_hw=(48, 64))
    return path


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not (SHARED_DATA / "trashnet").is_dir():
        pytest.skip(f"needs the real images in {SHARED_DATA} (absent on this machine)")
    return SHARED_DATA


def make_image(colour, size_wh=(64, 48), seed=0, shape="disc") -> Image.Image:
    """A coloured object on a noisy light background."""
    rng = np.random.default_rng(seed)
    w, h = size_wh
    img = rng.integers(200, 256, size=(h, w, 3), dtype=np.uint8)
    yy, xx = np.mgrid[0:h, 0:w]
    cy, cx = h / 2 + rng.integers(-h // 8, h // 8 + 1), w / 2 + rng.integers(-w // 8, w // 8 + 1)
    r = min(h, w) * 0.3
    mask = (yy - cy) ** 2 + (xx - cx) ** 2 < r**2
    noise = rng.integers(-15, 16, size=(h, w, 3))
    obj = np.clip(np.array(colour)[None, None, :] + noise, 0, 255).astype(np.uint8)
    img[mask] = obj[mask]
    return Image.fromarray(img)


def make_image_folder(
    root: Path, per_class: int = 12, size_wh=(64, 48), classes=CLASSES, seed: int = 0
) -> Path:
    """A TrashNet-layout folder <root>/<class>/<class><i>.jpg of generated images
    (another ``seed`` draws other images of the same classes)."""
    for ci, name in enumerate(classes):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        colour = CLASS_COLOURS.get(name, (90, 90, 90))
        for i in range(per_class):
            make_image(colour, size_wh, seed=seed + ci * 1000 + i).save(folder / f"{name}{i}.jpg")
    return root


@pytest.fixture(scope="module")
def two_source_manifest(tmp_path_factory) -> Path:
    """Sources ``alpha`` and ``beta``, 8 generated images per class each."""
    from wastenet.data.split import build_split

    tmp = tmp_path_factory.mktemp("two_sources")
    roots = [
        make_image_folder(tmp / "alpha", per_class=8, seed=0),
        make_image_folder(tmp / "beta", per_class=8, seed=500),
    ]
    manifest = tmp / "manifest.json"
    build_split(roots, progress=False).manifest.save(manifest)
    return manifest


@pytest.fixture
def tiny_image_folder(tmp_path) -> Path:
    return make_image_folder(tmp_path / "tiny")


@pytest.fixture(scope="module")
def tiny_manifest(tmp_path_factory) -> Path:
    """One generated source, 16 images per class (64x48): the training tests' data."""
    from wastenet.data.split import build_split

    root = make_image_folder(tmp_path_factory.mktemp("imgs"), per_class=16, size_wh=(64, 48))
    out = tmp_path_factory.mktemp("split") / "manifest.json"
    build_split([root], progress=False).manifest.save(out)
    return out


def tiny_config(manifest: Path, tmp: Path, **over):
    """A training config for ``tiny_efficientnet`` at 48x64 that trains in seconds."""
    from wastenet.train.config import load_train_config

    data = {
        "manifest": str(manifest),
        "model": "tiny_efficientnet",
        "pretrained": False,
        "resolution_pct": 12.5,  # 48x64
        "batch_size": 8,
        "cache_dir": str(tmp / "cache"),
        "augment": {"preset": "table3"},
        "freeze_stem_blocks": 0,
        "label_smoothing": 0.0,
        "schedule": "constant",
        "phases": [
            {"name": "main", "epochs": 4, "lr": 3e-3},
            {"name": "consolidation", "epochs": 1, "lr": 3e-4},
        ],
    }
    data.update(over)
    return load_train_config("lite0_mixed_75", data)


CHROMIUM = next(
    (p for p in (shutil.which("chromium"), shutil.which("chromium-browser"), "/usr/bin/chromium")
     if p and Path(p).is_file()),
    None,
)  # fmt: skip


@pytest.fixture(scope="session")
def browser():
    """A headless Chromium (Debian's ``chromium``, driven by Playwright) for our HTML pages;
    the test skips where either is missing."""
    if CHROMIUM is None:
        pytest.skip("no Chromium installed (apt-get install chromium): browser test skipped")
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="Playwright is not installed (pip install -e '.[dev]')"
    )
    with sync_api.sync_playwright() as pw:
        # the system Chromium, not a downloaded one; no sandbox: CI runs as root
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield chromium
        chromium.close()


def page_errors(page) -> list[str]:
    """Console errors, page errors and failed requests of ``page``, as they happen."""
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("requestfailed", lambda r: errors.append(f"request failed: {r.url}"))
    return errors
