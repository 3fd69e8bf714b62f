"""Figures of a grid's results, drawn on the Agg canvas like :mod:`convlstm_tl.evaluation.plots`
(no display needed, pyplot's global state untouched)."""

import math

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def plot_accuracy(entries, path, *, axes, x_axis=None, title=""):
    """Mean test accuracy per setting, with ± std error bars.

    With ``x_axis`` (e.g. ``"target_fraction"``) its labels are the x
    positions and every combination of the other axes is one line;
    otherwise each setting is one bar.

    Args:
        entries: one study's entries of :func:`experiments.summary.summarize`.
        path: the PNG file to write.
        axes: the study's axis names.
        x_axis: an axis to put on the x axis, or None.
        title: the figure's title.

    Returns:
        ``path``.
    """
    figure, plot = _figure(title)
    if x_axis is not None:
        xs = list(dict.fromkeys(entry["setting"][x_axis] for entry in entries))
        others = [axis for axis in axes if axis != x_axis]
        series = {}
        for entry in entries:
            key = ", ".join(f"{axis}={entry['setting'][axis]}" for axis in others) or "all"
            series.setdefault(key, {})[entry["setting"][x_axis]] = entry
        offsets = np.linspace(-0.15, 0.15, len(series)) if len(series) > 1 else [0.0]
        for offset, (label, by_x) in zip(offsets, series.items()):
            positions = [i + offset for i, x in enumerate(xs) if x in by_x]
            means = [100 * by_x[x]["accuracy_mean"] for x in xs if x in by_x]
            stds = [_zero_nan(100 * by_x[x]["accuracy_std"]) for x in xs if x in by_x]
            plot.errorbar(positions, means, yerr=stds, marker="o", capsize=3, label=label)
        plot.set_xticks(range(len(xs)), labels=xs)
        plot.set_xlabel(x_axis)
        plot.legend(fontsize=7, loc="best")
    else:
        labels = [_setting_label(entry, axes) for entry in entries]
        means = [100 * entry["accuracy_mean"] for entry in entries]
        stds = [_zero_nan(100 * entry["accuracy_std"]) for entry in entries]
        plot.barh(range(len(entries)), means, xerr=stds, capsize=3, color="tab:blue")
        plot.set_yticks(range(len(entries)), labels=labels, fontsize=7)
        plot.invert_yaxis()
    (plot.set_ylabel if x_axis is not None else plot.set_xlabel)("test accuracy (%), mean ± std over seeds")
    return _save(figure, path)


def plot_seconds(entries, path, *, axes, title=""):
    """Mean training seconds per setting, with ± std error bars (horizontal bars)."""
    figure, plot = _figure(title)
    labels = [_setting_label(entry, axes) for entry in entries]
    means = [entry["train_seconds_mean"] for entry in entries]
    stds = [_zero_nan(entry["train_seconds_std"]) for entry in entries]
    plot.barh(range(len(entries)), means, xerr=stds, capsize=3, color="tab:orange")
    plot.set_yticks(range(len(entries)), labels=labels, fontsize=7)
    plot.invert_yaxis()
    plot.set_xlabel("training seconds, mean ± std over seeds")
    return _save(figure, path)


def plot_learning_curves(curves, path, *, title=""):
    """Validation loss and accuracy per epoch of every run, early stopping on and off apart.

    Runs with ``patience`` 0 (early stopping off: every epoch runs, the best
    epoch's weights are kept) are drawn dashed; the others solid, ending
    where early stopping stopped them.

    Args:
        curves: dicts with ``label``, ``patience`` and ``history``
            (``{name: [value per epoch]}`` as in a run's ``history.csv``).
        path: the PNG file to write.
        title: the figure's title.

    Returns:
        ``path``.
    """
    figure = Figure(figsize=(11, 4.5))
    FigureCanvasAgg(figure)
    panels = figure.subplots(1, 2)
    colours = {}
    for curve in curves:
        key = curve["label"].rsplit(", seed", 1)[0]
        colour = colours.setdefault(key, f"C{len(colours) % 10}")
        style = "--" if not curve["patience"] else "-"
        for panel, metric in zip(panels, ("val_loss", "val_accuracy")):
            values = curve["history"].get(metric)
            if values:
                epochs = np.arange(1, len(values) + 1)
                panel.plot(epochs, values, style, color=colour, linewidth=1,
                           label=key if metric == "val_loss" and key not in _labels(panel) else None)
    for panel, metric in zip(panels, ("validation loss", "validation accuracy")):
        panel.set_xlabel("epoch")
        panel.set_ylabel(metric)
    if len(colours) <= 12:
        panels[0].legend(fontsize=6, loc="best")
    patiences = sorted({curve["patience"] for curve in curves})
    note = ", ".join("early stopping off (dashed)" if not p else f"patience {p} (solid)" for p in patiences)
    figure.suptitle(f"{title}\n{note}" if title else note, fontsize=9)
    return _save(figure, path)


def _figure(title):
    figure = Figure(figsize=(8, 5))
    FigureCanvasAgg(figure)
    plot = figure.add_subplot()
    if title:
        plot.set_title(title, fontsize=10)
    plot.grid(alpha=0.3)
    return figure, plot


def _save(figure, path):
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    return path


def _setting_label(entry, axes):
    return ", ".join(f"{axis}={entry['setting'][axis]}" for axis in axes if axis in entry["setting"])


def _labels(panel):
    return {line.get_label() for line in panel.get_lines()}


def _zero_nan(value):
    return 0.0 if math.isnan(value) else value
