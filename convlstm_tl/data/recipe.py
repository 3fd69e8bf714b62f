"""How a domain's samples were cut from long recordings: the window recipe.

The time-series converters (``data_prep csv``, ``data_prep watch``) slide a
window of ``window`` rows over each recording, ``step`` rows apart, and cut
it into ``frames`` frames of ``frame_width`` rows: one sample is
``(frames, 1, frame_width, C)``. They record this in the domain file's
provenance; :func:`window_recipe` reads it back as a :class:`WindowRecipe`,
which a run keeps in its record so that new recordings can be cut exactly as
its training data were (``python -m convlstm_tl.predict --input new.csv``).

Domains made otherwise (fixed-length series, images, text) have no recipe:
their samples are given whole.
"""

import json
import re
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class WindowRecipe:
    """The windowing of a domain made from long recordings.

    Attributes:
        window: rows (time steps) per sample.
        step: rows between the starts of consecutive windows of a recording.
        frames: frames per sample; ``window == frames * frame_width``.
        channels: the channel (column) names in order, or None when the
            converter did not record them.
        channel_signs: per-channel factors the converter applied (a watch
            worn on the other arm, stored mirrored), or None.
        converter: the command that made the domain.
    """

    window: int
    step: int
    frames: int
    channels: tuple | None = None
    channel_signs: tuple | None = None
    converter: str = ""

    @property
    def frame_width(self):
        """Rows per frame."""
        return self.window // self.frames

    @property
    def overlap(self):
        """Fraction of a window shared with the next one."""
        return 1.0 - self.step / self.window

    def to_dict(self):
        """A JSON-ready dict (lists for the tuples)."""
        data = asdict(self)
        for key in ("channels", "channel_signs"):
            if data[key] is not None:
                data[key] = list(data[key])
        return data

    @classmethod
    def from_dict(cls, data):
        """The recipe of :meth:`to_dict`'s dict; None for None or a dict that is not one."""
        if not isinstance(data, dict):
            return None
        try:
            return cls(window=_positive_int(data["window"]), step=_positive_int(data["step"]),
                       frames=_positive_int(data["frames"]), channels=_names(data.get("channels")),
                       channel_signs=_numbers(data.get("channel_signs")), converter=str(data.get("converter", "")))
        except (KeyError, TypeError, ValueError):
            return None

    def describe(self):
        """One phrase, e.g. ``windows of 100 rows every 50, in 10 frames of 10 rows, channels ax, ay``.

        Frame ``t`` holds rows ``t * frame_width`` to ``(t + 1) * frame_width - 1``
        of the window; channel factors, when the converter applied some, are named.
        """
        text = (f"windows of {self.window} rows every {self.step}, in {self.frames} frames of {self.frame_width}"
                " rows")
        if self.channels:
            text += f", channels {', '.join(self.channels)}"
        if self.channel_signs:
            text += f" multiplied by {[int(v) if float(v).is_integer() else v for v in self.channel_signs]}"
        return text


def window_recipe(provenance):
    """The :class:`WindowRecipe` a domain file's provenance records, or None.

    Args:
        provenance: the file's ``provenance`` attribute (JSON text from the
            converters; free text from other writers).
    """
    try:
        data = json.loads(provenance)
    except (TypeError, ValueError, RecursionError):
        return None
    if not isinstance(data, dict) or not all(key in data for key in ("window", "step", "frames")):
        return None
    columns = data.get("columns")
    channels = columns.get("channels") if isinstance(columns, dict) else data.get("channels")
    return WindowRecipe.from_dict({"window": data["window"], "step": data["step"], "frames": data["frames"],
                                   "channels": channels if isinstance(channels, list) else None,
                                   "channel_signs": data.get("channel_signs", _signs_in_text(data.get("mirrored"))),
                                   "converter": data.get("converter", "")})


def _signs_in_text(mirrored):
    """The factors in the watch converter's older ``"mirrored": "yes: channels multiplied by [...] ..."``."""
    if not isinstance(mirrored, str):
        return None
    found = re.search(r"multiplied by (\[[^\]]*\])", mirrored)
    return json.loads(found.group(1)) if found else None


def _positive_int(value):
    if isinstance(value, bool) or int(value) != value or value < 1:
        raise ValueError(value)
    return int(value)


def _names(values):
    if values is None:
        return None
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise ValueError(values)
    return tuple(values)


def _numbers(values):
    if values is None:
        return None
    if not isinstance(values, list) or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                               for v in values):
        raise ValueError(values)
    return tuple(float(v) for v in values)
