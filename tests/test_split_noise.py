"""The split-noise probe counts discordant items, tests them exactly, and sizes a split's noise."""

import math

import numpy as np
import pytest

from conftest import load_benchmark

compare_errors = load_benchmark("compare_errors")
split_noise = load_benchmark("split_noise")


def _probs(predicted, n_classes=3):
    p = np.full((len(predicted), n_classes), 0.05, np.float32)
    p[np.arange(len(predicted)), predicted] = 0.9
    return p


def test_chance_of_reaching_a_target_is_a_binomial_tail():
    assert split_noise.chance_at_least(0.96, 238, 1.0) == pytest.approx(1.0)
    assert split_noise.chance_at_least(0.5, 2, 0.5) == pytest.approx(0.75)  # 1 or 2 of 2
    # 96 % of 238 items is 228.48, so 229 right are needed
    direct = sum(math.comb(238, k) * 0.95**k * 0.05 ** (238 - k) for k in range(229, 239))
    assert split_noise.chance_at_least(0.96, 238, 0.95) == pytest.approx(direct)
    assert split_noise.chance_at_least(0.96, 238, 0.90) < 0.01


def test_split_noise_pools_splits_and_compares_with_the_first_model():
    truth = np.array([0, 1, 2, 0, 1])
    names = ["a", "b", "c", "d", "e"]
    val = compare_errors.committee(
        [_probs([0, 1, 2, 0, 0]), _probs([0, 1, 2, 1, 1])], truth, names
    )  # first wrong on e; second wrong on d
    test = compare_errors.committee(
        [_probs([0, 1, 0, 0, 1]), _probs([1, 1, 0, 0, 1])], truth, names
    )  # both wrong on c; second also wrong on a
    result = {"models": ["runs/one/model.safetensors", "runs/two/export/model.xml"],
              "splits": {"val": {"trashnet": val}, "test": {"trashnet": test}}}  # fmt: skip
    noise = split_noise.split_noise(result, "trashnet", target=0.8)
    first, second = noise["models"]
    assert first["pooled"]["right"] == 8 and second["pooled"]["right"] == 7
    assert second["splits"]["val"]["first_only_right"] == 1
    assert second["splits"]["val"]["this_only_right"] == 1
    assert second["splits"]["test"]["first_only_right"] == 1  # a; c is wrong in both
    assert second["splits"]["test"]["this_only_right"] == 0
    assert second["pooled"]["first_only_right"] == 2 and second["pooled"]["this_only_right"] == 1
    assert first["pooled"]["mcnemar_p"] == 1.0  # a model against itself
    assert noise["test_items"] == 5
    assert second["chance_to_reach_target"] == pytest.approx(
        split_noise.chance_at_least(0.8, 5, 0.7)
    )
    assert second["test_sd_points"] == pytest.approx(100 * math.sqrt(0.7 * 0.3 / 5))
    rows = split_noise.table(noise).splitlines()
    assert rows[2].startswith("| one |") and rows[3].startswith("| two |")


def test_a_source_without_a_test_split_is_refused():
    result = {"models": ["m"], "splits": {"val": {"trashnet": {}}}}
    with pytest.raises(ValueError, match="no 'test' split"):
        split_noise.split_noise(result, "trashnet", target=0.96)
