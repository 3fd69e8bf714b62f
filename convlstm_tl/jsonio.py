"""Strict JSON files, and typed dataclasses to and from JSON data.

``from_dict`` is strict: unknown keys and values of the wrong type are a
:class:`ConfigError`, so a typo in a config file fails loudly instead of
being ignored. ``load_json`` refuses what Python's ``json`` accepts beyond
the standard (``NaN``, ``Infinity``), and ``save_json`` never writes it.
"""

import dataclasses
import json
import math
import types
import typing
from pathlib import Path

from convlstm_tl.errors import ConfigError, first_line


def is_int(value):
    """Whether ``value`` is an int and not a bool (JSON's ``true`` is a Python int)."""
    return isinstance(value, int) and not isinstance(value, bool)


def shown(value, limit=60):
    """``value`` as a short one-line repr for an error message."""
    try:
        text = repr(value)
    except ValueError:  # an int too long to print
        return "a very long number"
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(value)} characters)" if isinstance(value, str) else f"{text[:limit]}..."


def shown_number(value):
    """``value`` as an error message shows it: a huge int by its number of digits."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**20:
        # str() of a huge int is slow, and refused past 4300 digits
        return f"an int of about {int(value.bit_length() * 0.30103) + 1} digits"
    return value


def to_dict(config):
    """Return a config dataclass as plain JSON-ready data."""
    data = dataclasses.asdict(config)
    return json.loads(json.dumps(data))


def from_dict(cls, data, *, where="config"):
    """Build the dataclass ``cls`` from ``data``, checking keys and types.

    Raises:
        ConfigError: for an unknown key or a value of the wrong type.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a JSON object. Received: {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{where} has unknown keys {unknown}; known keys are {sorted(fields)}")
    hints = typing.get_type_hints(cls)
    values = {}
    for key, value in data.items():
        values[key] = _coerce(hints[key], value, f"{where}.{key}")
    return cls(**values)


def _coerce(kind, value, where):
    if dataclasses.is_dataclass(kind):
        return from_dict(kind, value, where=where)
    if kind is bool:
        if isinstance(value, bool):
            return value
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            try:
                return float(value)
            except OverflowError:
                raise ConfigError(f"{where} must be a finite number. Received: {shown_number(value)}") from None
    elif kind is str:
        if isinstance(value, str):
            return value
    elif kind is tuple:
        if isinstance(value, (list, tuple)) and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            return tuple(value)
        raise ConfigError(f"{where} must be a list of ints. Received: {value!r}")
    elif isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union:
        if value is None and type(None) in typing.get_args(kind):
            return None
        for option in typing.get_args(kind):
            if option is not type(None):
                try:
                    return _coerce(option, value, where)
                except ConfigError:
                    pass
    else:
        return value
    raise ConfigError(f"{where} must be {getattr(kind, '__name__', kind)}. Received: {value!r}")


def load_json(path, *, what="config file"):
    """Read a strict JSON file, turning every way it can be unreadable into one-line ConfigError.

    Strict: the non-standard constants ``NaN``, ``Infinity`` and
    ``-Infinity`` that Python's ``json`` accepts are refused, as are nesting
    too deep to parse and integers too long to convert.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{what} {path} not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{what} {path} is a directory; give a JSON file") from None
    except UnicodeDecodeError as error:
        raise ConfigError(f"{what} {path} is not UTF-8 text (byte {error.start}); give a JSON file") from None
    except OSError as error:
        raise ConfigError(f"cannot read {what} {path}: {error.strerror or error}") from None
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except json.JSONDecodeError as error:
        raise ConfigError(f"{what} {path} is not valid JSON: {error}") from None
    except _NonStandardConstant as error:
        raise ConfigError(f"{what} {path} is not valid JSON: {error} is not a JSON number; write a finite"
                          " number (or null)") from None
    except RecursionError:
        raise ConfigError(f"{what} {path} is nested too deeply to read; it is not a config") from None
    except ValueError as error:  # an integer past Python's int-string conversion limit
        raise ConfigError(f"{what} {path} holds a number with too many digits to read ({first_line(error)[:60]})"
                          ) from None


class _NonStandardConstant(Exception):
    pass


def _refuse_constant(name):
    raise _NonStandardConstant(name)


def save_json(path, data):
    """Write ``data`` as indented, strict JSON; a NaN or infinite float is written as null."""
    Path(path).write_text(json.dumps(_finite(data), indent=2, sort_keys=False, allow_nan=False) + "\n")


def _finite(data):
    """``data`` with every non-finite float replaced by None (JSON has no NaN or Infinity)."""
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {key: _finite(value) for key, value in data.items()}
    if isinstance(data, (list, tuple)):
        return [_finite(value) for value in data]
    return data
