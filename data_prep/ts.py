"""UCR/UEA time-series classification data (.ts files) -> a frames domain.

The input is a pair of ``.ts`` files, the format of the UCR and UEA archives
(a header of ``@`` lines, then ``@data`` and one series per line, channels
separated by ``:``, the class label last), read with aeon's
``load_from_ts_file``:

``dataset``
    a data set bundled in aeon's wheel (``aeon/datasets/data``:
    BasicMotions, JapaneseVowels, ArrowHead, GunPoint, ...), read from
    there; nothing is ever downloaded.
``train_path``, ``test_path``
    your own ``NAME_TRAIN.ts`` and ``NAME_TEST.ts``.

The given train/test split is kept. The files never hold a val split, so
val is carved out of train: a fraction ``val_from_train`` (default
:data:`DEFAULT_VAL_FROM_TRAIN`), stratified by label, seeded by ``seed``.

A series of ``L`` steps and ``C`` channels becomes ``L // W`` frames of
``1 x W x C`` (the ``NTC`` layout of the npz converter). Without ``frame``,
``W`` is chosen so that the series makes 10 frames, as the watch and csv
converters do; when 10 does not divide ``L``, the frame count from 5 to 20
that divides ``L`` and is closest to 10 (the smaller one on a tie); when none
does, the converter asks for ``frame`` or ``length``.

``channels`` keeps some channels in the given order (e.g. a sensor of a
multi-sensor recording), ``classes`` keeps the series of some classes (e.g.
half of the speakers). Series of unequal length are refused unless
``length`` resamples every series to ``length`` steps, by linear
interpolation per channel (equal-length series may be resampled too).
Missing values (``NaN`` or ``?`` in the file) are refused unless
``fill_missing`` fills them by linear interpolation in time per channel.

Class names are the labels as the file spells them (aeon lower-cases them;
the header's ``@classLabel`` list restores the spelling), in numeric order
when every label is a number, else in sorted order; with ``classes``, in
the order given there.

Library use::

    from data_prep.ts import prepare_ts
    info = prepare_ts("bm-acc", "data", dataset="BasicMotions", channels=[0, 1, 2])

Command line::

    python -m data_prep ts --dataset BasicMotions --channels 0,1,2 --domain bm-acc
    python -m data_prep ts --train Mine_TRAIN.ts --test Mine_TEST.ts --length 100 --domain mine
"""

import json
import logging
import re
from pathlib import Path

import numpy as np

from convlstm_tl.data.format import SPLITS, check_domain_name, resolve_data_dir
from convlstm_tl.data.writer import write_domain
from convlstm_tl.errors import UserError
from data_prep.npz import build_npz_domain
from data_prep.splits import check_val_from_train, describe_carved

logger = logging.getLogger(__name__)

# One place for each default; the CLI reads them from here.
# The .ts files never hold val: carve it out of train unless told otherwise.
# UCR/UEA train splits are small (BasicMotions: 40 series), and 0.2 still
# leaves val two series per class there.
DEFAULT_VAL_FROM_TRAIN = 0.2
# Frames per series when --frame is not given: 10, as the watch and csv
# converters cut their windows; else the divisor of the length in this
# range closest to 10.
DEFAULT_FRAMES = 10
FRAME_COUNTS = range(5, 21)
INSTALL_HINT = "pip install 'convlstm_tl[baselines]' (or pip install aeon)"
SPLIT_FILES = {"train": "_TRAIN.ts", "test": "_TEST.ts"}


def _aeon():
    """Return ``(aeon module, load_from_ts_file)``; aeon is an optional extra."""
    try:
        import aeon
        from aeon.datasets import load_from_ts_file
    except ImportError:
        raise UserError(f"the ts converter reads .ts files with aeon, which is not installed; install it with"
                        f" {INSTALL_HINT}") from None
    return aeon, load_from_ts_file


def bundled_root():
    """The folder of the data sets bundled in aeon's wheel (``aeon/datasets/data``)."""
    aeon, _ = _aeon()
    return Path(aeon.__file__).parent / "datasets" / "data"


def bundled_datasets():
    """The classification data sets bundled with aeon: ``{name: (train_file, test_file)}``, by name.

    A data set is a ``<name>_TRAIN.ts`` with its ``<name>_TEST.ts`` whose
    header says ``@classLabel true`` (regression sets are left out).
    """
    found = {}
    for train in sorted(bundled_root().glob(f"*/*{SPLIT_FILES['train']}")):
        name = train.name[:-len(SPLIT_FILES["train"])]
        test = train.with_name(name + SPLIT_FILES["test"])
        if test.is_file() and _header_class_labels(train) is not None:
            found[name] = (train, test)
    return dict(sorted(found.items(), key=lambda item: item[0].lower()))


