"""Reporting an evaluation: its Markdown, its report texts and its output folder.

:func:`format_markdown` renders the accuracy / macro-F1 matrix, the
baselines beside it, the forgetting table and the notes
(:mod:`convlstm_tl.evaluation.notes`);
:func:`report_header` heads each per-class report;
:func:`write_evaluation` writes every file into an output folder, all or
nothing, after :func:`check_output_dir` made sure that folder is ours to
replace. Confusion matrices are drawn by :mod:`convlstm_tl.evaluation.plots`.
"""

import hashlib
import logging
import math
import os
import re
import shutil
import tempfile
from pathlib import Path

from convlstm_tl.errors import UserError
from convlstm_tl.files import give_usual_permissions, replace_folder
from convlstm_tl.jsonio import save_json

log = logging.getLogger(__name__)

# What a forgetting figure that is not measured reads in the Markdown; no number.
NOT_MEASURED = "—"


def format_markdown(evaluation):
    """The evaluation as Markdown: the accuracy / macro-F1 matrix, the baselines, the forgetting table, the notes.

    The baselines (classical models of baseline runs) come in a block of
    their own under the runs' matrix, with the same columns and cells. A
    cell that is not scored reads ``n/a``; a forgetting figure that is not
    measured (a run that restored no source body, a source domain not
    evaluated) reads ``—``. The notes say why, each reason once.
    """
    lines = [f"## Accuracy / macro-F1 on the {evaluation.split} split", ""]
    if evaluation.runs:
        lines += _matrix(evaluation, "run", evaluation.runs)
        lines += ["", "Rows: runs; columns: domains. `*` scored on the classes the run shares with the domain only;"
                      " n/a: not scored (the notes say why)."]
    if evaluation.baselines:
        if evaluation.runs:
            lines.append("")
        lines += ["### Baselines", ""]
        lines += _matrix(evaluation, "baseline (trained on)", evaluation.baselines)
        lines += ["", "Classical models fitted by `python -m convlstm_tl.baseline` on the same domain files and"
                      " splits, scored from the predictions they recorded on each domain's test split. `*` scored"
                      " on the classes the model shares with the domain only; n/a: not scored (the notes say why)."
                      " They restore no source body, so they have no forgetting figure (—)."]
    if evaluation.forgetting:
        lines += ["", f"## Forgetting: accuracy on the source domain ({evaluation.split} split)", "",
                  "| run | strategy | source run | source domain | source accuracy before | after | lost (points) |",
                  "| --- | --- | --- | --- | ---: | ---: | ---: |"]
        lines += [_forgetting_line(row) for row in evaluation.forgetting]
        lines += ["", "Only runs that restored a source body can forget it; —: not measured (the notes say why)."]
    if evaluation.notes:
        lines += ["", "Notes:", ""] + [f"- {note}" for note in evaluation.notes]
    return "\n".join(lines) + "\n"


def _matrix(evaluation, title, rows):
    """The lines of a table of ``rows`` (labels) by the evaluation's domains."""
    lines = ["| " + title + " | " + " | ".join(evaluation.domains) + " |",
             "| --- |" + " ---: |" * len(evaluation.domains)]
    for row in rows:
        cells = [_matrix_cell(evaluation.results[row][domain]) for domain in evaluation.domains]
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    return lines


def _forgetting_line(row):
    """One row of the forgetting table; ``—`` in each figure that is not measured."""
    if row["lost"] is None:
        before = after = lost = NOT_MEASURED
    else:
        shared = "*" if row["classes"] == "shared" else ""
        before, after = f"{_number(row['before'])}{shared}", f"{_number(row['after'])}{shared}"
        lost = _number(row["lost_points"], ".1f")
    method = row.get("strategy")
    if method is not None and row.get("adaptation"):
        method = f"{method} + {row['adaptation']}"
    names = [method, row["source_run"], row["source_domain"]]
    strategy, source_run, source_domain = (NOT_MEASURED if name is None else name for name in names)
    return f"| {row['run']} | {strategy} | {source_run} | {source_domain} | {before} | {after} | {lost} |"


def _matrix_cell(cell):
    if cell["accuracy"] is None:
        return "n/a"
    shared = "*" if cell["class_alignment"]["classes"] == "shared" else ""
    return f"{cell['accuracy']:.3f} / {cell['macro_f1']:.3f}{shared}"


def _number(value, spec=".3f"):
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, spec)


def report_header(label, name, split, cell, *, noun="run"):
    """The first lines of the per-class report of ``cell``, the cell of run ``label`` on domain ``name``.

    ``noun`` names the row's kind in the first line: ``"run"``, or
    ``"baseline"`` for a classical model of a baseline run.
    """
    alignment = cell["class_alignment"]
    if cell["accuracy"] is None:
        header = f"{noun} {label} on domain {name} ({split} split): n/a, not scored: {cell['reason']}\n"
        if alignment["classes"] == "none":
            header += f"{alignment['note']}\n"
        return header
    header = f"{noun} {label} on domain {name} ({split} split), {cell['n_test']} samples scored\n"
    if alignment["classes"] == "shared":
        header += (f"SHARED CLASSES ONLY: {alignment['note']}; {alignment['n_left_out']} samples left out\n")
    elif alignment["classes"] == "reordered":
        header += f"{alignment['note']}\n"
    return header + "\n"


