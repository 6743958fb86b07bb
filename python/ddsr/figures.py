"""Figures: matplotlib without a display, saved as PNG atomically (curves and comparisons alike)."""

import io
from pathlib import Path

from .atomic import write_bytes_atomic

__all__ = ["pyplot", "save_figure"]


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path):
    """Save a matplotlib figure as PNG, atomically; returns the path."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    write_bytes_atomic(path, buffer.getvalue())
    return Path(path)
