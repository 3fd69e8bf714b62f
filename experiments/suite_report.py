"""A suite's results: the rows of ``results.csv``, the tables of ``summary.md`` and the win/loss verdicts.

Rows come from the runs on disk (:func:`collect_suite`) or from a grid just
run; :func:`aggregate` takes mean ± std over seeds, :func:`comparison_rows`
sets the best ConvLSTM option against the best baseline, and
:func:`write_suite_outputs` writes both files.
"""

import csv
import json
import math
from pathlib import Path

import numpy as np

from convlstm_tl.config import TransferConfig
from convlstm_tl.files import write_atomically
from convlstm_tl.jsonio import load_json
from experiments.runner import OK, _finished, collect_rows, csv_value
from experiments.suite import METHOD_AXIS
from experiments.suite_plan import plan_suite

# Differences of mean accuracy within this many points are ties.
TIE_POINTS = 1.0
RESULT_COLUMNS = ("pair", "source", "target", "model", "kind", "trained_on", "domain", "target_fraction", "seed",
                  "accuracy", "macro_f1", "n_train", "seconds", "run", "status", "reason")
# Values of the ``kind`` column.
CONVLSTM, SOURCE_RUN, ZERO_SHOT, BASELINE = "convlstm", "source", "zero-shot", "baseline"
SOURCE_MODEL, ZERO_SHOT_MODEL = "ConvLSTM source run", "ConvLSTM zero-shot"


# ------------------------------------------------------------------ results


def collect_suite(suite, *, runs_dir="runs", data_dir=None):
    """The rows of ``results.csv`` from the finished runs on disk (nothing is run)."""
    return _suite_rows(plan_suite(suite, runs_dir=runs_dir, data_dir=data_dir), {}, {})


def _suite_rows(plans, grid_rows, failed):
    rows = []
    for plan in plans:
        rows += _pair_rows(plan, grid_rows.get(plan.pair.name), failed)
    return rows


def _pair_rows(plan, grid_rows, failed):
    pair = plan.pair
    common = {"pair": pair.name, "source": pair.source, "target": pair.target}
    rows = []
    for seed, run_dir in plan.source_runs.items():
        key = f"{pair.name}/runs/{run_dir.name}"
        if _finished(run_dir):
            metrics, record = load_json(run_dir / "metrics.json"), load_json(run_dir / "config.json")
            n_train = ((record.get("domain") or {}).get("split_sizes") or {}).get("train")
            rows.append({**common, "model": SOURCE_MODEL, "kind": SOURCE_RUN, "trained_on": "source",
                         "domain": pair.source, "target_fraction": "", "seed": seed,
                         "accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"], "n_train": n_train,
                         "seconds": metrics.get("train_seconds"), "run": run_dir.name, "status": OK, "reason": ""})
            zero_shot = plan.zero_shot_dir / f"{run_dir.name}.json"
            if zero_shot.is_file():
                scores = load_json(zero_shot)
                rows.append({**common, "model": ZERO_SHOT_MODEL, "kind": ZERO_SHOT, "trained_on": "source",
                             "domain": pair.target, "target_fraction": "", "seed": seed,
                             "accuracy": scores["accuracy"], "macro_f1": scores["macro_f1"], "n_train": n_train,
                             "seconds": scores.get("eval_seconds"), "run": run_dir.name, "status": OK, "reason": ""})
        elif key in failed:
            rows.append({**common, "model": SOURCE_MODEL, "kind": SOURCE_RUN, "trained_on": "source",
                         "domain": pair.source, "target_fraction": "", "seed": seed, "run": run_dir.name,
                         "status": "failed", "reason": failed[key][1]})
    if grid_rows is None:
        grid_rows = collect_rows(pair.grid, plan.cells)
    for row in grid_rows:
        status = row.get("status", OK)
        rows.append({**common, "model": row[METHOD_AXIS], "kind": CONVLSTM, "trained_on": "target",
                     "domain": pair.target, "target_fraction": row["target_fraction"], "seed": row["seed"],
                     "accuracy": row.get("accuracy"), "macro_f1": row.get("macro_f1"), "n_train": row.get("n_train"),
                     "seconds": row.get("train_seconds"), "run": row["run"], "status": status,
                     "reason": row.get("reason", "")})
    first_label = next(iter(pair.fractions), None)
    for job in plan.baselines:
        name = f"{pair.name}/baselines/{job.run_dir.name}"
        if not _finished(job.run_dir):
            if name in failed:
                rows.append({**common, "model": "baselines", "kind": BASELINE, "trained_on": "",
                             "domain": pair.target, "target_fraction": job.label, "seed": job.seed,
                             "run": job.run_dir.name, "status": "failed", "reason": failed[name][1]})
            continue
        from convlstm_tl.baselines.record import load_baseline_run

        run = load_baseline_run(job.run_dir.name, runs_dir=job.run_dir.parent)
        for row in run.rows:
            scored = [(pair.target, job.label)]
            if row.trained_on == "source" and job.label == first_label:
                # Trained on the source alone: the same model at every fraction; its source score once.
                scored.insert(0, (pair.source, ""))
            for domain, label in scored:
                cell = row.metrics.get(domain) or {}
                if cell.get("accuracy") is None:
                    continue
                rows.append({**common, "model": f"{row.method} ({row.trained_on})", "kind": BASELINE,
                             "trained_on": row.trained_on, "domain": domain, "target_fraction": label,
                             "seed": job.seed, "accuracy": cell["accuracy"], "macro_f1": cell["macro_f1"],
                             "n_train": row.n_train, "seconds": row.fit_seconds, "run": job.run_dir.name,
                             "status": OK, "reason": ""})
    return rows