def file_stem(text):
    """``text`` made safe as part of a file name, distinct for distinct texts.

    Text that is already safe is kept; other text keeps its safe characters
    and gains a short hash of the whole, so ``日本`` and ``中国`` do not
    both become ``_``.
    """
    text = str(text)
    safe = re.sub(r"[^A-Za-z0-9._+-]+", "_", text).strip("_.")[:60]
    if safe == text:
        return safe
    digest = hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return f"{safe}-{digest}" if safe else digest


# Names of the files an evaluation writes; a folder holding anything else is not ours to replace.
_OUTPUT_FILE = re.compile(r"(evaluation\.(json|md)|report-.+\.txt|confusion-.+\.png)")


def check_output_dir(out_dir):
    """Fail early unless ``out_dir`` is absent, empty or holds only an earlier evaluation's files.

    The earlier evaluation is replaced; a folder that also holds anything
    else (the user's own files) is refused, so no file that evaluate did
    not write is ever deleted.
    """
    out_dir = Path(out_dir)
    if out_dir.is_symlink() or (out_dir.exists() and not out_dir.is_dir()):
        raise UserError(f"{out_dir} exists and is not a folder; choose another output folder", field="out_dir")
    if out_dir.exists():
        try:
            foreign = sorted(entry.name for entry in out_dir.iterdir()
                             if not (_OUTPUT_FILE.fullmatch(entry.name) and entry.is_file()
                                     and not entry.is_symlink()))
        except OSError as error:
            raise UserError(f"cannot read {out_dir}: {error.strerror}; choose another output folder",
                            field="out_dir") from None
        if foreign:
            raise UserError(f"{out_dir} holds files that are not an earlier evaluation's (e.g. {foreign[0]});"
                            " choose a new or empty output folder", field="out_dir")
    parent = out_dir.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(f"cannot write in {parent}; choose an output folder you can write", field="out_dir")
    return out_dir


def write_evaluation(evaluation, out_dir):
    """Write the evaluation's files into ``out_dir``, all or nothing.

    Files: ``evaluation.json`` (every cell and the forgetting),
    ``evaluation.md`` (:func:`format_markdown`), ``report-<run>-<domain>.txt``
    (per-class reports) and ``confusion-<run>-<domain>.png`` (scored cells);
    a baseline's row label stands for ``<run>``.
    They are written to a temporary folder next to ``out_dir`` that is
    renamed at the end; an earlier evaluation in ``out_dir`` is replaced
    (:func:`check_output_dir` refuses a folder holding anything else).

    Returns:
        ``out_dir`` as a ``Path``.
    """
    from convlstm_tl.evaluation.plots import save_confusion_matrix

    out_dir = check_output_dir(out_dir)
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{out_dir.name}-", dir=out_dir.parent))
    except OSError as error:
        raise UserError(f"cannot write {out_dir}: {error.strerror}; choose an output folder you can write",
                        field="out_dir") from None
    try:
        give_usual_permissions(tmp)
        save_json(tmp / "evaluation.json", evaluation.to_dict())
        (tmp / "evaluation.md").write_text(format_markdown(evaluation))
        stems = _cell_stems(evaluation.results)
        for run, cells in evaluation.results.items():
            for domain, cell in cells.items():
                stem = stems[run, domain]
                report = evaluation.reports.get((run, domain)) or report_header(
                    run, domain, evaluation.split, cell, noun="baseline" if run in evaluation.baselines else "run")
                (tmp / f"report-{stem}.txt").write_text(report)
                if cell["accuracy"] is not None:
                    names = cell["class_alignment"]["class_names"]
                    title = f"{run} on {domain} ({evaluation.split})"
                    if cell["class_alignment"]["classes"] == "shared":
                        title += ", shared classes"
                    save_confusion_matrix(cell["confusion_matrix"], names, tmp / f"confusion-{stem}.png", title=title)
        check_output_dir(out_dir)  # again: the user may have added files while it ran
        replace_folder(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.debug("wrote evaluation %s", out_dir)
    return out_dir


def _cell_stems(results):
    """``{(run, domain): file stem}``, unique even where ``<run>-<domain>`` strings coincide."""
    stems = {(run, domain): f"{file_stem(run)}-{file_stem(domain)}" for run, cells in results.items()
             for domain in cells}
    counts = {}
    for stem in stems.values():
        counts[stem] = counts.get(stem, 0) + 1
    return {key: stem if counts[stem] == 1 else file_stem(f"{stem}\0{key[0]}\0{key[1]}")
            for key, stem in stems.items()}
