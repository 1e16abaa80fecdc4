"""Distillation: the loss, a student taught by a bundle or an ONNX teacher, its settings."""

from __future__ import annotations

import contextlib
import dataclasses

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from conftest import tiny_config
from wastenet.errors import ConfigError
from wastenet.train.loop import train


def test_distill_loss_is_temperature_scaled_kl():
    from wastenet.train.distill import distill_loss

    torch.manual_seed(0)
    teacher_logits, student = torch.randn(4, 5), torch.randn(4, 5, requires_grad=True)
    soft = torch.softmax(teacher_logits / 2.0, dim=1)
    same = distill_loss(teacher_logits, soft, 2.0)
    assert same.shape == (4,) and float(same.abs().max()) == pytest.approx(0.0, abs=1e-6)
    log_s = torch.log_softmax(student / 2.0, dim=1)
    manual = 4.0 * (soft * (soft.log() - log_s)).sum(1)  # per row
    loss = distill_loss(student, soft, 2.0)
    assert torch.allclose(loss, manual) and bool((loss.detach() > 0).all())
    loss.mean().backward()
    with torch.no_grad():  # one gradient step moves the student towards the teacher
        assert distill_loss(student - 0.5 * student.grad, soft, 2.0).mean() < loss.mean()


def test_student_learns_from_a_teacher_alone(tiny_manifest, tmp_path):
    """distill_weight 1: no label term at all, yet the student learns the classes."""
    teacher = train(tiny_config(tiny_manifest, tmp_path), tmp_path / "teacher", progress=False)
    phases = [{"name": "main", "epochs": 4, "lr": 3e-3}]
    cfg = tiny_config(
        tiny_manifest, tmp_path, phases=phases, teachers=[str(teacher)], distill_weight=1.0,
        seed=1, calibrate=False,
    )  # fmt: skip
    train(cfg, tmp_path / "student", progress=False)
    from wastenet.meta import read_bundle_meta

    student = read_bundle_meta(tmp_path / "student" / "model.safetensors").metrics
    assert student["val"]["acc"] >= 0.6  # chance is 0.2


def test_an_exported_teacher_teaches_what_its_bundle_does(tiny_manifest, tmp_path):
    """A shipped ONNX (calibrated softmax inside) gives the soft labels of its bundle."""
    from wastenet.accelerate.onnx_export import export_onnx
    from wastenet.models import load_bundle
    from wastenet.train.distill import Teachers

    bundle = train(tiny_config(tiny_manifest, tmp_path), tmp_path / "teacher", progress=False)
    model, meta = load_bundle(bundle)
    calibrated = dataclasses.replace(meta, temperature=0.7)  # the artifact's softmax divides by it
    onnx = export_onnx(model.eval(), calibrated, tmp_path / "teacher.onnx")
    images = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (4, 48, 64, 3), np.uint8))
    from_bundle = Teachers([str(bundle)], 2.0, torch.device("cpu"))
    from_onnx = Teachers([str(onnx)], 2.0, torch.device("cpu"))
    expected = from_bundle.probs(images, contextlib.nullcontext)
    got = from_onnx.probs(images, contextlib.nullcontext)
    assert torch.allclose(got, expected, atol=1e-4)
    from_onnx.close()


def test_distill_sources_limit_the_teaching(two_source_manifest, tmp_path):
    """Teaching only ``beta`` with distill_weight 1 leaves ``alpha``'s rows their labels:
    a teacher that teaches no training source changes nothing at all."""
    from wastenet.train.loop import taught_rows

    teacher = train(tiny_config(two_source_manifest, tmp_path), tmp_path / "t", progress=False)
    plain = dict(sources=["alpha"], seed=3, calibrate=False)
    alone = train(tiny_config(two_source_manifest, tmp_path, **plain), tmp_path / "alone",
                  progress=False)  # fmt: skip
    untaught = tiny_config(two_source_manifest, tmp_path, teachers=[str(teacher)],
                           distill_weight=1.0, distill_sources=["beta"], **plain)  # fmt: skip
    same = train(untaught, tmp_path / "untaught", progress=False)
    a, b = load_file(alone), load_file(same)
    assert all(torch.equal(a[k], b[k]) for k in a)
    taught = tiny_config(two_source_manifest, tmp_path, teachers=[str(teacher)],
                         distill_weight=1.0, distill_sources=["alpha"], **plain)  # fmt: skip
    c = load_file(train(taught, tmp_path / "taught", progress=False))
    assert not all(torch.equal(a[k], c[k]) for k in a)

    class Two:
        def item(self, r):
            return type("It", (), {"source": ["alpha", "beta"][r % 2]})()

    assert taught_rows(Two(), [0, 1, 2], ["beta"], "cpu").tolist() == [0.0, 1.0, 0.0]
    assert taught_rows(Two(), [0, 1], None, "cpu").tolist() == [1.0, 1.0]
    with pytest.raises(ConfigError, match="distill_sources needs teachers"):
        tiny_config(two_source_manifest, tmp_path, distill_sources=["alpha"])
    with pytest.raises(ConfigError, match="distill_sources"):
        train(tiny_config(two_source_manifest, tmp_path, teachers=[str(teacher)],
                          distill_sources=["gamma"]), tmp_path / "bad")  # fmt: skip


def test_bad_teachers_and_distill_settings_are_clear(tiny_manifest, tmp_path):
    from wastenet.meta import BundleMeta
    from wastenet.models import create_model, save_bundle

    with pytest.raises(ConfigError, match="no such bundle"):
        train(tiny_config(tiny_manifest, tmp_path, teachers=["absent.safetensors"]), tmp_path / "a")
    other = tmp_path / "other.safetensors"
    labels = ["a", "b", "c", "d", "e"]
    save_bundle(create_model("tiny_efficientnet", 5, pretrained=False),
                BundleMeta("tiny_efficientnet", labels, [48, 64], [0.5] * 3, [0.5] * 3), other)  # fmt: skip
    with pytest.raises(ConfigError, match="classes"):
        train(tiny_config(tiny_manifest, tmp_path, teachers=[str(other)]), tmp_path / "b")
    with pytest.raises(ConfigError, match="distill_weight"):
        tiny_config(tiny_manifest, tmp_path, distill_weight=1.5)
