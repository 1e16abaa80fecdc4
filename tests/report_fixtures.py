"""Small result files of every kind ``wastenet report`` reads, written by the real writers
where they are cheap (bench, realworld) and by hand in their shape otherwise."""

from __future__ import annotations

import json
from pathlib import Path

PROV = {"date": "2026-01-02T03:04:05+00:00", "machine": "test machine, 2 cores"}


def _prov(command: str) -> dict:
    return {"provenance": {"command": command, **PROV}}


def _write(path: Path, data: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1))
    return path


def _group(n: int, top1: float, ci: list[float]) -> dict:
    return {
        "n": n, "n_exact": n, "top1": top1, "top1_ci95": ci, "set_accuracy": top1, "ece": 0.03,
        "not_sure": {"not_sure_rate": 0.05, "accuracy_confident": 0.97},
    }  # fmt: skip


def bench_rows() -> list[dict]:
    def row(artifact, fmt, precision, p50):
        return {
            "artifact": artifact, "format": fmt, "precision": precision, "input_hw": [288, 384],
            "threads": 2, "load_s": 0.2, "warmup_s": 0.1, "p50_ms": p50, "p95_ms": p50 * 1.2,
            "p99_ms": p50 * 1.3, "mean_ms": p50, "ips_p50": 1000 / p50, "ips_measured": 1000 / p50,
            "peak_rss_mb": 150.0, "gpu_peak_mb": None, "size_mb": 13.5, "cpu_load": 1.9,
            "iters": 10,
        }  # fmt: skip

    return [
        row("runs/m/model.safetensors", "torch", "fp32", 60.0),
        row("runs/m/export/model.onnx", "onnx", "fp32", 20.0),
        row("runs/m/int8_ac/model.int8.xml", "openvino-int8", "int8", 10.0),
        row("runs/m/int8_plain/model.int8.xml", "openvino-int8", "int8", 8.0),
    ]


def make_results(root: Path) -> Path:
    """One of each kind under ``root``; returns ``root``."""
    from wastenet.accelerate.bench import write_results
    from wastenet.evaluate.realworld import evaluate_realworld

    _write(root / "eval" / "report.json", {
        "threshold": 0.7,
        "overall": _group(30, 0.9, [0.74, 0.97]),
        "per_source": {"trashnet": _group(20, 0.95, [0.76, 0.99]),
                       "web-mixed": _group(10, 0.8, [0.49, 0.94])},
        "model": {"path": "runs/m/export/model.onnx", "parameters": 3356405,
                  "file_size_mb": 13.5},
        **_prov("wastenet evaluate runs/m/export/model.onnx --manifest m.json --out runs/eval"),
    })  # fmt: skip
    write_results(bench_rows(), root / "bench")
    # no provenance: a result written before results recorded it
    _write(root / "verify" / "verify.json", {"max_drop": 0.3, "rows": [
        {"artifact": "runs/m/export/model.onnx", "format": "onnx", "accuracy": 90.0,
         "reference_accuracy": 90.0, "drop_points": 0.0, "passed": True},
        {"artifact": "runs/m/int8_ac/model.int8.xml", "format": "openvino-int8",
         "accuracy": 90.0, "reference_accuracy": 90.0, "drop_points": 0.0, "passed": True},
        {"artifact": "runs/m/int8_plain/model.int8.xml", "format": "openvino-int8",
         "accuracy": 88.8, "reference_accuracy": 90.0, "drop_points": 1.2, "passed": False},
    ]})  # fmt: skip
    run = root / "bin" / "20260102-030405"
    _write(run / "run.json", {"config": {"vote": 10}, "summary": {"fps": 17.0},
                              **_prov("wastenet run --source file://clip.mp4")})  # fmt: skip
    frames = [json.dumps({"i": i, "t": 100 + i / 17, "present": True}) for i in range(60)]
    (run / "timings.jsonl").write_text("\n".join(frames) + "\n")
    acts = [{"onset_t": 101.0 + k, "command_t": 101.36 + k, "servo_delay_s": 0.646, "ok": True}
            for k in range(2)]  # fmt: skip
    (run / "actuations.jsonl").write_text("\n".join(json.dumps(a) for a in acts) + "\n")
    _write(root / "power" / "power.json", {"power_mode": "MAXN", "states": [
        {"name": "idle", "mean_w": 1.9}, {"name": "loaded", "mean_w": 2.1},
        {"name": "inferring", "mean_w": 4.8, "ips": 16.0, "ips_per_w": 3.33,
         "j_per_inference": 0.3},
    ], **_prov("wastenet power protocol --model m.onnx --tegrastats-log t.log")})  # fmt: skip
    _write(root / "power" / "rapl.json", {
        "zones": {"intel-rapl:0 (package-0)": 100.0}, "mean_w": 20.0, "ips": 50.0,
        "ips_per_w": 2.5, "j_per_inference": 0.4, "idle_w": 5.0,
        **_prov("wastenet power rapl --model m.onnx --json rapl.json"),
    })  # fmt: skip
    _write(root / "shift" / "shift.json", {"format_version": 1, "mode": "existing", "folds": [
        {"name": "model", "model": "m.onnx", "scored": {"muell": {
            "role": "holdout", "n": 20, "top1_set": 0.85, "top1_set_ci95": [0.64, 0.95],
            "classes": ["glass", "paper"], "not_sure": {"not_sure_rate": 0.1},
            "per_class": {"glass": {"support": 10, "recall": 0.9},
                          "paper": {"support": 10, "recall": 0.8}}}}}],
        **_prov("wastenet shift --model m.onnx --trained-on trashnet --manifest m.json"),
    })  # fmt: skip
    csv = root / "outcomes.csv"
    rows = ["item,true,predicted,error"] + [f"i{k},glass,glass," for k in range(4)]
    rows += ["i4,glass,metal,glare", "i5,paper,paper,", "i6,paper,cardboard,"]
    csv.write_text("\n".join(rows) + "\n")
    evaluate_realworld(csv, root / "realworld")
    train = root / "train" / "lite0_run"
    train.mkdir(parents=True)
    (train / "config.yaml").write_text("name: lite0_mixed_75\nmodel: efficientnet_lite0\n")
    (train / "metrics.csv").write_text(
        "epoch,phase,train_loss,train_acc,val_loss,val_acc\n1,main,1.0,0.6,0.8,0.81\n"
        "2,main,0.8,0.7,0.6,0.87\n"
    )
    _write(
        train / "provenance.json", _prov("wastenet train lite0_mixed_75 --out runs/x")["provenance"]
    )
    _write(root / "loop.json", {"runs": [
        {"gate": False, "frames": 300, "inferred": 300, "fps": 60.0, "engine": "model.int8.xml",
         "engine_path": "runs/m/int8_ac/model.int8.xml", "stages": {"inference": {"share": 0.9}}},
        {"gate": True, "frames": 300, "inferred": 196, "fps": 95.0, "engine": "model.int8.xml",
         "engine_path": "runs/m/int8_ac/model.int8.xml", "stages": {"inference": {"share": 0.88}}},
    ], "memory": {"frames": 1000, "growth_pct": 0.1},
        **_prov("python benchmarks/bench_loop.py --engine runs/m/int8_ac/model.int8.xml")})  # fmt: skip
    _write(root / "notes.json", {"something": "else"})  # not a result: listed as skipped
    return root
