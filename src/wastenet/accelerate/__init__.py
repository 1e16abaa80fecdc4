"""Acceleration: one format table, exporters per format, one inference protocol.

Importing this package and loading ONNX/OpenVINO artifacts needs no torch.
"""

from wastenet.accelerate.engine import Engine, load_engine
from wastenet.accelerate.formats import FORMATS, Format, format_for_path, get_format

__all__ = ["FORMATS", "Engine", "Format", "format_for_path", "get_format", "load_engine"]
