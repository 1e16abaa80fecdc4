"""Can a test split tell models apart, and how likely is a model to reach a target on it?

Run: python benchmarks/split_noise.py results/compare_errors.json --source trashnet --target 0.96
Reads the output of compare_errors.py (each model's mistakes, item by item, per split and
source). For each model: items right on every split and pooled over the splits; against
the first model, the exact (binomial) McNemar test on the items that exactly one of the
two gets right, per split and pooled; and, taking the pooled accuracy as the model's true
accuracy, the standard deviation of a score on the test split and the chance of scoring
at least the target there. Writes results/split_noise.json.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from wastenet.evaluate.model_gate import mcnemar_exact
from wastenet.provenance import provenance

RESULTS = Path(__file__).resolve().parent / "results" / "split_noise.json"


def chance_at_least(target: float, items: int, accuracy: float) -> float:
    """P(a model of true ``accuracy`` scores >= ``target`` on ``items`` independent items)."""
    need = math.ceil(round(target * items, 9))
    return sum(
        math.comb(items, k) * accuracy**k * (1 - accuracy) ** (items - k)
        for k in range(need, items + 1)
    )


def discordant(row: dict, model: int) -> tuple[int, int]:
    """(items only model 0 gets right, items only ``model`` gets right) in one committee row."""
    first_only = this_only = 0
    for wrong in row["wrong_by"].values():
        first_only += model in wrong and 0 not in wrong
        this_only += 0 in wrong and model not in wrong
    return first_only, this_only


def split_noise(result: dict, source: str, target: float, test_split: str = "test") -> dict:
    """Per-model counts, McNemar against model 0, and the chance of reaching ``target``."""
    splits = {s: rows[source] for s, rows in result["splits"].items() if source in rows}
    if test_split not in splits:
        raise ValueError(f"no {test_split!r} split for source {source!r} in the results")
    test_items = splits[test_split]["items"]
    models = []
    for m, name in enumerate(result["models"]):
        entry: dict = {"model": name, "splits": {}}
        pooled = {"right": 0, "items": 0, "first_only_right": 0, "this_only_right": 0}
        for split, row in splits.items():
            right = row["items"] - row["wrong"][m]
            first_only, this_only = discordant(row, m)
            entry["splits"][split] = {
                "right": right,
                "items": row["items"],
                "top1": right / row["items"],
                "first_only_right": first_only,
                "this_only_right": this_only,
                "mcnemar_p": mcnemar_exact(first_only, this_only),
            }
            pooled["right"] += right
            pooled["items"] += row["items"]
            pooled["first_only_right"] += first_only
            pooled["this_only_right"] += this_only
        accuracy = pooled["right"] / pooled["items"]
        pooled["top1"] = accuracy
        pooled["mcnemar_p"] = mcnemar_exact(pooled["first_only_right"], pooled["this_only_right"])
        entry["pooled"] = pooled
        entry["test_sd_points"] = 100 * math.sqrt(accuracy * (1 - accuracy) / test_items)
        entry["chance_to_reach_target"] = chance_at_least(target, test_items, accuracy)
        models.append(entry)
    return {"source": source, "target": target, "test_split": test_split,
            "test_items": test_items, "models": models}  # fmt: skip


def label(model: str) -> str:
    """A short name for a model path: its run folder for runs/NAME/model.* or .../export/model.*."""
    path = Path(model)
    if path.stem != "model":
        return path.stem
    return path.parent.parent.name if path.parent.name == "export" else path.parent.name


def table(noise: dict) -> str:
    splits = list(noise["models"][0]["splits"])
    head = ["model", *splits, "pooled", "McNemar p vs first (pooled)", "test SD",
            f"P(test >= {noise['target']:.1%})"]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "| --- |" + " ---: |" * (len(head) - 1)]
    for m in noise["models"]:
        cells = [f"{s['right']}/{s['items']} ({s['top1']:.1%})" for s in m["splits"].values()]
        p = m["pooled"]
        cells += [
            f"{p['right']}/{p['items']} ({p['top1']:.1%})",
            f"{p['first_only_right']} vs {p['this_only_right']}: {p['mcnemar_p']:.2f}",
            f"{m['test_sd_points']:.2f} points",
            f"{m['chance_to_reach_target']:.2f}",
        ]
        lines.append("| " + " | ".join([label(m["model"]), *cells]) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("compare_errors", help="a JSON file written by compare_errors.py")
    parser.add_argument("--source", default="trashnet")
    parser.add_argument("--target", type=float, default=0.96)
    parser.add_argument("--test-split", default="test")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()
    try:
        result = json.loads(Path(args.compare_errors).read_text())
        noise = split_noise(result, args.source, args.target, args.test_split)
    except (OSError, ValueError, KeyError) as e:
        raise SystemExit(
            f"cannot read {args.compare_errors} as compare_errors.py output: {e}"
        ) from None
    print(table(noise))
    Path(args.out).write_text(json.dumps({**noise, "provenance": provenance()}, indent=1))
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