def find_dataset(name):
    """The ``(train_file, test_file)`` of a bundled data set; the name's case does not matter.

    Raises:
        UserError: for a name aeon does not bundle, listing those it does.
    """
    datasets = bundled_datasets()
    if name in datasets:
        return name, datasets[name]
    by_lower = {key.lower(): key for key in datasets}
    if str(name).lower() in by_lower:
        key = by_lower[str(name).lower()]
        return key, datasets[key]
    aeon, _ = _aeon()
    raise UserError(f"aeon {aeon.__version__} bundles no classification data set {name!r} (it bundles"
                    f" {', '.join(datasets)}); for another UCR/UEA set, get its NAME_TRAIN.ts and NAME_TEST.ts"
                    f" and pass --train and --test (nothing is downloaded)")


def _header_class_labels(path):
    """The labels of a file's ``@classLabel true ...`` header line as spelled there, or None if it has none."""
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            tokens = line.split()
            if not tokens or tokens[0].startswith("#"):
                continue
            key = tokens[0].lower()
            if key == "@data":
                return None
            if key == "@classlabel":
                return tokens[2:] if len(tokens) > 2 and tokens[1].lower() == "true" else None
    return None


def read_ts(path, *, split="train"):
    """Read a ``.ts`` classification file with aeon.

    Args:
        path: the file.
        split: ``"train"`` or ``"test"``, for messages.

    Returns:
        ``(series, labels)``: a list of float64 arrays ``(steps, channels)``
        (time first) and the labels, strings as the file spells them.

    Raises:
        UserError: for a missing or unreadable file, a file without class
            labels (regression), time stamps, or no series.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{split} file {path} not found")
    _, load_from_ts_file = _aeon()
    try:
        data, labels, meta = load_from_ts_file(str(path), return_meta_data=True)
    except (OSError, ValueError, IndexError) as error:
        raise UserError(f"{path} is not a readable .ts classification file ({_reason(error)})") from None
    if not meta.get("classlabel") or meta.get("targetlabel"):
        raise UserError(f"{path} has no class labels (its header lacks '@classLabel true ...'); the ts converter"
                        " reads classification files, not regression ones")
    if meta.get("timestamps"):
        raise UserError(f"{path} has time stamps (@timeStamps true), which the ts converter does not read; give the"
                        " values without time stamps")
    series = [np.asarray(case, dtype=np.float64).T for case in data]
    if not series:
        raise UserError(f"{path} holds no series after @data")
    return series, _spelled(np.asarray(labels).astype(str), _header_class_labels(path))


def _reason(error):
    """aeon's reading error as a short phrase, with the header fix where the header and the rows disagree."""
    # aeon names the file object ("Error loading <_io.TextIOWrapper ...>."); the caller names the path.
    reason = re.sub(r"Error loading <[^>]*>\.\s*", "", " ".join(str(error).split())) or type(error).__name__
    if "univariate" in reason.lower():
        reason += "; a file with several channels needs '@univariate false' in its header"
    elif "equal length == true" in reason.lower():
        reason += "; a file whose series differ in length needs '@equalLength false' in its header"
    return reason


def _spelled(labels, declared):
    """Undo aeon's lower-casing of labels with the spelling of the header's class list, where it is unambiguous."""
    if not declared:
        return labels
    spelling = {name.lower(): name for name in declared}
    if len(spelling) != len(declared):
        return labels
    return np.array([spelling.get(label.lower(), label) for label in labels.tolist()], dtype=str)


def ordered_labels(labels):
    """The distinct labels, in numeric order when all are numbers (``"2"`` before ``"10"``), else sorted."""
    distinct = sorted(set(labels))
    try:
        return sorted(distinct, key=float)
    except ValueError:
        return distinct


def resample(series, length):
    """Resample ``series`` ``(steps, C)`` to ``(length, C)`` by linear interpolation per channel.

    The first and last values are kept, and the new steps are evenly spaced
    between them, so a linear ramp stays the same ramp.
    """
    steps = len(series)
    if steps == length:
        return series
    if steps == 1:
        return np.repeat(series, length, axis=0)
    positions = np.linspace(0.0, steps - 1, length)
    left = np.minimum(np.floor(positions).astype(np.int64), steps - 2)
    weight = (positions - left)[:, None]
    return series[left] * (1.0 - weight) + series[left + 1] * weight


