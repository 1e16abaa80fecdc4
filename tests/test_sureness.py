"""The card's "not sure" rule: sureness scores, re-tempering from probabilities alone,
the card fields, and the bin and store reading the same number."""

from __future__ import annotations

import numpy as np
import pytest

from wastenet.errors import ModelFileError
from wastenet.meta import BundleMeta
from wastenet.sureness import NotSureRule, as_rule, parse_rule

LOGITS = np.array([[4.0, 1.0, 0.0, -1.0, 0.5], [0.2, 0.1, 0.0, 0.3, 0.25]])


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def meta(**fields) -> BundleMeta:
    return BundleMeta("m", list("abcde"), [12, 16], [0.5] * 3, [0.5] * 3, **fields)


def test_top_probability_is_the_default_and_what_old_cards_mean():
    probs = softmax(LOGITS)
    rule = NotSureRule.of(meta())
    assert rule.score == "top_probability" and rule.threshold == 0.7
    assert np.allclose(rule.sureness(probs), probs.max(axis=1))
    assert list(rule.sure(probs)) == [True, False]
    assert rule.describe() == "top probability below 0.7"


def test_retempering_from_probabilities_equals_softmax_of_the_logits_at_that_temperature():
    calibrated = softmax(LOGITS / 0.7)  # what an engine with T = 0.7 returns
    rule = NotSureRule(0.5, "top_probability", temperature=2.0, calibration_temperature=0.7)
    assert np.allclose(rule.sureness(calibrated), softmax(LOGITS / 2.0).max(axis=1), atol=1e-9)
    # a single row gives a single number, the same as in a batch
    assert rule.sureness(calibrated[0]) == pytest.approx(rule.sureness(calibrated)[0])


def test_certainty_reads_the_whole_distribution():
    rule = NotSureRule(0.5, "certainty")
    assert rule.sureness(np.full(5, 0.2)) == pytest.approx(0.0, abs=1e-12)
    assert rule.sureness(np.eye(5)[2]) == pytest.approx(1.0)
    # the same top probability, the rest spread or on one rival: the spread one is surer
    spread = np.array([0.6, 0.1, 0.1, 0.1, 0.1])
    rival = np.array([0.6, 0.4, 0.0, 0.0, 0.0])
    assert rule.sureness(spread) < rule.sureness(rival)  # entropy: spread is less certain
    expected = 1 + (spread * np.log(spread)).sum() / np.log(5)
    assert rule.sureness(spread) == pytest.approx(expected)


def test_the_card_carries_the_rule_and_a_threshold_overrides_only_the_bar():
    card = meta(temperature=0.7, not_sure_below=0.05, not_sure_score="certainty",
                not_sure_temperature=2.0)  # fmt: skip
    again = BundleMeta.from_json(card.to_json())
    rule = NotSureRule.of(again)
    assert (rule.score, rule.temperature, rule.threshold) == ("certainty", 2.0, 0.05)
    assert rule.calibration_temperature == 0.7
    assert NotSureRule.of(again, threshold=0.2).threshold == 0.2
    assert NotSureRule.of(again, threshold=0.2).score == "certainty"
    assert rule.describe() == "certainty at T=2 below 0.05"


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [("not_sure_score", "entropy", "one of top_probability, certainty"),
     ("not_sure_temperature", 0, "positive"),
     ("not_sure_temperature", "2", "positive")],
)  # fmt: skip
def test_a_bad_rule_on_a_card_is_one_clear_error(field, value, message):
    data = {**meta().__dict__, field: value}
    with pytest.raises(ModelFileError, match=message):
        BundleMeta.from_dict(data, origin="card.onnx")


def test_parse_rule_and_bare_thresholds():
    assert parse_rule("certainty@2") == ("certainty", 2.0)
    assert parse_rule("top_probability") == ("top_probability", None)
    assert parse_rule("certainty@") == ("certainty", None)  # an empty @ is no temperature
    with pytest.raises(ValueError, match="entropy"):
        parse_rule("entropy")
    for bad in ("certainty@-1", "certainty@x"):
        with pytest.raises(ValueError, match="@"):
            parse_rule(bad)
    assert as_rule(0.6) == NotSureRule(0.6)


def test_the_bin_votes_and_stores_by_the_cards_sureness(tmp_path):
    from wastenet.classes import NOT_SURE
    from wastenet.runtime.actuators import open_actuator
    from wastenet.runtime.doors import load_door_map
    from wastenet.runtime.loop import BinLoop
    from wastenet.runtime.sources import Frame
    from wastenet.runtime.store import SamplePolicy, SampleStore
    from wastenet.runtime.vote import MajorityVote

    # top probability 0.75 (sure by the default rule at 0.7), but the rest spread evenly:
    # certainty 0.36 at T=1, below the card's 0.5 -> "not sure"
    probs = np.array([0.04, 0.04, 0.75, 0.04, 0.13], np.float32)
    card = meta(not_sure_below=0.5, not_sure_score="certainty", not_sure_temperature=1.0)
    rule = NotSureRule.of(card)
    assert rule.sureness(probs) < 0.5 < 0.7 < probs.max()

    class Engine:
        def __init__(self):
            self.meta = card

        def predict(self, batch):
            return probs[None]

    class Camera:
        def __init__(self):
            blank = np.zeros((12, 16, 3), np.uint8)
            self.frames = iter([Frame(blank, float(i), i) for i in range(4)])

        def read(self):
            return next(self.frames, None)

        def close(self):
            pass

    seen = []
    doors = load_door_map()
    loop = BinLoop(Camera(), Engine(), MajorityVote(3, rule.threshold),
                   open_actuator("sim://", doors), doors, hooks=[("see", seen.append)])  # fmt: skip
    summary = loop.run()
    assert not summary.actuations and len(seen) == 4  # never sure: no door opens
    assert all(r.label == NOT_SURE for r in seen)
    assert all(r.confidence == pytest.approx(rule.sureness(probs)) for r in seen)

    store = SampleStore(tmp_path / "store", SamplePolicy.parse("uncertain", rule))
    row = store.offer(np.zeros((12, 16, 3), np.uint8), NOT_SURE, probs, None)
    assert row is not None  # uncertain by the card's rule, though its top is 0.75
    assert store.rows()[0]["confidence"] == pytest.approx(rule.sureness(probs))