def write_suite_outputs(suite, plans, rows, out):
    """Write ``results.csv`` and ``summary.md`` (each atomically) into ``out``; return ``{what: path}``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)

    def write_csv(f):
        writer = csv.DictWriter(f, fieldnames=RESULT_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({key: csv_value(row.get(key)) for key in RESULT_COLUMNS})

    text = suite_markdown(suite, plans, rows)
    return {"results": write_atomically(out / "results.csv", write_csv, newline=""),
            "summary": write_atomically(out / "summary.md", lambda f: f.write(text))}


# ------------------------------------------------------------------ summary


def aggregate(rows):
    """Mean ± std of accuracy, macro-F1, n_train and seconds per (pair, model, domain, fraction), over seeds.

    Returns:
        ``{(pair, model, domain, fraction label): entry}``, entries with
        ``n`` (seeds), ``kind``, ``trained_on`` and ``<metric>_mean`` /
        ``<metric>_std`` (sample std; NaN with one seed).
    """
    groups = {}
    for row in rows:
        if row.get("status", OK) != OK:
            continue
        key = (row["pair"], row["model"], row["domain"], str(row["target_fraction"]))
        groups.setdefault(key, []).append(row)
    summary = {}
    for key, members in groups.items():
        entry = {"n": len(members), "kind": members[0]["kind"], "trained_on": members[0]["trained_on"],
                 "model": key[1]}
        for metric in ("accuracy", "macro_f1", "n_train", "seconds"):
            values = np.array([float(m[metric]) for m in members if m.get(metric) not in (None, "")])
            entry[f"{metric}_mean"] = float(values.mean()) if len(values) else math.nan
            entry[f"{metric}_std"] = float(values.std(ddof=1)) if len(values) > 1 else math.nan
        summary[key] = entry
    return summary


def compare(a, b, tie=TIE_POINTS):
    """``"win (+d)"``, ``"loss (-d)"`` or ``"tie (±d)"``: mean accuracy of entry ``a`` against ``b``, in points."""
    if a is None or b is None:
        return "–"
    diff = 100 * (a["accuracy_mean"] - b["accuracy_mean"])
    word = "tie" if abs(diff) <= tie else ("win" if diff > 0 else "loss")
    return f"{word} ({diff:+.1f})"


def comparison_rows(plans, summary):
    """One dict per pair and target fraction: the best ConvLSTM option, the best baseline, and the two verdicts.

    ConvLSTM options are the pair's transfer methods (every entry of its
    ``strategies``, by label) at that fraction and the source run scored
    zero-shot; baselines are every method and training set at that fraction
    (trained on the source alone included). "default transfer vs scratch"
    compares the methods that are just ``TransferConfig().strategy`` and just
    ``scratch`` (see :func:`plain_method`).
    """
    default = TransferConfig().strategy
    rows = []
    for plan in plans:
        pair = plan.pair
        for label in pair.fractions:
            # Transfer methods first, so that a tie goes to the transfer rather than to zero-shot.
            convlstm = [summary.get((pair.name, method, pair.target, label)) for method in pair.strategies]
            convlstm = [e for e in [*convlstm, summary.get((pair.name, ZERO_SHOT_MODEL, pair.target, ""))] if e]
            baselines = [e for (p, _, d, f), e in summary.items()
                         if p == pair.name and d == pair.target and e["kind"] == BASELINE and f == label]
            best_convlstm = max(convlstm, key=lambda e: e["accuracy_mean"], default=None)
            best_baseline = max(baselines, key=lambda e: e["accuracy_mean"], default=None)
            plain = [summary.get((pair.name, plain_method(pair, strategy), pair.target, label))
                     for strategy in (default, "scratch")]
            rows.append({
                "pair": pair.name, "fraction": label, "best_convlstm": best_convlstm, "best_baseline": best_baseline,
                "convlstm_vs_baseline": compare(best_convlstm, best_baseline),
                "default_vs_scratch": compare(*plain),
            })
    return rows


def plain_method(pair, strategy):
    """The label of the pair's method that is ``strategy`` and nothing else (a strategy string), or None."""
    return next((label for label, options in pair.methods.items() if options == {"strategy": strategy}), None)