def fill_gaps(series):
    """Fill the NaNs of ``series`` ``(steps, C)`` by linear interpolation in time, per channel.

    Gaps at either end take the nearest value. Returns ``(filled, count)``,
    or None for a channel with no value at all.
    """
    missing = np.isnan(series)
    if not missing.any():
        return series, 0
    filled = series.copy()
    steps = np.arange(len(series))
    for c in np.flatnonzero(missing.any(axis=0)):
        known = ~missing[:, c]
        if not known.any():
            return None
        filled[~known, c] = np.interp(steps[~known], steps[known], series[known, c])
    return filled, int(missing.sum())


def default_frame(length):
    """The steps per frame when none is given (see the module docstring), or None when no rule fits."""
    counts = [count for count in FRAME_COUNTS if length % count == 0]
    if not counts:
        return None
    count = min(counts, key=lambda n: (abs(n - DEFAULT_FRAMES), n))
    return length // count


def _check_options(*, dataset, train_path, test_path, channels, classes, length, frame, val_from_train):
    """Check every option before any file is read."""
    if dataset is not None and (train_path is not None or test_path is not None):
        raise UserError("give --dataset NAME or --train FILE.ts --test FILE.ts, not both")
    if dataset is None:
        if train_path is None and test_path is None:
            raise UserError("give --dataset NAME (a data set bundled with aeon) or --train FILE.ts --test FILE.ts")
        if test_path is None:
            raise UserError("--train needs --test FILE.ts too: the .ts files give the train and test splits")
        if train_path is None:
            raise UserError("--test needs --train FILE.ts too: the .ts files give the train and test splits")
    check_val_from_train(val_from_train)
    if val_from_train is None:
        raise UserError("the .ts files hold no val split; --val-from-train F carves it out of train and cannot be"
                        " None")
    if channels is not None:
        channels = list(channels)
        if not channels or not all(isinstance(c, (int, np.integer)) and not isinstance(c, bool) and c >= 0
                                   for c in channels):
            raise UserError(f"--channels takes channel numbers from 0, comma separated (e.g. 0,1,2). Received:"
                            f" {channels}")
        if len(set(channels)) != len(channels):
            raise UserError(f"--channels names a channel twice. Received: {channels}")
    if classes is not None:
        classes = [str(c) for c in classes]
        if len(set(c.lower() for c in classes)) != len(classes) or not all(classes):
            raise UserError(f"--classes must name distinct classes. Received: {classes}")
        if len(classes) < 2:
            raise UserError(f"--classes must keep at least 2 classes for a classifier. Received: {classes}")
    for name, value, least in (("--length", length, 2), ("--frame", frame, 1)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer))
                                  or value < least):
            raise UserError(f"{name} must be an integer of at least {least}. Received: {value!r}")
    if length is not None and frame is not None and length % frame:
        raise UserError(f"--frame must divide --length (the series becomes length // frame frames). Received:"
                        f" length={length}, frame={frame}")


def _select(series, labels, *, channels, classes):
    """Keep the series of ``classes`` and the ``channels`` of each (both None: all).

    Returns ``(series, labels, positions)``; ``positions`` are the kept
    series' places in the file (from 1), for messages.
    """
    keep = np.ones(len(labels), dtype=bool)
    if classes is not None:
        keep = np.isin(np.char.lower(labels), [c.lower() for c in classes])
    positions = np.flatnonzero(keep) + 1
    series = [series[i - 1] if channels is None else series[i - 1][:, channels] for i in positions]
    return series, labels[keep], positions


def _fill_or_refuse(series, positions, *, fill_missing, where):
    """Refuse (or, with ``fill_missing``, fill) missing values; refuse inf. Returns ``(series, filled count)``."""
    total = 0
    out = []
    for i, s in zip(positions, series):
        if np.isinf(s).any():
            raise UserError(f"{where}: series {i} holds inf; clean the data first")
        if np.isnan(s).any():
            if not fill_missing:
                raise UserError(f"{where}: series {i} has {int(np.isnan(s).sum())} missing value(s) (NaN or ?);"
                                f" pass --fill-missing to fill them by linear interpolation in time, or clean the"
                                f" file")
            result = fill_gaps(s)
            if result is None:
                raise UserError(f"{where}: series {i} has a channel with no value at all, which --fill-missing"
                                " cannot fill; drop the series or the channel (--channels)")
            s, count = result
            total += count
        out.append(s)
    return out, total


