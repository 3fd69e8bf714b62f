"""Your own arrays (a NumPy .npz file) -> a frames domain.

Keys read from the file (``numpy.savez``), all others are ignored:

``x``
    the samples, numbers, in the layout given by ``--layout``:
    ``NTHWC`` (frames as they are), ``NTWC`` (1-D frames, stored with
    ``H == 1``) or ``NTC`` (a multichannel series; ``--frame W`` cuts its
    time axis into frames of ``W`` steps, stored as ``(T // W, 1, W, C)``).
``y``
    one label per sample: integers or strings.
``class_names`` (optional)
    names of the classes. Integer labels index into it; string labels must
    be among them. Without it, the classes are the sorted distinct labels.
``group`` (optional)
    one id per sample (subject, recording); no id ends up in two splits.
``split`` (optional)
    one of ``train``, ``val``, ``test`` per sample: the splits as given.

Instead of ``x``/``y``/``group``, the file may hold the splits as separate
keys: ``x_train``, ``y_train``, ``x_val``, ``y_val``, ``x_test``, ``y_test``
(and ``group_train``, ``group_val``, ``group_test``). Without given splits,
train/val/test are stratified by label, and group-aware when groups exist.

Given splits are taken as they are: a group id in two of them is refused.
When they hold train and test but no val (as most public sets ship),
``val_from_train`` (``--val-from-train F``) carves val out of the given
train split, stratified by label and keeping groups whole.

``NTC`` refuses an ``x`` whose channel axis is longer than its time axis,
the mark of an untransposed ``(N, C, T)`` array, unless ``confirm_layout``
(``--confirm-layout``) says the layout is right.

Library use::

    from data_prep.npz import prepare_npz
    info = prepare_npz("mine.npz", "mine", "data", layout="NTC", frame=25)

Command line::

    python -m data_prep npz --input mine.npz --domain mine --layout NTC --frame 25
"""

import json
import logging
import zipfile
from pathlib import Path

import numpy as np

from convlstm_tl.data.format import SPLITS, SplitArrays, check_domain_name, resolve_data_dir
from convlstm_tl.data.writer import write_domain
from convlstm_tl.errors import UserError
from data_prep.splits import (
    DEFAULT_TEST, DEFAULT_VAL, add_split_arguments, add_val_from_train_argument, check_ratios, check_val_from_train,
    complete_given_splits, describe_carved, split_indices,
)

logger = logging.getLogger(__name__)

LAYOUTS = ("NTHWC", "NTWC", "NTC")
DEFAULT_LAYOUT = "NTHWC"
SPLIT_KEYS = {name: (f"x_{name}", f"y_{name}", f"group_{name}") for name in SPLITS}


