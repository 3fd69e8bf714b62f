"""Checking the transfer advisor against a grid's measured best strategy.

For a study of a transfer grid that varies ``strategy`` and the target's
size (its ``best_per`` axis, normally ``target_fraction``), the advisor is
asked, for every seed's source run and every size, which strategy to use;
the answer is compared with the strategy of the study's best setting at that
size (highest mean test accuracy over seeds). A *hit* is advice equal to the
best strategy; an *allowed hit* also counts the rule's alternatives (e.g.
``scratch`` for a large, different target). The regret is the accuracy lost
by following the advice instead of the best.
"""

import csv
import math
from dataclasses import dataclass
from pathlib import Path

from convlstm_tl.errors import ConfigError
from convlstm_tl.files import write_atomically
from experiments.runner import collect_rows, grid_dirs, plan_grid
from experiments.summary import best_settings, summarize

COLUMNS = ("seed", "size", "n_labelled", "pad", "mmd2", "case", "advised", "alternatives", "best", "best_accuracy",
           "advised_accuracy", "regret", "hit", "allowed_hit")


@dataclass
class AdviceCheck:
    """The advice compared with a grid's best, per seed and size.

    Attributes:
        study: the study checked.
        size_axis: the axis that sizes the target.
        rows: one dict per (seed, size), keys :data:`COLUMNS`.
        hit_rate: fraction of rows whose advice is the best strategy.
        allowed_hit_rate: the same, counting the rule's alternatives as right.
        mean_regret: mean accuracy lost by following the advice (NaN when an
            advised strategy is not in the grid).
    """

    study: str
    size_axis: str
    rows: list
    hit_rate: float
    allowed_hit_rate: float
    mean_regret: float


def check_advice(grid, *, runs_dir="runs", data_dir=None, study=None, max_samples=None):
    """Ask the advisor for every seed and size of a finished strategy study, and score it.

    Args:
        grid: a transfer :class:`experiments.grid.Grid` that has been run.
        runs_dir: the runs folder the grid ran with.
        data_dir: folder of domain files.
        study: the study to check (default: the first with a ``strategy``
            axis and the grid's ``best_per`` axis).
        max_samples: samples per domain for the distance (default the
            advisor's).

    Returns:
        An :class:`AdviceCheck`.

    Raises:
        ConfigError: for a grid with no such study, or one not run yet.
    """
    from convlstm_tl.data.format import find_domain, open_domain
    from convlstm_tl.runs.resolve import load_run
    from convlstm_tl.strategies import advisor

    study = _pick_study(grid, study)
    size_axis = grid.best_per
    plan = plan_grid(grid, runs_dir=runs_dir, studies=[study])
    rows = collect_rows(grid, plan)
    if not rows:
        raise ConfigError(f"study {study} of grid {grid.name} has no finished runs; run it first with"
                          f" `python -m experiments run {grid.path or grid.name}`")
    axes = list(grid.studies[study].axes)
    summary = summarize(rows, axes)
    best = {b["fixed"][size_axis]: b for b in best_settings(summary, size_axis)}
    accuracy = {(e["setting"]["strategy"], e["setting"][size_axis]): e["accuracy_mean"] for e in summary}
    _, cell_runs = grid_dirs(grid, runs_dir=runs_dir)
    distances, checked, seen = {}, [], set()
    for planned in plan:
        cell = planned.cell
        size = cell.labels[size_axis]
        # One question per seed and size: the strategies of a size share the source run and the subset.
        if not planned.done or (cell.seed, size) in seen:
            continue
        seen.add((cell.seed, size))
        source_path = (cell_runs / cell.config.source_run if cell.source_config is not None
                       else Path(cell.config.source_run))
        if source_path not in distances:
            source = load_run(str(source_path), runs_dir)
            target_info = open_domain(find_domain(cell.config.target, data_dir))
            options = {} if max_samples is None else {"max_samples": max_samples}
            distances[source_path] = (source, target_info, advisor.domain_distance(
                source, target_info, data_dir=data_dir, normalization=cell.config.normalization, seed=cell.seed,
                **options))
        source, target_info, distance = distances[source_path]
        n_labelled = advisor.labelled_count(target_info, target_fraction=cell.config.target_fraction,
                                            target_per_class=cell.config.target_per_class, seed=cell.seed)
        advice = advisor.recommend(distance.pad, n_labelled, target_info.n_classes, n_blocks=source.n_blocks)
        winner = best[size]["setting"]["strategy"]
        advised_accuracy = accuracy.get((advice.strategy, size), math.nan)
        checked.append({
            "seed": cell.seed, "size": size, "n_labelled": n_labelled, "pad": distance.pad, "mmd2": distance.mmd2,
            "case": advice.case, "advised": advice.strategy, "alternatives": " ".join(advice.alternatives),
            "best": winner, "best_accuracy": best[size]["accuracy_mean"], "advised_accuracy": advised_accuracy,
            "regret": best[size]["accuracy_mean"] - advised_accuracy,
            "hit": advice.strategy == winner, "allowed_hit": winner in (advice.strategy, *advice.alternatives),
        })
    regrets = [row["regret"] for row in checked]
    return AdviceCheck(study=study, size_axis=size_axis, rows=checked,
                       hit_rate=sum(row["hit"] for row in checked) / len(checked),
                       allowed_hit_rate=sum(row["allowed_hit"] for row in checked) / len(checked),
                       mean_regret=float(sum(regrets) / len(regrets)))


