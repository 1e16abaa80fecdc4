"""The five canonical recycling classes, in the index order every model uses."""

CLASSES: tuple[str, ...] = ("cardboard", "glass", "metal", "paper", "plastic")
NOT_SURE = "not sure"
# Below this top probability the bin answers NOT_SURE (evaluate reports the same rule).
# Meaningful across models once each is calibrated (wastenet calibrate).
CONFIDENCE_THRESHOLD = 0.7

# Paper (section 4.2.1): TrashNet photos are 512x384; 75 % resolution is 384x288.
FULL_RESOLUTION_WH: tuple[int, int] = (512, 384)


def input_size_for(resolution_pct: float) -> tuple[int, int]:
    """(height, width) of the model input at a given percentage of 512x384."""
    w, h = FULL_RESOLUTION_WH
    return round(h * resolution_pct / 100), round(w * resolution_pct / 100)
