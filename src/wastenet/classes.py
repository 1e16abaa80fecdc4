"""The model card's constants: the five classes, the "not sure" rule, the input size.

Every artifact carries its own card (``wastenet.meta.BundleMeta``: labels, input size,
mean/std, temperature); readers take them from it. What is defined here is what a card
is made from, and the defaults where no artifact is at hand yet (the data cache, the
augmentation preview, the benchmarks).
"""

CLASSES: tuple[str, ...] = ("cardboard", "glass", "metal", "paper", "plastic")
NOT_SURE = "not sure"
# The labels an item can take besides a class (a source's folder, a reviewed bin sample):
# something the bin does not sort (kept to measure "not sure" on), and something to leave out.
OOD = "ood"
IGNORE = "ignore"
# Below this top probability the bin answers NOT_SURE (evaluate reports the same rule).
# Meaningful across models once each is calibrated (wastenet calibrate).
CONFIDENCE_THRESHOLD = 0.7

# Paper (section 4.2.1): TrashNet photos are 384 high and 512 wide. Sizes are (height,
# width) everywhere, and the text form is HEIGHTxWIDTH.
FULL_RESOLUTION_HW: tuple[int, int] = (384, 512)


def input_size_for(resolution_pct: float) -> tuple[int, int]:
    """(height, width) of the model input at a given percentage of the full resolution."""
    h, w = FULL_RESOLUTION_HW
    return round(h * resolution_pct / 100), round(w * resolution_pct / 100)


# The shipped model's resolution (the presets named *_75): 288 x 384.
DEFAULT_RESOLUTION_PCT = 75.0
DEFAULT_INPUT_SIZE: tuple[int, int] = input_size_for(DEFAULT_RESOLUTION_PCT)


def size_text(size_hw: tuple[int, int]) -> str:
    """(288, 384) -> '288x384' (HEIGHTxWIDTH, as ``--size`` takes it)."""
    h, w = size_hw
    return f"{int(h)}x{int(w)}"