def advice_markdown(grid, check):
    """The check as a Markdown table with the hit rates."""
    lines = [f"# Advisor check: grid {grid.name}, study {check.study}", "",
             "Advice of `python -m convlstm_tl.advise` per seed's source run and target size, against the"
             " strategy with the highest mean test accuracy over seeds at that size.", "",
             f"| seed | {check.size_axis} | labelled | PAD | MMD² | case | advised | best | best acc. | advised acc."
             " | hit |", "|" + "---|" * 11]
    for row in check.rows:
        advised = row["advised"] + (f" (or {row['alternatives']})" if row["alternatives"] else "")
        hit = "yes" if row["hit"] else ("allowed" if row["allowed_hit"] else "no")
        lines.append(f"| {row['seed']} | {row['size']} | {row['n_labelled']} | {row['pad']:.2f} | {row['mmd2']:.3f}"
                     f" | {row['case']} | {advised} | {row['best']} | {100 * row['best_accuracy']:.1f}"
                     f" | {_percent(row['advised_accuracy'])} | {hit} |")
    lines += ["", f"Hit rate: {check.hit_rate:.0%} ({sum(r['hit'] for r in check.rows)} of {len(check.rows)});"
                  f" counting the rule's alternatives: {check.allowed_hit_rate:.0%}; mean regret"
                  f" {_percent(check.mean_regret)} points of accuracy.", ""]
    return "\n".join(lines)


def write_advice_check(grid, check, out):
    """Write ``advice.csv`` and ``advice.md`` into ``out``; return their paths."""
    out = Path(out)

    def write_csv(f):
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        for row in check.rows:
            writer.writerow({k: f"{v:.6g}" if isinstance(v, float) else v for k, v in row.items()})

    text = advice_markdown(grid, check)
    return (write_atomically(out / "advice.csv", write_csv, newline=""),
            write_atomically(out / "advice.md", lambda f: f.write(text)))


def _pick_study(grid, study):
    if grid.kind != "transfer":
        raise ConfigError(f"grid {grid.name} trains source runs; the advisor checks transfer grids")
    usable = [name for name, s in grid.studies.items()
              if "strategy" in s.axes and grid.best_per in s.axes and len(s.axes) == 2]
    if study is None:
        if not usable:
            raise ConfigError(f"grid {grid.name} has no study whose only axes are strategy and {grid.best_per};"
                              " the advisor check needs one")
        return usable[0]
    if study not in usable:
        raise ConfigError(f"study {study!r} of grid {grid.name} cannot be checked: it needs exactly the axes"
                          f" strategy and {grid.best_per}; usable studies: {usable}")
    return study


def _percent(value):
    return "–" if math.isnan(value) else f"{100 * value:.1f}"
