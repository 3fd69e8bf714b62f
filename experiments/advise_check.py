"""Checking the transfer advisor against the best setting measured: in a grid's strategy study, or a suite's pairs.

For a study of a transfer grid that varies ``strategy`` and the target's
size (its ``best_per`` axis, normally ``target_fraction``), the advisor is
asked, for every seed's source run and every size, which strategy to use;
the answer is compared with the strategy of the study's best setting at that
size (highest mean test accuracy over seeds). A grid varies strategies only,
so the advice's options (adapter, adaptation) are not compared there.

For a benchmark suite (:mod:`experiments.suite`), the same is done per pair
(all pairs or the chosen ones), seed and target fraction, with the pair's
transfer methods in place of strategies: the advised strategy *and* options
(:attr:`~convlstm_tl.strategies.advisor.Advice.options`) are compared with
those of the method of highest mean target accuracy at that fraction. A
method is its pair's resolved ``TransferConfig`` (``Pair.methods`` on top of
the pair's ``base``), compared on ``strategy`` and the fields the advisor
sets (:data:`~convlstm_tl.strategies.advisor.OPTION_FIELDS`); of several
methods equal on those, one that sets nothing else stands for the advice.

A *hit* is advice equal to the best setting; an *allowed hit* also counts
the rule's alternatives (e.g. ``scratch`` for a large, different target,
each with the options the rule gives it). The regret is the accuracy lost by
following the advice instead of the best. Advice that no setting of the
study or pair measured is *not measured* ("not in the grid" / "not in the
suite"): its regret is NaN and it counts neither as a hit nor as a miss.
"""

import csv
import math
from dataclasses import dataclass
from pathlib import Path

from convlstm_tl.errors import ConfigError
from convlstm_tl.files import write_atomically
from experiments.runner import collect_rows, csv_value, grid_dirs, plan_grid
from experiments.summary import best_settings, summarize

COLUMNS = ("pair", "seed", "size", "n_labelled", "pad", "mmd2", "case", "advised", "options", "alternatives",
           "advised_setting", "best", "best_accuracy", "advised_accuracy", "regret", "hit", "allowed_hit")


@dataclass
class AdviceCheck:
    """The advice compared with the best measured, per (pair,) seed and size.

    Attributes:
        study: the study checked (a suite: the suite's name).
        size_axis: the axis that sizes the target.
        rows: one dict per (pair, seed, size), keys :data:`COLUMNS`; ``pair``
            is empty for a grid, ``advised_setting`` is the measured setting
            (strategy or method label) that stands for the advice, empty when
            none does (then ``hit`` and ``allowed_hit`` are None).
        hit_rate: fraction of the measured advice that is the best setting
            (NaN when no advice was measured).
        allowed_hit_rate: the same, counting the rule's alternatives as right.
        mean_regret: mean accuracy lost by following the measured advice.
        mode: ``"grid"`` or ``"suite"``.
        unfinished: a suite's pairs skipped for having no finished transfer run.
    """

    study: str
    size_axis: str
    rows: list
    hit_rate: float
    allowed_hit_rate: float
    mean_regret: float
    mode: str = "grid"
    unfinished: tuple = ()

    @property
    def n_measured(self):
        """How many rows' advice was measured (the rates' denominator)."""
        return sum(row["advised_setting"] != "" for row in self.rows)


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
    study = _pick_study(grid, study)
    size_axis = grid.best_per
    plan = plan_grid(grid, runs_dir=runs_dir, studies=[study])
    rows = collect_rows(grid, plan)
    if not rows:
        raise ConfigError(f"study {study} of grid {grid.name} has no finished runs; run it first with"
                          f" `python -m experiments run {grid.path or grid.name}`")
    best, accuracy = _best_and_accuracy(rows, ["strategy", size_axis], size_axis)
    _, cell_runs = grid_dirs(grid, runs_dir=runs_dir)
    ask = _Advisor(runs_dir, data_dir, max_samples)
    checked, seen = [], set()
    for planned in plan:
        cell = planned.cell
        size = cell.labels[size_axis]
        # One question per seed and size: the strategies of a size share the source run and the subset.
        if not planned.done or (cell.seed, size) in seen:
            continue
        seen.add((cell.seed, size))
        source_path = (cell_runs / cell.config.source_run if cell.source_config is not None
                       else Path(cell.config.source_run))
        advice = ask(source_path, cell.config.target, normalization=cell.config.normalization, seed=cell.seed,
                     target_fraction=cell.config.target_fraction, target_per_class=cell.config.target_per_class)
        # A grid varies the strategy only: a setting is its strategy, whatever the advised options.
        strategies = {strategy: strategy for strategy, at in accuracy if at == size}
        checked.append(_compare(advice, "", cell.seed, size, keys=strategies, key=lambda strategy, options: strategy,
                                best=best[size]["setting"]["strategy"], best_accuracy=best[size]["accuracy_mean"],
                                accuracy={s: accuracy[(s, size)] for s in strategies}))
    return _scored(checked, study=study, size_axis=size_axis, mode="grid")


