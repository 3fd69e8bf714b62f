"""Aggregates of a grid's result rows: mean ± std per setting over seeds, and the best settings."""

import math

import numpy as np

# Result columns aggregated per setting.
METRICS = ("accuracy", "macro_f1", "source_accuracy", "n_train", "train_seconds", "epochs_run")


def summarize(rows, axes):
    """Mean and standard deviation of each metric per (study, setting), over seeds.

    Args:
        rows: result rows (dicts with ``study``, axis labels, ``seed`` and
            the :data:`METRICS`).
        axes: the grid's axis names.

    Returns:
        A list of dicts in first-appearance order: ``study``, ``setting``
        (``{axis: label}`` of the axes the study has), ``n`` (seeds), and per
        metric ``<metric>_mean`` and ``<metric>_std`` (sample standard
        deviation; NaN with one seed or no values).
    """
    groups = {}
    for row in rows:
        setting = tuple((axis, row[axis]) for axis in axes if row.get(axis) not in (None, ""))
        groups.setdefault((row["study"], setting), []).append(row)
    summary = []
    for (study, setting), members in groups.items():
        entry = {"study": study, "setting": dict(setting), "n": len(members)}
        for metric in METRICS:
            values = np.array([float(m[metric]) for m in members if m.get(metric) not in (None, "")])
            entry[f"{metric}_mean"] = float(values.mean()) if len(values) else math.nan
            entry[f"{metric}_std"] = float(values.std(ddof=1)) if len(values) > 1 else math.nan
        summary.append(entry)
    return summary


def best_settings(summary, best_per=None):
    """The setting with the highest mean accuracy, per study (and per ``best_per`` label).

    Args:
        summary: the output of :func:`summarize`.
        best_per: an axis held fixed (e.g. ``"target_fraction"``: the best
            setting at each fraction), or None for one best per study.

    Returns:
        A list of dicts: ``study``, ``fixed`` (``{best_per: label}`` or
        ``{}``), ``setting`` and ``accuracy_mean`` / ``accuracy_std`` of the
        winner, and ``runner_up_gap`` (its lead over the second best, NaN
        when alone).
    """
    groups = {}
    for entry in summary:
        fixed = {best_per: entry["setting"][best_per]} if best_per in entry["setting"] else {}
        groups.setdefault((entry["study"], tuple(fixed.items())), []).append(entry)
    best = []
    for (study, fixed), entries in groups.items():
        ranked = sorted(entries, key=lambda e: -e["accuracy_mean"])
        gap = ranked[0]["accuracy_mean"] - ranked[1]["accuracy_mean"] if len(ranked) > 1 else math.nan
        best.append({"study": study, "fixed": dict(fixed), "setting": ranked[0]["setting"],
                     "accuracy_mean": ranked[0]["accuracy_mean"], "accuracy_std": ranked[0]["accuracy_std"],
                     "runner_up_gap": gap})
    return best


def summary_markdown(grid, summary, best):
    """``summary.md``: a table per study (accuracy in %, seconds, epochs) and the best settings."""
    lines = [f"# Grid {grid.name}", ""]
    if grid.description:
        lines += [grid.description, ""]
    lines += [f"Seeds: {', '.join(map(str, grid.seeds))}. Accuracy and macro-F1 on the test split, in %,"
              " mean ± std over seeds; source kept: accuracy the transferred model keeps on the source's test"
              " split; labelled: target training samples used (subsets take whole recordings or groups, so"
              " two small fractions can round to the same subset); seconds: training time.", ""]
    for study in grid.studies:
        entries = [entry for entry in summary if entry["study"] == study]
        if not entries:
            continue
        axes = list(grid.studies[study].axes)
        lines += [f"## {study}", ""]
        if grid.studies[study].description:
            lines += [grid.studies[study].description, ""]
        header = [*axes, "n", "accuracy", "macro-F1", "source kept", "labelled", "seconds", "epochs"]
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for entry in entries:
            cells = [str(entry["setting"].get(axis, "")) for axis in axes]
            cells += [str(entry["n"]), _pm(entry, "accuracy", 100), _pm(entry, "macro_f1", 100),
                      _pm(entry, "source_accuracy", 100), _pm(entry, "n_train", 1, digits=0),
                      _pm(entry, "train_seconds", 1, digits=1),
                      _pm(entry, "epochs_run", 1, digits=1)]
            lines.append("| " + " | ".join(cells) + " |")
        lines += ["", "Best setting (highest mean accuracy):", ""]
        for winner in (b for b in best if b["study"] == study):
            fixed = ", ".join(f"{k}={v}" for k, v in winner["fixed"].items())
            setting = ", ".join(f"{k}={v}" for k, v in winner["setting"].items() if k not in winner["fixed"])
            gap = "" if math.isnan(winner["runner_up_gap"]) else \
                f", {100 * winner['runner_up_gap']:.1f} points ahead of the next"
            lines.append(f"- {fixed + ': ' if fixed else ''}**{setting or 'the only setting'}**"
                         f" ({_pm(winner, 'accuracy', 100)}{gap})")
        lines.append("")
    return "\n".join(lines)


def _pm(entry, metric, scale, digits=1):
    mean, std = entry[f"{metric}_mean"], entry[f"{metric}_std"]
    if math.isnan(mean):
        return "–"
    if math.isnan(std):
        return f"{scale * mean:.{digits}f}"
    return f"{scale * mean:.{digits}f} ± {scale * std:.{digits}f}"
