"""The notes under an evaluation's tables: why a cell is n/a or partly scored, why forgetting is not measured.

A matrix of ten runs on five domains with dozens of classes must stay
readable, so notes are grouped, and long lists of class names are cut
(:func:`~convlstm_tl.evaluation.alignment.name_list`; the JSON keeps them
whole):

- one line per run and reason for its n/a cells (``n/a: St-text on news,
  blogs: ...``); the same reason is never repeated for one run;
- one line per run for the cells scored on shared classes only;
- one line per reason for the transfer runs whose forgetting is not
  measured, and one per note for those measured on shared classes only.
"""

from convlstm_tl.evaluation.alignment import name_list


def cell_notes(runs, results):
    """Notes on the cells of ``runs`` that are n/a or scored on shared classes only.

    Args:
        runs: the row labels, in order (source runs added only to measure
            forgetting are left out: the forgetting notes speak for them).
        results: ``{run: {domain: cell}}`` (see
            :class:`~convlstm_tl.evaluation.crossdomain.Evaluation`).

    Returns:
        A list of one-line notes: at most one per run and n/a reason, and
        one per run for its partly scored cells.
    """
    notes = []
    for run in runs:
        by_reason = {}
        for domain, cell in results[run].items():
            if cell["accuracy"] is None:
                by_reason.setdefault(cell["reason"], []).append(domain)
        notes += [f"n/a: {run} on {', '.join(domains)}: {reason}" for reason, domains in by_reason.items()]
        shared = [shared_part(domain, cell["class_alignment"]) for domain, cell in results[run].items()
                  if cell["accuracy"] is not None and cell["class_alignment"]["classes"] == "shared"]
        if shared:
            notes.append(f"{run}: `*` scored on the classes it shares with the domain only, its predictions"
                         f" restricted to them: {'; '.join(shared)}")
    return notes


def shared_part(domain, alignment):
    """``ms (5 of 17 classes; samples of a, b, c and 9 more left out)``."""
    shared, domain_only = alignment["class_names"], alignment["domain_only"]
    part = f"{domain} ({len(shared)} of {len(shared) + len(domain_only)} classes"
    if domain_only:
        part += f"; samples of {name_list(domain_only)} left out"
    return part + ")"


def forgetting_notes(rows):
    """Notes on the forgetting rows that are not measured, or measured on shared classes only.

    Args:
        rows: the ``forgetting`` rows of an
            :class:`~convlstm_tl.evaluation.crossdomain.Evaluation`.

    Returns:
        A list of one-line notes, one per distinct reason (or note), naming
        every run it applies to.
    """
    not_measured, partial = {}, {}
    for row in rows:
        if "reason" in row:
            not_measured.setdefault(row["reason"], []).append(row["run"])
        elif row.get("classes") == "shared":
            partial.setdefault(row["note"], []).append(row["run"])
    return ([f"forgetting of {', '.join(runs)} not measured (—): {reason}" for reason, runs in not_measured.items()]
            + [f"forgetting of {', '.join(runs)}: {note}" for note, runs in partial.items()])
