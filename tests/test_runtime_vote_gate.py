"""The majority vote (incl. the paper's index-average bug) and the presence gate."""

from __future__ import annotations

import numpy as np
import pytest

from wastenet.classes import CLASSES, NOT_SURE
from wastenet.runtime.gate import GateConfig, PresenceGate
from wastenet.runtime.vote import MajorityVote, paper_index_average


def feed(vote: MajorityVote, labels, conf=0.9):
    return [vote.add(label, conf, t=float(i)) for i, label in enumerate(labels)]


def test_new_class_wins_after_half_plus_one_votes():
    vote = MajorityVote(n=10, min_confidence=0.7, min_share=0.5)
    results = feed(vote, ["metal"] * 8)
    assert [r.label for r in results[:5]] == [None] * 5  # 5/10 is not more than half
    assert results[5].label == "metal" and results[5].changed  # 6 = N/2 + 1, as in eq. 1
    assert not any(r.changed for r in results[6:])  # no repeated signal


def test_change_only_when_winner_changes():
    vote = MajorityVote(n=4, min_confidence=0.5, min_share=0.5)
    out = feed(vote, ["paper"] * 6 + ["glass"] * 6)
    changes = [(i, r.label) for i, r in enumerate(out) if r.changed]
    assert changes == [(2, "paper"), (8, "glass")]


def test_low_confidence_is_not_sure_and_never_wins():
    vote = MajorityVote(n=5, min_confidence=0.7)
    results = [vote.add("glass", 0.65) for _ in range(10)]
    assert all(r.label is None and not r.changed for r in results)
    assert vote.entry("glass", 0.65) == NOT_SURE
    assert list(name for name, _ in vote.window) == [NOT_SURE] * 5


def test_not_sure_entries_dilute_the_window():
    vote = MajorityVote(n=10, min_confidence=0.7, min_share=0.5)
    for _ in range(5):
        vote.add("metal", 0.3)  # not sure
    results = [vote.add("metal", 0.95) for _ in range(5)]
    assert all(r.label is None for r in results)  # 5 sure of 10 slots is no majority
    assert vote.add("metal", 0.95).label == "metal"


def test_reset_lets_the_same_class_actuate_again():
    vote = MajorityVote(n=3, min_confidence=0.5)
    assert any(r.changed for r in feed(vote, ["paper"] * 3))
    vote.reset()
    assert any(r.changed for r in feed(vote, ["paper"] * 3))


def test_onset_is_capture_time_of_first_winning_entry():
    vote = MajorityVote(n=10, min_confidence=0.5)
    for t in range(3):
        vote.add("glass", 0.9, t=float(t))
    results = [vote.add("metal", 0.9, t=10.0 + t) for t in range(6)]
    assert results[-1].label == "metal" and results[-1].onset_t == 10.0


def test_cardboard_and_metal_never_vote_glass_unlike_the_paper():
    """The paper rounded the mean of class indices: cardboard(0)+metal(2) -> glass(1)."""
    window = ["cardboard", "metal"] * 5
    indices = [CLASSES.index(name) for name in window]
    assert CLASSES[paper_index_average(indices)] == "glass"  # the bug, reproduced
    vote = MajorityVote(n=10, min_confidence=0.5, min_share=0.5)
    results = feed(vote, window)
    assert all(r.label != "glass" for r in results)
    assert all(r.label is None for r in results)  # a 50/50 split has no majority: no door
    # A 6:4 split goes to the real majority, where the index mean still says glass.
    skewed = ["cardboard"] * 6 + ["metal"] * 4
    assert CLASSES[paper_index_average([CLASSES.index(n) for n in skewed])] == "glass"
    vote.reset()
    assert feed(vote, skewed)[-1].label == "cardboard"


def test_vote_rejects_bad_settings():
    with pytest.raises(ValueError):
        MajorityVote(n=0)
    with pytest.raises(ValueError):
        MajorityVote(min_share=1.0)


# ---------------------------------------------------------------- presence gate


def scene(obj: bool, rng, shift=0):
    img = np.full((96, 128, 3), 200, np.uint8)
    img = np.clip(img.astype(int) + rng.integers(-4, 5, img.shape), 0, 255).astype(np.uint8)
    if obj:
        img[30:70, 40 + shift : 90 + shift] = (40, 90, 200)
    return img


def test_gate_learns_background_and_detects_an_item():
    rng = np.random.default_rng(0)
    gate = PresenceGate(GateConfig(threshold=0.03))
    assert gate.update(scene(False, rng)) is False  # the first frame becomes the background
    assert [gate.update(scene(False, rng)) for _ in range(5)] == [False] * 5
    assert gate.update(scene(True, rng)) is True
    assert gate.last_score > 0.1
    assert gate.update(scene(False, rng)) is False


def test_gate_does_not_learn_a_present_item_into_the_background():
    rng = np.random.default_rng(1)
    gate = PresenceGate(GateConfig(threshold=0.03, learn_rate=0.5))
    gate.update(scene(False, rng))
    assert all(gate.update(scene(True, rng)) for _ in range(50))


def test_gate_follows_slow_lighting_changes():
    gate = PresenceGate(GateConfig(threshold=0.03, learn_rate=0.2))
    levels = list(range(150, 200, 2))
    results = [gate.update(np.full((48, 64, 3), v, np.uint8)) for v in levels]
    assert not any(results)


def test_gate_relearns_when_the_view_changes_for_good():
    """An item in view at start-up becomes the background; once it leaves, the gate recovers."""
    rng = np.random.default_rng(2)
    gate = PresenceGate(GateConfig(threshold=0.03, relearn_after=20))
    gate.update(scene(True, rng))  # started with an item in view
    empties = [gate.update(scene(False, rng)) for _ in range(30)]
    assert all(empties[:20]) and not any(empties[21:])
    assert gate.update(scene(True, rng, shift=10)) is True


def test_gate_off_always_present():
    gate = PresenceGate(GateConfig(enabled=False))
    assert gate.update(np.zeros((10, 10, 3), np.uint8)) is True


def test_gate_object_box_is_where_the_item_appeared():
    rng = np.random.default_rng(3)
    gate = PresenceGate(GateConfig(threshold=0.03))
    for _ in range(4):
        gate.update(scene(False, rng))
    assert gate.object_box(128, 96) is None  # nothing changed
    assert gate.update(scene(True, rng, shift=20)) is True
    x0, y0, x1, y1 = gate.object_box(1280, 960)  # a frame ten times the scene's size
    # The item covers x 600-1100, y 300-700 of such a frame; the grid is 20 px a cell.
    assert abs(x0 - 600) <= 40 and abs(x1 - 1100) <= 40
    assert abs(y0 - 300) <= 40 and abs(y1 - 700) <= 40
    gate.reset()
    assert gate.object_box(128, 96) is None