def check_suite_advice(suite, *, runs_dir="runs", data_dir=None, pairs=None, max_samples=None):
    """Ask the advisor for every pair, seed and target fraction of a run suite, and score it against its methods.

    Args:
        suite: a :class:`experiments.suite.Suite` that has been run (wholly or in part).
        runs_dir: the runs folder the suite ran with (its runs are in ``<runs_dir>/<suite>/<pair>``).
        data_dir: folder of the pairs' data folders (as for ``python -m experiments run``).
        pairs: names of the pairs to check (default all).
        max_samples: samples per domain for the distance (default the advisor's).

    Returns:
        An :class:`AdviceCheck` with ``mode`` ``"suite"``.

    Raises:
        ConfigError: for an unknown pair, or when no chosen pair has a finished transfer run.
    """
    from convlstm_tl.config import TransferConfig
    from convlstm_tl.strategies.advisor import OPTION_FIELDS
    from experiments.suite import METHOD_AXIS
    from experiments.suite_plan import plan_suite

    defaults = TransferConfig()

    def key(strategy, options):
        return strategy, tuple((name, options.get(name, getattr(defaults, name))) for name in OPTION_FIELDS)

    size_axis = "target_fraction"
    checked, unfinished = [], []
    for plan in plan_suite(suite, runs_dir=runs_dir, data_dir=data_dir, pairs=pairs):
        pair = plan.pair
        rows = collect_rows(pair.grid, plan.cells)
        if not rows:
            unfinished.append(pair.name)
            continue
        best, accuracy = _best_and_accuracy(rows, [METHOD_AXIS, size_axis], size_axis)
        configs = {planned.cell.labels[METHOD_AXIS]: planned.cell.config for planned in plan.cells}
        methods = {label: key(config.strategy, {name: getattr(config, name) for name in OPTION_FIELDS})
                   for label, config in configs.items()}
        # Of methods equal on what the advisor sets, one that sets nothing else stands for the advice.
        plain = sorted(methods, key=lambda label: bool(set(pair.methods[label]) - {"strategy", *OPTION_FIELDS}))
        normalization = pair.grid.base.get("normalization", defaults.normalization)
        ask = _Advisor(runs_dir, plan.data_dir, max_samples)
        seen = set()
        for planned in plan.cells:
            cell = planned.cell
            size = cell.labels[size_axis]
            if not planned.done or (cell.seed, size) in seen:
                continue
            seen.add((cell.seed, size))
            advice = ask(plan.source_runs[cell.seed], pair.target, normalization=normalization, seed=cell.seed,
                         target_fraction=cell.config.target_fraction,
                         target_per_class=cell.config.target_per_class)
            measured = {label: methods[label] for label in plain if (label, size) in accuracy}
            checked.append(_compare(advice, pair.name, cell.seed, size, keys=measured, key=key,
                                    best=best[size]["setting"][METHOD_AXIS], best_accuracy=best[size]["accuracy_mean"],
                                    accuracy={label: accuracy[(label, size)] for label in measured}))
    if not checked:
        raise ConfigError(f"suite {suite.name}: no chosen pair has a finished transfer run; run it first with"
                          f" `python -m experiments run {suite.path or suite.name}`")
    return _scored(checked, study=suite.name, size_axis=size_axis, mode="suite", unfinished=tuple(unfinished))


def advice_markdown(checked, check):
    """The check as a Markdown table with the hit rates (``checked``: the grid or suite, for its name)."""
    suite = check.mode == "suite"
    what = "suite" if suite else "grid"
    title = f"suite {checked.name}" if suite else f"grid {checked.name}, study {check.study}"
    best = ("the pair's transfer method (strategy and options)" if suite
            else "the strategy") + f" with the highest mean test accuracy over seeds at that {check.size_axis}"
    lines = [f"# Advisor check: {title}", "",
             f"Advice of `python -m convlstm_tl.advise` per seed's source run and target size, against {best}.", "",
             ("| pair " if suite else "") + f"| seed | {check.size_axis} | labelled | PAD | MMD² | case | advised"
             " | best | best acc. | advised acc. | hit |", "|" + "---|" * (12 if suite else 11)]
    for row in check.rows:
        advised = row["advised"] + (f" + {row['options']}" if row["options"] else "")
        advised += f" (or {row['alternatives']})" if row["alternatives"] else ""
        if suite and row["advised_setting"] and row["advised_setting"] != row["advised"]:
            advised += f" = `{row['advised_setting']}`"
        hit = (f"not in the {what}" if row["hit"] is None
               else "yes" if row["hit"] else "allowed" if row["allowed_hit"] else "no")
        lines.append((f"| {row['pair']} " if suite else "")
                     + f"| {row['seed']} | {row['size']} | {row['n_labelled']} | {row['pad']:.2f} | {row['mmd2']:.3f}"
                     f" | {row['case']} | {advised} | {row['best']} | {100 * row['best_accuracy']:.1f}"
                     f" | {_percent(row['advised_accuracy'])} | {hit} |")
    measured = [row for row in check.rows if row["hit"] is not None]
    not_measured = len(check.rows) - len(measured)
    lines += ["", f"Hit rate: {_rate(check.hit_rate)} ({sum(r['hit'] for r in measured)} of {len(measured)} measured"
                  f" advice{f'; {not_measured} not in the {what}' if not_measured else ''}); counting the rule's"
                  f" alternatives: {_rate(check.allowed_hit_rate)}; mean regret {_percent(check.mean_regret)} points"
                  " of accuracy.", ""]
    if check.unfinished:
        lines += [f"Pairs with no finished transfer run, not checked: {', '.join(check.unfinished)}.", ""]
    return "\n".join(lines)


