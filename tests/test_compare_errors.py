"""The committee probe counts each model's errors, the shared ones, and the ensemble's."""

import numpy as np

from conftest import load_benchmark

compare_errors = load_benchmark("compare_errors")


def _onehot(classes, confidence=0.9, n_classes=3):
    p = np.full((len(classes), n_classes), (1 - confidence) / (n_classes - 1), np.float32)
    p[np.arange(len(classes)), classes] = confidence
    return p


def test_committee_counts_shared_errors_and_the_mean():
    truth = np.array([0, 1, 2, 0])
    a = _onehot([0, 2, 2, 1])  # wrong on item 1 and 3
    b = _onehot([0, 2, 2, 0])  # wrong on item 1
    c = _onehot([0, 1, 2, 1], confidence=0.4)  # wrong on item 3, unsure everywhere
    row = compare_errors.committee([a, b, c], truth, ["w", "x", "y", "z"])
    assert row["items"] == 4
    assert row["top1"] == [0.5, 0.75, 0.75]
    assert row["wrong"] == [2, 1, 1]
    assert row["wrong_in_k_of_n"] == {"1": 0, "2": 2, "3": 0}
    assert row["wrong_by"] == {"x": [0, 1], "z": [0, 2]}
    assert list(row["wrong_by"]) == ["x", "z"]
    # x: two confident models agree wrongly; z: a tie between a and b that c tips wrongly
    assert row["top1_mean_of_all"] == 0.5
    assert row["wrong_mean_of_all"] == ["x", "z"]


def test_an_item_every_model_gets_wrong_stays_wrong_in_the_mean():
    truth = np.array([0, 1])
    models = [_onehot([1, 1]), _onehot([2, 1])]
    row = compare_errors.committee(models, truth, ["hard", "easy"])
    assert row["wrong_in_k_of_n"] == {"1": 0, "2": 1}
    assert row["wrong_by"] == {"hard": [0, 1]}
    assert row["top1_mean_of_all"] == 0.5
    assert row["wrong_mean_of_all"] == ["hard"]
