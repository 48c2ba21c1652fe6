"""Shared figure helpers: annotated heatmaps in the paper's style, and saving a figure
together with the numbers behind it (PNG + JSON, both written atomically)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .io import atomic_path, write_json


def heatmap(ax, matrix, row_labels: Sequence[str], col_labels: Sequence[str], *,
            fmt: str = "{:.0f}", scale: float = 100.0, vmin=None, vmax=None,
            cmap: str = "RdYlGn", title: str | None = None, annotate: bool = True,
            xlabel: str | None = None, ylabel: str | None = None):
    """Draw ``matrix`` ``[rows, cols]`` as an annotated heatmap (values shown times ``scale``)."""
    m = np.asarray(matrix, dtype=float)
    im = ax.imshow(m, cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto")
    ax.set_xticks(range(len(col_labels)), labels=col_labels, rotation=90, fontsize=7)
    ax.set_yticks(range(len(row_labels)), labels=row_labels, fontsize=7)
    if annotate and m.size <= 2500:
        size = 7 if max(m.shape) <= 16 else 5
        for i in range(m.shape[0]):
            for j in range(m.shape[1]):
                if np.isfinite(m[i, j]):
                    ax.text(j, i, fmt.format(m[i, j] * scale), ha="center", va="center",
                            fontsize=size, color="black")
    if title:
        ax.set_title(title, fontsize=9)
    if xlabel:
        ax.set_xlabel(xlabel, fontsize=8)
    if ylabel:
        ax.set_ylabel(ylabel, fontsize=8)
    return im


def save_figure(fig, path: str | Path, data: dict[str, Any], dpi: int = 130) -> Path:
    """Save ``fig`` as ``path`` (.png) and ``data`` as the JSON beside it; return the PNG path."""
    from .parallel import on_main
    path = Path(path).with_suffix(".png")

    def write():  # data-parallel: the main process writes (see parallel.on_main)
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format="png")
    on_main(write)
    write_json(path.with_suffix(".json"), data)
    return path
