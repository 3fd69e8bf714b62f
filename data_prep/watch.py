"""Smartwatch shoulder exercises (seglearn load_watch) -> St.h5 (right arm), ms.h5 (left arm).

The data (Burns et al. 2018) are 6-axis inertial recordings (accelerometer
``ax ay az``, gyroscope ``wx wy wz``, 50 Hz) of 10 subjects doing 7 shoulder
exercises with a watch on each arm in turn. Each recording is cut into sliding
windows that never cross recordings; a window of ``window`` samples becomes
``frames`` frames of ``window // frames`` samples, so one sample is
``(frames, 1, window // frames, 6)``. The two arms are the two domains of the
transfer experiments; subjects are split into train/val/test so that no
subject is in two splits. Values keep their raw units: the model normalizes.

Library use::

    from data_prep.watch import prepare_watch
    infos = prepare_watch("data")          # {"St": DomainInfo, "ms": DomainInfo}

Command line::

    python -m data_prep watch --out data --window 250 --overlap 0.5 --frames 10
"""

import json
import logging
import re
from pathlib import Path

import numpy as np

from convlstm_tl.data.format import SPLITS, SplitArrays, resolve_data_dir
from convlstm_tl.data.writer import write_domain
from convlstm_tl.errors import UserError
from data_prep.windows import check_window_options, sliding_windows, to_frames

logger = logging.getLogger(__name__)

# One place for each default; the CLI reads them from here.
DEFAULT_WINDOW = 250  # samples: 5 s at 50 Hz, about one exercise repetition or two
DEFAULT_OVERLAP = 0.5
DEFAULT_FRAMES = 10  # -> frames of 25 samples (0.5 s)
DEFAULT_SUBJECTS = {"train": "1-6", "val": "7", "test": "8-10"}

SAMPLING_HZ = 50
# Domain name -> (value of data['side'], arm). St is the source domain of the
# original experiments and is the right arm.
ARMS = {"St": (1.0, "right"), "ms": (0.0, "left")}
# Signs that map the left arm into right-arm coordinates. A mirror across the
# body's sagittal plane flips the watch's lateral axis: the acceleration
# (a vector) flips in ax, the angular velocity (a pseudo-vector) flips in the
# two other axes, wy and wz. The training splits agree: ax's mean is about
# -0.6 on the right arm and +0.5 on the left, for every exercise.
MIRROR_SIGNS = np.array([-1.0, 1.0, 1.0, 1.0, -1.0, -1.0], dtype=np.float32)
SOURCE = (
    "Burns et al. 2018, 'Shoulder physiotherapy exercise recognition: machine learning"
    " the inertial signals from a smartwatch' (arXiv:1802.01489), as shipped by"
    " seglearn.datasets.load_watch"
)
INSTALL_HINT = "pip install -e .[data]"


def parse_subjects(spec, *, option="subjects"):
    """Parse a subject list such as ``"1-6"``, ``"1,2,3"`` or ``"1-3,7"``.

    Args:
        spec: the text, or an iterable of ints (returned sorted).
        option: the option's name, used in error messages.

    Returns:
        A sorted tuple of distinct subject ids.

    Raises:
        UserError: if the text is not a list of ids and ranges, or is empty.
    """
    if not isinstance(spec, str):
        subjects = sorted({int(s) for s in spec})
        if not subjects:
            raise UserError(f"{option} is empty; give at least one subject. Received: {option}={list(spec)!r}")
        return tuple(subjects)
    subjects = set()
    for part in spec.split(","):
        part = part.strip()
        match = re.fullmatch(r"(\d+)(?:\s*-\s*(\d+))?", part)
        if not match:
            raise UserError(
                f"{option} must be subject ids and ranges such as 1-6 or 1,2,3. Received: {option}={spec!r}"
            )
        low = int(match.group(1))
        high = int(match.group(2)) if match.group(2) else low
        if high < low:
            raise UserError(f"{option} has a range that runs backwards. Received: {option}={spec!r}")
        subjects.update(range(low, high + 1))
    return tuple(sorted(subjects))


def load_watch_data():
    """Load the smartwatch data set through seglearn.

    Returns:
        seglearn's dict with ``X``, ``y``, ``side``, ``subject``, ``X_labels``
        and ``y_labels``, plus ``seglearn_version``.

    Raises:
        UserError: if seglearn (or pandas, which it imports) is missing.
    """
    try:
        import seglearn
        from seglearn.datasets import load_watch
    except ImportError as error:
        raise UserError(
            f"the watch data come with seglearn, which cannot be imported ({error});"
            f" install it with `{INSTALL_HINT}`"
        ) from None
    data = dict(load_watch())
    data["seglearn_version"] = getattr(seglearn, "__version__", "unknown")
    return data