def suite_markdown(suite, plans, rows):
    """``summary.md``: per pair the source and target tables, then one comparison row per pair and fraction."""
    summary = aggregate(rows)
    default = TransferConfig().strategy
    lines = [f"# Suite {suite.name}", ""]
    if suite.description:
        lines += [suite.description, ""]
    lines += ["Test accuracy and macro-F1 in %, mean ± std over the seeds finished (n). ConvLSTM runs use the"
              " toolkit's defaults but for the options a pair sets. Baselines are trained on the source's train"
              " split (source), on the target's labelled subset, the very samples the transfer runs train on"
              " (target), or on both (pooled, when the classes match). Zero-shot: the source run scored on the"
              " target with no target label (when the classes match). Labelled: target training samples.", ""]
    for plan in plans:
        lines += _pair_markdown(plan, summary)
    lines += ["## All pairs", "",
              "Best by mean target accuracy: ConvLSTM options are the transfer methods and the source run"
              f" zero-shot, baselines every method and training set; a difference within {TIE_POINTS:g} point is a"
              f" tie. The default transfer strategy is `{default}` (`TransferConfig().strategy`).", "",
              "| pair | target labels | best ConvLSTM | best baseline | ConvLSTM best vs best baseline |"
              f" default transfer ({default}) vs scratch |",
              "|---|---|---|---|---|---|"]
    for row in comparison_rows(plans, summary):
        lines.append(f"| {row['pair']} | {_percent(row['fraction'])} | {_named(row['best_convlstm'])} |"
                     f" {_named(row['best_baseline'])} | {row['convlstm_vs_baseline']} | {row['default_vs_scratch']} |")
    return "\n".join(lines) + "\n"