def write_advice_check(checked, check, out):
    """Write ``advice.csv`` (None and NaN empty) and ``advice.md`` into ``out``; return their paths.

    ``checked`` is the grid or suite, for its name.
    """
    out = Path(out)

    def write_csv(f):
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        for row in check.rows:
            writer.writerow({key: csv_value(value) for key, value in row.items()})

    text = advice_markdown(checked, check)
    return (write_atomically(out / "advice.csv", write_csv, newline=""),
            write_atomically(out / "advice.md", lambda f: f.write(text)))


# ------------------------------------------------------------------ internals


class _Advisor:
    """Asks the advisor, measuring the distance once per source run, target and normalization."""

    def __init__(self, runs_dir, data_dir, max_samples):
        self.runs_dir, self.data_dir = runs_dir, data_dir
        self.max_samples = max_samples
        self.measured = {}

    def __call__(self, source_path, target, *, normalization, seed, target_fraction, target_per_class):
        from convlstm_tl.data.format import find_domain, open_domain
        from convlstm_tl.runs.resolve import load_run
        from convlstm_tl.strategies import advisor

        key = (str(source_path), target, normalization)
        if key not in self.measured:
            source = load_run(str(source_path), self.runs_dir)
            target_info = open_domain(find_domain(target, self.data_dir))
            options = {} if self.max_samples is None else {"max_samples": self.max_samples}
            distance = advisor.domain_distance(source, target_info, data_dir=self.data_dir,
                                               normalization=normalization, seed=seed, **options)
            self.measured[key] = (source, target_info, distance)
        source, target_info, distance = self.measured[key]
        return advisor.advice_for(source, target_info, distance, target_fraction=target_fraction,
                                  target_per_class=target_per_class, seed=seed)


def _best_and_accuracy(rows, axes, size_axis):
    """``({size: best entry}, {(setting label, size): mean accuracy})`` of a study's result rows."""
    summary = summarize(rows, axes)
    best = {b["fixed"][size_axis]: b for b in best_settings(summary, size_axis)}
    accuracy = {(e["setting"][axes[0]], e["setting"][size_axis]): e["accuracy_mean"] for e in summary}
    return best, accuracy


def _compare(advice, pair, seed, size, *, keys, key, best, best_accuracy, accuracy):
    """One row of :data:`COLUMNS`.

    ``keys`` maps each setting measured at this size (in order of preference)
    to what the advice is compared on, ``key(strategy, options)`` makes that of
    an advised setting, ``best`` is the best setting's label and ``accuracy``
    the settings' mean accuracies.
    """
    settings = advice.settings()
    advised_key = key(*settings[0])
    allowed = {key(*setting) for setting in settings}
    advised = next((label for label, setting in keys.items() if setting == advised_key), None)
    advised_accuracy = accuracy[advised] if advised is not None else math.nan
    return {
        "pair": pair, "seed": seed, "size": size, "n_labelled": advice.n_labelled, "pad": advice.distance.pad,
        "mmd2": advice.distance.mmd2, "case": advice.case, "advised": advice.strategy,
        "options": ", ".join(f"{name} {value}" for name, value in advice.options.items()),
        "alternatives": " ".join(advice.alternatives), "advised_setting": advised or "", "best": best,
        "best_accuracy": best_accuracy, "advised_accuracy": advised_accuracy,
        "regret": best_accuracy - advised_accuracy,
        "hit": None if advised is None else keys[best] == advised_key,
        "allowed_hit": None if advised is None else keys[best] in allowed,
    }


def _scored(rows, **fields):
    measured = [row for row in rows if row["hit"] is not None]

    def mean(values):
        return float(sum(values) / len(values)) if values else math.nan

    return AdviceCheck(rows=rows, hit_rate=mean([row["hit"] for row in measured]),
                       allowed_hit_rate=mean([row["allowed_hit"] for row in measured]),
                       mean_regret=mean([row["regret"] for row in measured]), **fields)


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


def _rate(value):
    return "–" if math.isnan(value) else f"{value:.0%}"