def build_watch_domains(
    data,
    *,
    window=DEFAULT_WINDOW,
    overlap=DEFAULT_OVERLAP,
    frames=DEFAULT_FRAMES,
    train_subjects=DEFAULT_SUBJECTS["train"],
    val_subjects=DEFAULT_SUBJECTS["val"],
    test_subjects=DEFAULT_SUBJECTS["test"],
    mirror_left=False,
):
    """Cut the watch recordings into the splits of each arm's domain, in memory.

    Args:
        data: the dict of :func:`load_watch_data` (or one shaped like it).
        window: samples per window, > 0 and a multiple of ``frames``.
        overlap: fraction of a window shared with the next one, in ``[0, 1)``.
        frames: frames per sample (the ConvLSTM's time steps), > 0.
        train_subjects, val_subjects, test_subjects: subject ids of each
            split, as text (``"1-6"``, ``"1,2,3"``) or ints; no subject may be
            in two splits. Subjects in none are left out.
        mirror_left: store the left arm mirrored into right-arm coordinates
            (``ax``, ``wy`` and ``wz`` negated, see :data:`MIRROR_SIGNS`).

    Returns:
        ``{domain: {"splits": {split: SplitArrays}, "provenance": dict}}`` for
        the domains ``St`` (right arm) and ``ms`` (left arm). ``x`` is float32
        ``(N, frames, 1, window // frames, 6)``, ``y`` the exercise, ``group``
        the subject id, ``recording`` the index of the recording in seglearn's list.

    Raises:
        UserError: for an invalid option, or a split that gets no windows.
    """
    step = check_window_options(window, overlap, frames)
    split_subjects = _check_split_subjects(
        {"train": train_subjects, "val": val_subjects, "test": test_subjects},
        available=np.unique(np.asarray(data["subject"]).astype(int)),
    )
    subjects = np.asarray(data["subject"]).astype(int)
    sides = np.asarray(data["side"], dtype=float)
    labels = np.asarray(data["y"]).astype(np.int64)
    # Sorted so that a file's sample order does not depend on the order in
    # which seglearn happens to list the recordings.
    order = np.lexsort((labels, subjects))

    domains = {}
    for domain, (side, arm) in ARMS.items():
        splits, recordings = {}, {}
        for split, wanted in split_subjects.items():
            xs, ys, groups, recording_ids, n_recordings = [], [], [], [], 0
            for i in order:
                if sides[i] != side or subjects[i] not in wanted:
                    continue
                n_recordings += 1
                windows = sliding_windows(np.asarray(data["X"][i]), window, step)
                frames_x = to_frames(windows, frames).astype(np.float32)
                xs.append(frames_x * MIRROR_SIGNS if mirror_left and arm == "left" else frames_x)
                ys.append(np.full(len(windows), labels[i], dtype=np.int64))
                groups.append(np.full(len(windows), subjects[i], dtype=np.int64))
                recording_ids.append(np.full(len(windows), i, dtype=np.int64))
            if sum(len(y) for y in ys) == 0:
                raise UserError(
                    f"split {split!r} of {domain} ({arm} arm) gets no windows: its {n_recordings} recordings"
                    f" of subjects {list(wanted)} are shorter than the window; use a smaller --window."
                    f" Received: window={window}"
                )
            splits[split] = SplitArrays(x=np.concatenate(xs), y=np.concatenate(ys), group=np.concatenate(groups),
                                        recording=np.concatenate(recording_ids))
            recordings[split] = n_recordings
        domains[domain] = {
            "splits": splits,
            "provenance": _provenance(
                data, domain=domain, side=side, arm=arm, window=window, overlap=overlap, step=step,
                frames=frames, split_subjects=split_subjects, splits=splits, recordings=recordings,
                mirrored=mirror_left and arm == "left",
            ),
        }
    return domains


def prepare_watch(
    out_dir=None,
    *,
    window=DEFAULT_WINDOW,
    overlap=DEFAULT_OVERLAP,
    frames=DEFAULT_FRAMES,
    train_subjects=DEFAULT_SUBJECTS["train"],
    val_subjects=DEFAULT_SUBJECTS["val"],
    test_subjects=DEFAULT_SUBJECTS["test"],
    mirror_left=False,
):
    """Write ``<out_dir>/St.h5`` (right arm) and ``<out_dir>/ms.h5`` (left arm).

    Every option is checked and both domains are built before either file is
    written, and each file is written atomically, so a mistake leaves no file
    behind and an existing file is replaced only by a complete one.

    Args:
        out_dir: folder of the domain files (created if missing); None means
            ``$CONVLSTM_TL_DATA`` or ``./data``.
        window, overlap, frames, train_subjects, val_subjects, test_subjects,
        mirror_left: see :func:`build_watch_domains`.

    Returns:
        ``{"St": DomainInfo, "ms": DomainInfo}`` of the written files.

    Raises:
        UserError: for an invalid option or a missing seglearn.
    """
    # Options first: a typo should not wait for the data to load.
    check_window_options(window, overlap, frames)
    data = load_watch_data()
    domains = build_watch_domains(
        data, window=window, overlap=overlap, frames=frames,
        train_subjects=train_subjects, val_subjects=val_subjects, test_subjects=test_subjects,
        mirror_left=mirror_left,
    )
    out_dir = resolve_data_dir(out_dir)
    infos = {}
    for domain, built in domains.items():
        infos[domain] = write_domain(
            out_dir / f"{domain}.h5",
            built["splits"],
            domain=domain,
            class_names=[str(name) for name in data["y_labels"]],
            provenance=json.dumps(built["provenance"]),
        )
        logger.info("wrote %s", infos[domain].path)
    return infos