def to_thwc(x, layout, frame=None, *, confirm_layout=False):
    """Bring ``x`` of ``layout`` to ``(N, T, H, W, C)``.

    Args:
        x: the samples.
        layout: one of :data:`LAYOUTS`.
        frame: steps per frame, for ``NTC`` only (required there).
        confirm_layout: for ``NTC`` only: accept more channels than time
            steps, which otherwise marks an untransposed ``(N, C, T)`` array.

    Raises:
        UserError: for an unknown layout, a rank that does not match it, a
            missing or misplaced ``frame`` or ``confirm_layout``, an ``NTC``
            array that looks like ``(N, C, T)``, or a time axis ``frame``
            does not divide.
    """
    if layout not in LAYOUTS:
        raise UserError(f"layout must be one of {', '.join(LAYOUTS)}. Received: layout={layout!r}")
    if x.ndim != len(layout):
        raise UserError(f"x must have rank {len(layout)} for layout {layout}. Received: x.shape={x.shape}")
    if layout != "NTC" and frame is not None:
        raise UserError(f"--frame applies to layout NTC only. Received: layout={layout}, frame={frame}")
    if layout != "NTC" and confirm_layout:
        raise UserError(f"--confirm-layout applies to layout NTC only. Received: layout={layout}")
    if layout == "NTHWC":
        return x
    if layout == "NTWC":
        return x[:, :, None]
    check_ntc_axes(x.shape, confirm_layout=confirm_layout)
    if frame is None:
        raise UserError("layout NTC needs --frame W, the time steps per frame (the series becomes T // W frames"
                        " of 1 x W)")
    n, steps, channels = x.shape
    if isinstance(frame, bool) or not isinstance(frame, (int, np.integer)) or frame < 1 or steps % frame:
        raise UserError(f"--frame must be a positive divisor of the time axis. Received: frame={frame!r}, "
                        f"x.shape={x.shape}")
    return x.reshape(n, steps // frame, 1, frame, channels)


def check_ntc_axes(shape, *, confirm_layout=False):
    """Refuse an ``NTC`` shape whose channel axis is longer than its time axis, unless confirmed.

    Series are usually far longer than they are wide, and libraries that
    put channels first store ``(N, C, T)``: read as ``NTC``, such an array
    would become frames of channels, and train without an error.

    Raises:
        UserError: if ``shape[2] > shape[1]`` and not ``confirm_layout``.
    """
    steps, channels = shape[1], shape[2]
    if channels > steps and not confirm_layout:
        raise UserError(f"x looks like (N, C, T), not (N, T, C): {channels} channels but {steps} time steps;"
                        f" transpose it to (N, T, C) (x.transpose(0, 2, 1)), or pass --confirm-layout if it"
                        f" really has {channels} channels. Received: x.shape={tuple(shape)}")


def load_arrays(path):
    """Read the keys this converter knows from an ``.npz`` file.

    Returns:
        ``{key: array}`` of the known keys present.

    Raises:
        UserError: for a missing file, a file that is not an ``.npz``, or
            object (ragged) arrays.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"input file {path} not found")
    known = {"x", "y", "group", "class_names", "split", *(k for keys in SPLIT_KEYS.values() for k in keys)}
    try:
        data = np.load(path, allow_pickle=False)
        if not isinstance(data, np.lib.npyio.NpzFile):
            raise UserError(f"{path} is a single array; save x and y with numpy.savez")
        with data:
            return {key: data[key] for key in data.files if key in known}
    except ValueError as error:
        # np.load says "Object arrays cannot be loaded ..." for ragged data,
        # and "... pickled data ..." for a file that is no .npy/.npz at all.
        if "Object arrays" in str(error):
            raise UserError(f"{path} holds object arrays (ragged samples or Python objects); give every sample "
                            "the same shape and store plain numbers or strings") from None
        raise UserError(f"{path} is not a NumPy .npz file ({error})") from None
    except (OSError, zipfile.BadZipFile, EOFError) as error:
        raise UserError(f"{path} is not a readable NumPy .npz file ({error})") from None


def label_ids(y, class_names=None):
    """Map labels (ints or strings) to ids ``0..K-1``; return ``(ids, class_names)``.

    Raises:
        UserError: for labels that are neither ints nor strings, integer
            labels outside ``class_names``, string labels not among them,
            or fewer than 2 classes.
    """
    y = np.asarray(y)
    if y.ndim != 1:
        raise UserError(f"y must hold one label per sample. Received: y.shape={y.shape}")
    if y.dtype.kind == "f":
        if not np.all(np.isfinite(y)) or not np.all(y == np.round(y)):
            raise UserError("y holds non-integer numbers (or NaN); give integer or string labels")
        y = y.astype(np.int64)
    if y.dtype.kind not in "iuU":
        raise UserError(f"y must hold integer or string labels. Received: dtype={y.dtype}")
    if class_names is not None:
        names = [str(name) for name in np.asarray(class_names).ravel()]
        if len(set(names)) != len(names) or not all(names):
            raise UserError(f"class_names must be distinct non-empty names. Received: {names}")
        if y.dtype.kind == "U":
            unknown = sorted(set(y.tolist()) - set(names))
            if unknown:
                raise UserError(f"labels {unknown[:5]} are not in class_names {names}")
            ids = np.array([names.index(label) for label in y.tolist()], dtype=np.int64) if len(y) else y
        else:
            bad = y[(y < 0) | (y >= len(names))]
            if len(bad):
                raise UserError(f"integer labels must index class_names (0..{len(names) - 1}). "
                                f"Received: label {bad[0]}")
            ids = y.astype(np.int64)
    else:
        values, ids = np.unique(y, return_inverse=True)
        names = [str(v) for v in values]
    if len(np.unique(ids)) < 2:
        raise UserError(f"y holds {len(np.unique(ids))} class; a classifier needs at least 2")
    return ids.astype(np.int64), names


def _check_x(x, where="x"):
    if x.dtype.kind not in "iuf" or x.dtype.kind == "b":
        raise UserError(f"{where} must hold numbers. Received: dtype={x.dtype}")
    if x.dtype.kind == "f":
        bad = ~np.isfinite(x.reshape(len(x), -1)).all(axis=1)
        if bad.any():
            raise UserError(f"{where} has NaN or inf (first at sample {int(np.flatnonzero(bad)[0])}); clean the"
                            " data first")


def build_npz_domain(arrays, *, layout=DEFAULT_LAYOUT, frame=None, val=DEFAULT_VAL, test=DEFAULT_TEST, seed=0,
                     val_from_train=None, confirm_layout=False):
    """Turn the arrays of :func:`load_arrays` into the splits of a domain, in memory.

    Args:
        arrays: ``{key: array}`` (see the module docstring).
        layout, frame, confirm_layout: see :func:`to_thwc`.
        val, test: fractions for val and test when the file gives no splits.
        seed: seed of the split, or of the carving of val.
        val_from_train: when the file gives train and test but no val, the
            fraction of the given train split to carve out as val.

    Returns:
        ``(splits, class_names, how, carved)``: ``{split: SplitArrays}``,
        the class names, how the splits were made (for the provenance), and
        None or ``{"fraction", "seed"}`` when val was carved out of train.

    Raises:
        UserError: for missing or mismatched keys, bad values, a bad layout,
            a group in two given splits, a missing val without
            ``val_from_train`` (or one with it), or data too small to split.
    """
    check_val_from_train(val_from_train)
    class_names = arrays.get("class_names")
    per_split = any(SPLIT_KEYS[name][0] in arrays for name in SPLITS)
    if per_split:
        if "x" in arrays:
            raise UserError("the file holds both x and x_train/x_val/x_test; give one form")
        x, y, group, split = _join_split_keys(arrays)
        no_val = "the file gives x_train and x_test but no x_val"
    else:
        missing = [k for k in ("x", "y") if k not in arrays]
        if missing:
            raise UserError(f"the file lacks {' and '.join(missing)}; save the samples as x and the labels as y "
                            f"(or x_train, y_train, ...). Found keys: {sorted(arrays)}")
        x, y, group, split = arrays["x"], arrays["y"], arrays.get("group"), arrays.get("split")
        no_val = "the file's split array names no sample val"
    if x.ndim < 1 or len(x) == 0:
        raise UserError(f"x holds no samples. Received: x.shape={x.shape}")
    if y.shape != (len(x),):
        raise UserError(f"y must hold one label per sample of x. Received: x.shape={x.shape}, y.shape={y.shape}")
    if group is not None and np.shape(group) != (len(x),):
        raise UserError(f"group must hold one id per sample of x. Received: group.shape={np.shape(group)}")
    _check_x(x)
    x = to_thwc(x, layout, frame, confirm_layout=confirm_layout)
    ids, names = label_ids(y, class_names)
    carved = None

    if split is not None:
        split = np.asarray(split).astype(str)
        if split.shape != (len(x),):
            raise UserError(f"split must hold one name per sample of x. Received: split.shape={split.shape}")
        unknown = sorted(set(split.tolist()) - set(SPLITS))
        if unknown:
            raise UserError(f"split values must be train, val or test. Received: {unknown[:5]}")
        parts = {name: np.flatnonzero(split == name) for name in SPLITS}
        parts, carved = complete_given_splits(parts, ids, group, val_from_train=val_from_train, seed=seed,
                                              class_names=names, no_val=no_val)
        how = "as given in the file" + describe_carved(carved, grouped=group is not None)
    else:
        if val_from_train is not None:
            raise UserError("--val-from-train applies to splits the file gives (split, or x_train and x_test);"
                            " this file gives none, so --val and --test set the split")
        check_ratios(val, test)
        parts = split_indices(ids, group, val=val, test=test, seed=seed, class_names=names)
        how = (f"stratified by label{', by group' if group is not None else ''}, seed {seed}, ratios train "
               f"{round(1 - val - test, 6)} / val {val} / test {test}")
    splits = {name: SplitArrays(x=x[parts[name]], y=ids[parts[name]],
                                group=None if group is None else np.asarray(group)[parts[name]])
              for name in SPLITS}
    return splits, names, how, carved


def _join_split_keys(arrays):
    """``(x, y, group, split)`` of a file that gives its splits as keys; val may be missing."""
    given = [name for name in SPLITS if any(k in arrays for k in SPLIT_KEYS[name])]
    if "val" not in given:
        # Public sets often ship train and test only: --val-from-train fills in val.
        given = [name for name in SPLITS if name != "val"]
    missing = [k for name in given for k in SPLIT_KEYS[name][:2] if k not in arrays]
    if missing:
        raise UserError(f"the file gives per-split arrays but lacks {missing}")
    xs = [arrays[SPLIT_KEYS[name][0]] for name in given]
    ys = [arrays[SPLIT_KEYS[name][1]] for name in given]
    group_keys = [SPLIT_KEYS[name][2] for name in given]
    given_groups = [k in arrays for k in group_keys]
    if any(given_groups) and not all(given_groups):
        raise UserError(f"give {', '.join(group_keys)} together or none. Received: "
                        f"{[k for k in group_keys if k in arrays]}")
    for name, x in zip(given, xs):
        if x.ndim < 1 or not len(x):
            raise UserError(f"x_{name} is empty; every split needs samples")
    if len({x.shape[1:] for x in xs}) > 1:
        raise UserError(f"{', '.join(f'x_{name}' for name in given)} differ in sample shape. Received: "
                        f"{[x.shape for x in xs]}")
    if any(len(y_) != len(x_) for x_, y_ in zip(xs, ys)):
        raise UserError(f"each y_<split> needs one label per sample of x_<split>. Received: "
                        f"{[(len(x_), len(y_)) for x_, y_ in zip(xs, ys)]}")
    if len({y_.dtype.kind for y_ in ys}) > 1:
        raise UserError(f"{', '.join(f'y_{name}' for name in given)} mix string and integer labels")
    group = np.concatenate([arrays[k] for k in group_keys]) if all(given_groups) else None
    split = np.repeat(np.array(given), [len(x_) for x_ in xs])
    return np.concatenate(xs), np.concatenate(ys), group, split


def prepare_npz(input_path, domain, out_dir=None, *, layout=DEFAULT_LAYOUT, frame=None, val=DEFAULT_VAL,
                test=DEFAULT_TEST, seed=0, val_from_train=None, confirm_layout=False):
    """Convert an ``.npz`` file into ``<out_dir>/<domain>.h5``.

    Args:
        input_path: the ``.npz`` file (keys in the module docstring).
        domain: the domain's name (the file's stem).
        out_dir: folder of the domain files; None means ``$CONVLSTM_TL_DATA``
            or ``./data``.
        layout: layout of ``x``: ``NTHWC``, ``NTWC`` or ``NTC``.
        frame: for ``NTC``, time steps per frame.
        val, test: fractions for val and test when the file gives no splits.
        seed: seed of the split, or of the carving of val.
        val_from_train: when the file gives train and test but no val, the
            fraction of the given train split to carve out as val.
        confirm_layout: for ``NTC``, accept more channels than time steps.

    Returns:
        The :class:`DomainInfo` of the written file.
    """
    check_domain_name(domain)
    if layout not in LAYOUTS:
        raise UserError(f"layout must be one of {', '.join(LAYOUTS)}. Received: layout={layout!r}")
    check_ratios(val, test)
    check_val_from_train(val_from_train)
    arrays = load_arrays(input_path)
    splits, class_names, how, carved = build_npz_domain(arrays, layout=layout, frame=frame, val=val, test=test,
                                                        seed=seed, val_from_train=val_from_train,
                                                        confirm_layout=confirm_layout)
    provenance = {
        "source": str(Path(input_path).resolve()),
        "converter": "python -m data_prep npz (data_prep.npz.prepare_npz)",
        "domain": domain,
        "layout": layout,
        "frame": frame,
        "split": how,
        "val_from_train": carved,
        "group": "the file's group ids" if splits["train"].group is not None else "none",
        "counts": {name: int(len(splits[name].y)) for name in SPLITS},
    }
    info = write_domain(resolve_data_dir(out_dir) / f"{domain}.h5", splits, domain=domain,
                        class_names=class_names, provenance=json.dumps(provenance))
    logger.info("wrote %s", info.path)
    return info


def add_arguments(parser):
    """Add the ``npz`` options to ``parser``."""
    parser.add_argument("--input", type=Path, required=True,
                        help="the .npz file: x, y [, group, class_names, split] or x_train, y_train, ...")
    parser.add_argument("--domain", required=True, help="name of the domain; writes <out>/<domain>.h5")
    parser.add_argument("--out", type=Path, default=None,
                        help="folder of domain files (default: $CONVLSTM_TL_DATA or ./data)")
    parser.add_argument("--layout", default=DEFAULT_LAYOUT,
                        help=f"layout of x: {', '.join(LAYOUTS)} (default: {DEFAULT_LAYOUT})")
    parser.add_argument("--frame", type=int, default=None, metavar="W",
                        help="NTC only: time steps per frame; the series becomes T // W frames of 1 x W")
    parser.add_argument("--confirm-layout", action="store_true",
                        help="NTC only: x really has more channels than time steps (otherwise refused as a likely"
                             " untransposed (N, C, T) array)")
    add_split_arguments(parser, of="the samples, when the file gives no splits",
                        seed_help="seed of the split, or of --val-from-train")
    add_val_from_train_argument(parser)
    parser.add_argument("--quiet", action="store_true", help="print nothing unless there is an error")


def run(args):
    """Run ``npz`` with parsed ``args``, print a summary, return the exit code."""
    info = prepare_npz(args.input, args.domain, args.out, layout=args.layout, frame=args.frame, val=args.val,
                       test=args.test, seed=args.seed, val_from_train=args.val_from_train,
                       confirm_layout=args.confirm_layout)
    if not args.quiet:
        sizes = ", ".join(f"{split} {info.split_sizes[split]}" for split in SPLITS)
        print(f"wrote {info.path}: {sizes} samples of shape {info.frame_shape}")
    return 0
