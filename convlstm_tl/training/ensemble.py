"""Training the members of a run: one model, or ``ensemble`` models from consecutive seeds, resumably.

A run with ``ensemble = K`` trains K models the same way, with seeds
``seed .. seed + K - 1`` (initial weights, batch order, augmentation and
dropout differ; the data, its labelled subset and every setting are the
same), and saves one model that averages their class probabilities
(:func:`convlstm_tl.models.ensemble.build_ensemble`).

Member ``k`` takes checkpoint phases ``k * P .. k * P + P - 1`` (P: the
phases one member trains). A finished member is kept as a working file of
the run folder (``.member-<k>.weights.h5``), so a resumed run does not train
it again; publishing the run removes the working files.
"""

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from convlstm_tl import backend
from convlstm_tl.evaluation.metrics import classification_metrics
from convlstm_tl.evaluation.predict import predict_split
from convlstm_tl.models.ensemble import build_ensemble
from convlstm_tl.training.fit import phase_result


@dataclass
class Member:
    """One trained member of a run.

    Attributes:
        model: the trained classifier.
        seed: its seed.
        fitted: the :class:`~convlstm_tl.training.fit.FitResult` of each validated phase.
        refit: those of its refit phases, or None without refit.
    """

    model: object
    seed: int
    fitted: list
    refit: list | None = None


def train_members(config, run_path, checkpoint, *, n_validated, build, train_one):
    """Train (or, resuming, reload) the run's members.

    Args:
        config: the run's config (``seed``, ``ensemble``, ``refit``, ``patience``).
        run_path: the run's working folder.
        checkpoint: the run's :class:`~convlstm_tl.training.checkpoint.Checkpoint`.
        n_validated: validated phases a member trains (as many refit phases follow with refit).
        build: ``build(seed)``: the member's model before training, for reloading saved weights.
        train_one: ``train_one(seed, first_phase) -> Member``: train one member whose phases start
            at ``first_phase`` of the checkpoint.

    Returns:
        The list of :class:`Member`.
    """
    n_phases = n_validated * (2 if config.refit else 1)
    members = []
    for index in range(config.ensemble):
        seed, first = config.seed + index, index * n_phases
        saved = Path(run_path) / f".member-{index + 1}.weights.h5"
        if config.ensemble > 1 and saved.is_file():
            with backend.seeded(seed):
                model = build(seed)
            model.load_weights(saved)
            records = checkpoint.phases[first:first + n_phases]
            fitted = [phase_result(record, patience=config.patience) for record in records[:n_validated]]
            refit = [phase_result(record, patience=None) for record in records[n_validated:]] or None
            members.append(Member(model=model, seed=seed, fitted=fitted, refit=refit))
            continue
        member = train_one(seed, first)
        if config.ensemble > 1:
            temporary = saved.with_name(f".member-{index + 1}.tmp.weights.h5")
            member.model.save_weights(temporary)
            os.replace(temporary, saved)
        members.append(member)
    return members


def combined_model(members):
    """The model a run saves: its one member, or the average of its members."""
    if len(members) == 1:
        return members[0].model
    return build_ensemble([member.model for member in members])


def ensemble_record(members, path, info, *, batch_size):
    """The ``ensemble`` entry of ``metrics.json``: each member's seed, best epoch and test scores (None for one)."""
    if len(members) == 1:
        return None
    scores = []
    for member in members:
        y_true, y_pred, _ = predict_split(member.model, path, "test", batch_size=max(batch_size, 128))
        metrics = classification_metrics(y_true, y_pred, info.class_names, domain=info.domain)
        scores.append({"seed": member.seed, "best_epoch": member.fitted[-1].best_epoch,
                       "accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"]})
    return {"members": len(members), "member_scores": scores,
            "member_accuracy_mean": float(np.mean([score["accuracy"] for score in scores]))}