def _check_split_subjects(specs, *, available):
    """Parse the subject list of each split and check they are disjoint and known."""
    parsed = {split: parse_subjects(spec, option=f"{split}_subjects") for split, spec in specs.items()}
    for split in SPLITS:
        unknown = sorted(set(parsed[split]) - {int(s) for s in available})
        if unknown:
            raise UserError(
                f"{split}_subjects names subjects {unknown} that the watch data lack"
                f" (it has {_ranges(available)}). Received: {split}_subjects={specs[split]!r}"
            )
    for i, first in enumerate(SPLITS):
        for second in SPLITS[i + 1:]:
            shared = sorted(set(parsed[first]) & set(parsed[second]))
            if shared:
                raise UserError(
                    f"subjects {shared} are in both {first} and {second}; a subject must be in one split only."
                    f" Received: {first}_subjects={specs[first]!r}, {second}_subjects={specs[second]!r}"
                )
    return parsed


def _ranges(ids):
    ids = sorted(int(i) for i in ids)
    if ids and ids == list(range(ids[0], ids[-1] + 1)):
        return f"{ids[0]}-{ids[-1]}"
    return ",".join(str(i) for i in ids)


def _provenance(data, *, domain, side, arm, window, overlap, step, frames, split_subjects, splits, recordings,
                mirrored=False):
    return {
        "source": SOURCE,
        "seglearn_version": data.get("seglearn_version", "unknown"),
        "converter": "python -m data_prep watch (data_prep.watch.prepare_watch)",
        "domain": domain,
        "arm": arm,
        "side": side,
        "sampling_hz": SAMPLING_HZ,
        "channels": [str(name) for name in data["X_labels"]],
        "units": "raw sensor values as given by seglearn (not normalized)",
        "mirrored": (f"yes: channels multiplied by {MIRROR_SIGNS.tolist()} to map the left arm into right-arm"
                     " coordinates" if mirrored else "no"),
        "channel_signs": MIRROR_SIGNS.tolist() if mirrored else None,
        "window": int(window),
        "overlap": float(overlap),
        "step": int(step),
        "frames": int(frames),
        "frame_width": int(window // frames),
        "sample_shape": "(frames, 1, frame_width, channels): frame t holds window samples t*W..(t+1)*W-1",
        "windows_cross_recordings": False,
        "label": "the recording's exercise",
        "group": "subject id",
        "recording": "index of the recording in seglearn load_watch (subsampling keeps recordings whole)",
        "split_subjects": {split: [int(s) for s in ids] for split, ids in split_subjects.items()},
        "recordings": {split: int(n) for split, n in recordings.items()},
        "counts": {split: int(len(arrays.y)) for split, arrays in splits.items()},
    }


def add_arguments(parser):
    """Add the ``watch`` options to ``parser``."""
    parser.add_argument("--out", type=Path, default=None,
                        help="folder for St.h5 and ms.h5 (default: $CONVLSTM_TL_DATA or ./data)")
    parser.add_argument("--window", type=int, default=DEFAULT_WINDOW,
                        help=f"samples per window at 50 Hz (default: {DEFAULT_WINDOW})")
    parser.add_argument("--overlap", type=float, default=DEFAULT_OVERLAP,
                        help=f"fraction of a window shared with the next, in [0, 1) (default: {DEFAULT_OVERLAP})")
    parser.add_argument("--frames", type=int, default=DEFAULT_FRAMES,
                        help=f"frames per sample; must divide --window (default: {DEFAULT_FRAMES})")
    for split in SPLITS:
        parser.add_argument(f"--{split}-subjects", default=DEFAULT_SUBJECTS[split], metavar="IDS",
                            help=f"subjects of the {split} split, e.g. 1-6 or 1,2,3"
                                 f" (default: {DEFAULT_SUBJECTS[split]})")
    parser.add_argument("--mirror-left", action="store_true",
                        help="store the left arm mirrored into right-arm coordinates (ax, wy, wz negated)")
    parser.add_argument("--quiet", action="store_true", help="print nothing unless there is an error")


def run(args):
    """Run ``watch`` with parsed ``args``, print a summary, return the exit code."""
    infos = prepare_watch(
        args.out, window=args.window, overlap=args.overlap, frames=args.frames,
        train_subjects=args.train_subjects, val_subjects=args.val_subjects, test_subjects=args.test_subjects,
        mirror_left=args.mirror_left,
    )
    if not args.quiet:
        for domain, info in infos.items():
            sizes = ", ".join(f"{split} {info.split_sizes[split]}" for split in SPLITS)
            print(f"wrote {info.path} ({ARMS[domain][1]} arm): {sizes} samples of shape {info.frame_shape}")
    return 0
