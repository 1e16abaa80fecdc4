"""Figures are optional: matplotlib comes with the ``train`` extra, not the deploy install.

``pyplot()`` is matplotlib.pyplot on the headless Agg backend, or None where matplotlib
is not installed; callers then skip their ``.png`` and still write their JSON and
Markdown. The first miss in a process prints one note on stderr.
"""

from __future__ import annotations

import sys
from types import ModuleType

NOTE = (
    "note: matplotlib is not installed, so figures (.png) are skipped; JSON and Markdown "
    "are written (pip install matplotlib, or the train extra, to draw them)"
)
_noted = False


def pyplot() -> ModuleType | None:
    """matplotlib.pyplot on the Agg backend, or None (one note on stderr) without it."""
    global _noted
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        if not _noted:
            _noted = True
            print(NOTE, file=sys.stderr, flush=True)
        return None
    return plt