def _frame_for(length, frame, lengths_resampled):
    """Check ``frame`` against the final length, or choose the default one."""
    if frame is not None:
        if length % frame:
            divisors = [w for w in range(2, length // 2 + 1) if length % w == 0][:8]
            hint = f" (divisors: {', '.join(map(str, divisors))})" if divisors else ""
            raise UserError(f"--frame {frame} does not divide the series length {length}; pick a divisor{hint} or"
                            f" resample with --length")
        return frame
    chosen = default_frame(length)
    if chosen is None:
        suggested = max(DEFAULT_FRAMES, int(round(length / DEFAULT_FRAMES)) * DEFAULT_FRAMES)
        resample_hint = (f", or {'pick another' if lengths_resampled else 'resample with'} --length (e.g."
                         f" {suggested}, {DEFAULT_FRAMES} frames)")
        raise UserError(f"the series have {length} steps, which no frame count from {FRAME_COUNTS[0]} to"
                        f" {FRAME_COUNTS[-1]} divides; pass --frame W (W divides {length}){resample_hint}")
    return chosen


def load_ts_sources(*, dataset=None, train_path=None, test_path=None):
    """Read the train and test files of a bundled data set or of your own.

    Returns:
        ``(data, source)``: ``{"train": (series, labels), "test": (...)}``
        (see :func:`read_ts`) and a dict saying where they came from.
    """
    aeon, _ = _aeon()
    if dataset is not None:
        name, (train_path, test_path) = find_dataset(dataset)
        source = {"dataset": name, "bundled_with": f"aeon {aeon.__version__}", "train": str(train_path),
                  "test": str(test_path)}
    else:
        source = {"train": str(Path(train_path).resolve()), "test": str(Path(test_path).resolve()),
                  "read_with": f"aeon {aeon.__version__}"}
    data = {"train": read_ts(train_path, split="train"), "test": read_ts(test_path, split="test")}
    return data, source


def build_ts_arrays(data, *, channels=None, classes=None, length=None, frame=None, fill_missing=False,
                    names=None):
    """Select, clean, resample and frame-check the series of :func:`load_ts_sources`.

    Args:
        data: ``{"train": (series, labels), "test": (series, labels)}``.
        channels: channel numbers to keep, in order (None: all).
        classes: labels to keep, in order; matched ignoring case (None: all).
        length: resample every series to this many steps (None: keep).
        frame: steps per frame (None: :func:`default_frame`).
        fill_missing: fill NaNs instead of refusing them.
        names: ``{"train": ..., "test": ...}`` naming the files in messages.

    Returns:
        ``(arrays, stats)``: the per-split keys of the npz converter
        (``x_train`` ``(N, L, C)``, ``y_train``, ``x_test``, ``y_test``,
        ``class_names``), and what was done, for the provenance.

    Raises:
        UserError: for an unknown channel or class, a class missing from
            train, unequal lengths without ``length``, missing values
            without ``fill_missing``, or a frame that does not fit.
    """
    names = names or {split: split for split in data}
    widths = {split: data[split][0][0].shape[1] for split in data}
    if widths["train"] != widths["test"]:
        raise UserError(f"the train file has {widths['train']} channels and the test file {widths['test']}; both"
                        " must have the same channels")
    n_channels = widths["train"]
    if channels is not None:
        unknown = [c for c in channels if c >= n_channels]
        if unknown:
            raise UserError(f"channel {unknown[0]} is not in the data, which has {n_channels} channel(s),"
                            f" numbered 0 to {n_channels - 1}. Received: --channels {','.join(map(str, channels))}")
    all_labels = ordered_labels(np.concatenate([data[split][1] for split in data]).tolist())
    if classes is not None:
        by_lower = {label.lower(): label for label in all_labels}
        unknown = [c for c in classes if c.lower() not in by_lower]
        if unknown:
            raise UserError(f"class {unknown[0]!r} is not in the data, whose classes are {', '.join(all_labels)}")
        class_names = [by_lower[c.lower()] for c in classes]
    else:
        class_names = all_labels

    selected, dropped, filled = {}, {}, 0
    for split in data:
        series, labels = data[split]
        kept, labels, positions = _select(series, labels, channels=channels, classes=classes)
        dropped[split] = len(series) - len(kept)
        if not kept:
            raise UserError(f"the {split} file has no series of the classes {', '.join(class_names)}")
        kept, count = _fill_or_refuse(kept, positions, fill_missing=fill_missing, where=names[split])
        filled += count
        selected[split] = (kept, labels)
    in_train = set(selected["train"][1].tolist())
    untrained = [name for name in class_names if name not in in_train]
    if untrained:
        raise UserError(f"class {untrained[0]!r} has no series in the train file, so no model could learn it;"
                        f" leave it out with --classes")

    lengths = [len(s) for split in selected for s in selected[split][0]]
    shortest, longest = min(lengths), max(lengths)
    if length is None:
        if shortest != longest:
            suggested = int(np.ceil(longest / DEFAULT_FRAMES)) * DEFAULT_FRAMES
            raise UserError(f"the series have unequal lengths ({shortest} to {longest} steps); pass --length L to"
                            f" resample every series to L steps by linear interpolation (e.g. --length {suggested})")
        final = longest
    else:
        final = int(length)
    frame = _frame_for(final, frame, length is not None)

    arrays = {"class_names": np.array(class_names, dtype=str)}
    for split, (series, labels) in selected.items():
        arrays[f"x_{split}"] = np.stack([resample(s, final) for s in series]).astype(np.float32)
        arrays[f"y_{split}"] = labels
    stats = {"channels_in_file": n_channels, "lengths": {"min": shortest, "max": longest}, "length": final,
             "frame": int(frame), "dropped_series": dropped, "filled_values": filled}
    return arrays, stats


def prepare_ts(domain, out_dir=None, *, dataset=None, train_path=None, test_path=None, channels=None, classes=None,
               length=None, frame=None, fill_missing=False, val_from_train=DEFAULT_VAL_FROM_TRAIN, seed=0):
    """Convert a UCR/UEA ``.ts`` train/test pair into ``<out_dir>/<domain>.h5``.

    Args:
        domain: the domain's name (the file's stem).
        out_dir: folder of the domain files; None means ``$CONVLSTM_TL_DATA``
            or ``./data``.
        dataset: name of a data set bundled with aeon (or give both paths).
        train_path, test_path: your own ``.ts`` files.
        channels, classes, length, frame, fill_missing: see
            :func:`build_ts_arrays`.
        val_from_train: the fraction of the train file carved out as val,
            stratified by label.
        seed: seed of the carving of val.

    Returns:
        The :class:`DomainInfo` of the written file.

    Raises:
        UserError: with one line, for any mistake in the options or data.
    """
    check_domain_name(domain)
    # Options first: a typo should not wait for the files to be read.
    _check_options(dataset=dataset, train_path=train_path, test_path=test_path, channels=channels, classes=classes,
                   length=length, frame=frame, val_from_train=val_from_train)
    channels = None if channels is None else [int(c) for c in channels]
    classes = None if classes is None else [str(c) for c in classes]
    data, source = load_ts_sources(dataset=dataset, train_path=train_path, test_path=test_path)
    files = {split: Path(source[split]).name for split in SPLIT_FILES}
    arrays, stats = build_ts_arrays(data, channels=channels, classes=classes, length=length, frame=frame,
                                    fill_missing=fill_missing, names=files)
    # The series were laid out (N, steps, channels) here, from aeon's (channels, steps):
    # the npz guard against an untransposed (N, C, T) array has nothing to catch.
    splits, class_names, _, carved = build_npz_domain(arrays, layout="NTC", frame=stats["frame"], seed=seed,
                                                      val_from_train=val_from_train, confirm_layout=True)
    frames = stats["length"] // stats["frame"]
    resampled = length is not None and (stats["lengths"]["min"] != length or stats["lengths"]["max"] != length)
    provenance = {
        "source": source,
        "converter": "python -m data_prep ts (data_prep.ts.prepare_ts)",
        "domain": domain,
        "channels": {"kept": channels if channels is not None else "all", "in_file": stats["channels_in_file"]},
        "classes": {"kept": class_names if classes is not None else "all",
                    "series_dropped": stats["dropped_series"]},
        "lengths_of_kept_series": stats["lengths"],
        "resampling": (f"linear interpolation per channel to {length} steps" if resampled
                       else "none"),
        "missing_values": (f"{stats['filled_values']} filled by linear interpolation in time per channel"
                           if stats["filled_values"] else "none"),
        "frame": stats["frame"],
        "frames": frames,
        "frame_rule": "given (--frame)" if frame is not None else (
            f"default: {frames} frames ({DEFAULT_FRAMES} when it divides the length, else the divisor from"
            f" {FRAME_COUNTS[0]} to {FRAME_COUNTS[-1]} closest to {DEFAULT_FRAMES})"),
        "sample_shape": "(frames, 1, frame, channels): frame t holds steps t*frame..(t+1)*frame-1",
        "split": "train and test as the files give them" + describe_carved(carved),
        "val_from_train": carved,
        "group": "none",
        "counts": {name: int(len(splits[name].y)) for name in SPLITS},
    }
    info = write_domain(resolve_data_dir(out_dir) / f"{domain}.h5", splits, domain=domain,
                        class_names=class_names, provenance=json.dumps(provenance))
    logger.info("wrote %s", info.path)
    return info


def parse_channels(text):
    """``"0,1,2"`` -> ``[0, 1, 2]`` (None stays None).

    Raises:
        UserError: for anything but non-negative integers.
    """
    if text is None:
        return None
    parts = [part.strip() for part in text.split(",")]
    if not all(part.isdigit() for part in parts):
        raise UserError(f"--channels takes channel numbers from 0, comma separated (e.g. 0,1,2). Received: {text!r}")
    return [int(part) for part in parts]


def parse_classes(text):
    """``"a,b,c"`` -> ``["a", "b", "c"]`` (None stays None)."""
    if text is None:
        return None
    return [part.strip() for part in text.split(",")]


def add_arguments(parser):
    """Add the ``ts`` options to ``parser``."""
    parser.add_argument("--dataset", default=None, metavar="NAME",
                        help="a classification data set bundled with aeon (BasicMotions, JapaneseVowels, ArrowHead,"
                             " GunPoint, ...); read from aeon's wheel, never downloaded")
    parser.add_argument("--train", type=Path, default=None, metavar="FILE.ts", help="your own train file")
    parser.add_argument("--test", type=Path, default=None, metavar="FILE.ts", help="your own test file")
    parser.add_argument("--domain", required=True, help="name of the domain; writes <out>/<domain>.h5")
    parser.add_argument("--out", type=Path, default=None,
                        help="folder of domain files (default: $CONVLSTM_TL_DATA or ./data)")
    parser.add_argument("--channels", default=None, metavar="0,1,2",
                        help="keep these channels (numbered from 0), in this order (default: all)")
    parser.add_argument("--classes", default=None, metavar="a,b,c",
                        help="keep the series of these class labels, in this order (default: all)")
    parser.add_argument("--length", type=int, default=None, metavar="L",
                        help="resample every series to L steps by linear interpolation per channel (required when"
                             " lengths differ)")
    parser.add_argument("--frame", type=int, default=None, metavar="W",
                        help=f"time steps per frame; a series becomes L // W frames of 1 x W (default: L /"
                             f" {DEFAULT_FRAMES}, else the divisor of L giving {FRAME_COUNTS[0]}-{FRAME_COUNTS[-1]}"
                             f" frames closest to {DEFAULT_FRAMES})")
    parser.add_argument("--fill-missing", action="store_true",
                        help="fill missing values (NaN, ?) by linear interpolation in time (default: refuse them)")
    parser.add_argument("--val-from-train", type=float, default=DEFAULT_VAL_FROM_TRAIN, metavar="F",
                        help=f"the files hold train and test only: carve val, a fraction F of train, out of it,"
                             f" stratified by label (default: {DEFAULT_VAL_FROM_TRAIN})")
    parser.add_argument("--seed", type=int, default=0, help="seed of --val-from-train (default: 0)")
    parser.add_argument("--quiet", action="store_true", help="print nothing unless there is an error")


def run(args):
    """Run ``ts`` with parsed ``args``, print a summary, return the exit code."""
    info = prepare_ts(args.domain, args.out, dataset=args.dataset, train_path=args.train, test_path=args.test,
                      channels=parse_channels(args.channels), classes=parse_classes(args.classes),
                      length=args.length, frame=args.frame, fill_missing=args.fill_missing,
                      val_from_train=args.val_from_train, seed=args.seed)
    if not args.quiet:
        sizes = ", ".join(f"{split} {info.split_sizes[split]}" for split in SPLITS)
        print(f"wrote {info.path}: {sizes} samples of shape {info.frame_shape}; classes"
              f" {', '.join(info.class_names)}")
    return 0