def _pair_markdown(plan, summary):
    pair = plan.pair
    mine = {key[1:]: entry for key, entry in summary.items() if key[0] == pair.name}
    lines = [f"## {pair.name}: {pair.source} → {pair.target}", ""]
    if pair.description:
        lines += [pair.description, ""]
    prepare = "; ".join(f"`python -m data_prep {' '.join(step)} --out {plan.data_dir}`" for step in pair.prepare)
    lines += [f"Seeds {', '.join(map(str, pair.seeds))}." + (f" Data: {prepare}." if prepare else ""), ""]
    if not mine:
        return lines + ["No finished run yet.", ""]
    source_model = mine.get((SOURCE_MODEL, pair.source, ""))
    source_baselines = [e for (model, domain, label), e in mine.items()
                        if domain == pair.source and e["kind"] == BASELINE]
    best_source_baseline = max(source_baselines, key=lambda e: e["accuracy_mean"], default=None)
    lines += [f"Source {pair.source} (its test split):", "",
              "| model | n | accuracy | macro-F1 | training samples | seconds |", "|---|---|---|---|---|---|"]
    for title, entry in (("ConvLSTM source run", source_model),
                         (f"best source-only baseline: {best_source_baseline['model']}" if best_source_baseline
                          else "best source-only baseline", best_source_baseline)):
        lines.append(f"| {title} | {_n(entry)} | {_pm(entry, 'accuracy')} | {_pm(entry, 'macro_f1')} |"
                     f" {_pm(entry, 'n_train', 1, 0)} | {_pm(entry, 'seconds', 1, 1)} |")
    lines.append("")
    options = [f"`{label}`: {', '.join(f'{key} {_option(value)}' for key, value in method.items())}"
               for label, method in pair.methods.items() if method != {"strategy": label}]
    if options:
        lines += ["Transfer methods: " + "; ".join(options) + ".", ""]
    labels = list(pair.fractions)
    models = list(pair.strategies)
    zero_shot = mine.get((ZERO_SHOT_MODEL, pair.target, ""))
    if zero_shot is not None:
        models.append(ZERO_SHOT_MODEL)
    models += sorted({model for (model, domain, _), e in mine.items()
                      if domain == pair.target and e["kind"] == BASELINE},
                     key=lambda m: (m.split(" (")[0], _trained_on_order(m)))
    header = [f"{_percent(label)} {what}" for label in labels for what in ("accuracy", "macro-F1")]
    lines += [f"Target {pair.target} (its test split), by fraction of its training split labelled:", "",
              "| model | " + " | ".join(header) + " |", "|---|" + "---|" * len(header)]
    labelled = [_pm(mine.get((pair.strategies[0], pair.target, label)) if pair.strategies else None, "n_train", 1, 0)
                for label in labels]
    lines.append("| labelled | " + " | ".join(cell for n in labelled for cell in (n, "")) + " |")
    for model in models:
        cells = []
        for label in labels:
            entry = zero_shot if model == ZERO_SHOT_MODEL else mine.get((model, pair.target, label))
            cells += [_pm(entry, "accuracy"), _pm(entry, "macro_f1")]
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    lines.append("")
    return lines


def _option(value):
    return value if isinstance(value, str) else json.dumps(value)


def _trained_on_order(model):
    order = ("source", "source+val", "target", "pooled", "pooled+val")
    trained_on = model.rsplit("(", 1)[-1].rstrip(")")
    return order.index(trained_on) if trained_on in order else len(order)


def _named(entry):
    return "–" if entry is None else f"{entry['model']} {_pm(entry, 'accuracy')}"


def _n(entry):
    return "0" if entry is None else str(entry["n"])


def _percent(label):
    return f"{100 * float(label):g}%"


def _pm(entry, metric, scale=100, digits=1):
    if entry is None or math.isnan(entry[f"{metric}_mean"]):
        return "–"
    mean, std = entry[f"{metric}_mean"], entry[f"{metric}_std"]
    if math.isnan(std):
        return f"{scale * mean:.{digits}f}"
    return f"{scale * mean:.{digits}f} ± {scale * std:.{digits}f}"
