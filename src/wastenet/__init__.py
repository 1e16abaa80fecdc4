"""WasteNet: train, accelerate, verify and deploy a recycling classifier for smart bins."""

__version__ = "0.1.0"
