"""Transfer strategies as data: a registry from name to builder, one parser, one slug.

A :class:`Strategy` says how many source blocks the new body keeps, whether
their weights are restored, and the training phases, each naming the
restored blocks that train in it:

=============  ==========================================================
``freeze``     all blocks restored and frozen; new head trained
``cut:K``      blocks 1..K restored and frozen, the rest dropped
``unfreeze:N`` restored; the top N blocks train at the body learning rate
``finetune``   restored; every block trains at the body learning rate
``gradual``    head alone for ``head_epochs``, then every block at the body rate
``scratch``    same architecture, random initialisation, one learning rate
``joint``      restored; every block trains at the body learning rate on the
               source's training data and the target's labelled subset
               together (one head when the classes are the same, one per
               domain otherwise)
=============  ==========================================================

A spec is checked twice, each time in full and once only: its spelling
when a config is validated (:func:`check_spec`, before anything is loaded),
and its number against the source body's size when the body is known
(:func:`parse_strategy`).
"""

import re
from dataclasses import dataclass

from convlstm_tl.errors import ConfigError


@dataclass(frozen=True)
class Phase:
    """One stretch of training.

    Attributes:
        trainable_blocks: 1-based indices of restored blocks that train.
        epochs: epochs of this phase; None takes what the budget has left.
    """

    trainable_blocks: tuple
    epochs: int | None = None


@dataclass(frozen=True)
class Strategy:
    """A transfer strategy for a body of a given size.

    Attributes:
        spec: the strategy as the user wrote it, e.g. ``"cut:1"``.
        keep_blocks: how many source blocks the new body keeps.
        restore: copy the source's weights into the kept blocks.
        phases: the training phases, in order.
        with_source_data: each training step also takes a batch of the
            source's labelled training data (``joint``).
    """

    spec: str
    keep_blocks: int
    restore: bool
    phases: tuple
    with_source_data: bool = False

    @property
    def slug(self):
        """The spec as it appears in run names: ``cut:1`` -> ``cut1``."""
        return slug(self.spec)

    @property
    def body_frozen_throughout(self):
        """True when restored blocks never train, so body outputs can be cached."""
        return self.restore and all(not phase.trainable_blocks for phase in self.phases)

    def to_dict(self):
        """The strategy as JSON-ready data (what a transfer run records)."""
        return {"spec": self.spec, "keep_blocks": self.keep_blocks, "restore": self.restore,
                "phases": [{"trainable_blocks": list(p.trainable_blocks), "epochs": p.epochs} for p in self.phases],
                "with_source_data": self.with_source_data}


def _freeze(n_blocks, number, head_epochs):
    return n_blocks, True, (Phase(()),)


def _cut(n_blocks, number, head_epochs):
    return number, True, (Phase(()),)


def _unfreeze(n_blocks, number, head_epochs):
    return n_blocks, True, (Phase(tuple(range(n_blocks - number + 1, n_blocks + 1))),)


def _finetune(n_blocks, number, head_epochs):
    return n_blocks, True, (Phase(tuple(range(1, n_blocks + 1))),)


def _gradual(n_blocks, number, head_epochs):
    return n_blocks, True, (Phase((), head_epochs), Phase(tuple(range(1, n_blocks + 1))))


def _scratch(n_blocks, number, head_epochs):
    return n_blocks, False, (Phase(tuple(range(1, n_blocks + 1))),)


# joint builds as finetune; parse_strategy marks it as training on the source's data too.
_joint = _finetune

# name -> (takes a number of blocks, builder(n_blocks, number, head_epochs) -> (keep_blocks, restore, phases))
STRATEGIES = {
    "freeze": (False, _freeze),
    "cut": (True, _cut),
    "unfreeze": (True, _unfreeze),
    "finetune": (False, _finetune),
    "gradual": (False, _gradual),
    "scratch": (False, _scratch),
    "joint": (False, _joint),
}
STRATEGY_NAMES = tuple(f"{name}:{'K' if name == 'cut' else 'N'}" if numbered else name
                       for name, (numbered, _) in STRATEGIES.items())
_SPEC = re.compile(r"(?P<name>[a-z]+)(?P<colon>:(?P<number>.*))?", re.ASCII | re.DOTALL)
_MAX_DIGITS = 6  # no body has a million blocks; int() of a huge string is slow


def check_spec(spec):
    """Check a strategy's spelling; return ``(name, number or None)``.

    A number is written in ASCII digits without a leading zero (``cut:01``
    would be a second name of ``cut:1``), for exactly the strategies that
    take one.

    Raises:
        ConfigError: naming the field ``strategy`` and the choices.
    """
    match = _SPEC.fullmatch(spec) if isinstance(spec, str) else None
    numbered = STRATEGIES[match["name"]][0] if match and match["name"] in STRATEGIES else None
    if numbered is None or numbered != bool(match["colon"]):
        raise ConfigError(f"unknown strategy {spec!r}; choose one of {', '.join(STRATEGY_NAMES)}", field="strategy")
    name, number = match["name"], match["number"]
    if number is None:
        return name, None
    if not re.fullmatch(r"[0-9]+", number, re.ASCII):
        raise ConfigError(f"strategy {spec!r} needs a whole number after the colon, e.g. {name}:1", field="strategy")
    if number.startswith("0") or len(number) > _MAX_DIGITS:
        raise ConfigError(f"strategy {spec!r} is out of range: {name}:K counts blocks from 1 (no leading zero)",
                          field="strategy")
    return name, int(number)


def parse_strategy(spec, n_blocks, *, head_epochs=10):
    """Turn ``"freeze"``, ``"cut:K"``, ... into a :class:`Strategy` for a body of ``n_blocks``.

    Raises:
        ConfigError: for a misspelt strategy, or K/N out of range for the body.
    """
    name, number = check_spec(spec)
    if number is not None and number > n_blocks:
        raise ConfigError(f"strategy {spec!r} is out of range: the source body has {n_blocks} blocks, so use"
                          f" {name}:1..{n_blocks}", field="strategy")
    _, build = STRATEGIES[name]
    return Strategy(spec, *build(n_blocks, number, head_epochs), with_source_data=name == "joint")


def slug(spec):
    """A strategy as it appears in run names: ``cut:1`` -> ``cut1``."""
    return spec.replace(":", "")
