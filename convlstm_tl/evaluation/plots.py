"""Figures written next to results. Uses the Agg canvas directly, so it needs
no display and leaves pyplot's global state alone."""

import warnings

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def save_confusion_matrix(matrix, class_names, path, *, title=""):
    """Draw a confusion matrix (rows true, columns predicted) to a PNG file.

    Cells show counts; the colour shows the fraction of each true class, so
    small classes stay readable. Class names in scripts the font lacks are
    drawn as boxes, without matplotlib's warning per missing glyph.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Glyph .* missing from", category=UserWarning)
        _draw_confusion_matrix(matrix, class_names, path, title=title)


def _draw_confusion_matrix(matrix, class_names, path, *, title):
    matrix = np.asarray(matrix)
    totals = matrix.sum(axis=1, keepdims=True)
    fractions = np.divide(matrix, totals, out=np.zeros(matrix.shape, dtype=float), where=totals > 0)
    size = max(4.0, 0.6 * len(class_names) + 2.0)
    figure = Figure(figsize=(size, size * 0.9))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    image = axes.imshow(fractions, cmap="Blues", vmin=0.0, vmax=1.0)
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04, label="fraction of true class")
    ticks = np.arange(len(class_names))
    axes.set_xticks(ticks, labels=class_names, rotation=45, ha="right")
    axes.set_yticks(ticks, labels=class_names)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    if title:
        axes.set_title(title)
    for i in range(matrix.shape[0]):
        for j in range(matrix.shape[1]):
            axes.text(j, i, str(matrix[i, j]), ha="center", va="center",
                      color="white" if fractions[i, j] > 0.5 else "black", fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
