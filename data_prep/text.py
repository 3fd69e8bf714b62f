"""Entity-level sentiment text (tab-separated) -> a tokens domain of word ids.

The input has one example per line, in the format of the original ConvLSTM
transfer experiments, three tab-separated fields and an optional fourth::

    sentence<TAB>entity<TAB>label[<TAB>split]

- ``sentence``: tokens joined by ``###``, each token
  ``word|POS|position|distance-to-entity`` (position and distance integers);
- ``entity``: the entity the label is about;
- ``label``: the class, e.g. ``Negative``, ``Neutral`` or ``Positive``;
- ``split`` (optional, all lines or none): ``train``, ``val`` or ``test``.

Fields are read as CSV (RFC 4180) with a tab as the delimiter (``delimiter``
changes it): a field in double quotes may hold the delimiter, and a quote
inside it is doubled. ``skip_header`` (``--skip-header``) skips the first
line.

Each sentence becomes ``frames * width`` word ids, cut into ``frames`` frames
of ``width`` tokens: ``x`` is int32 ``(N, frames, 1, width, 1)``. Shorter
sentences are padded at the end with the PAD id; longer ones keep the
``frames * width`` tokens centred on the entity (the token with the smallest
distance to it), since that is what the label is about. Only the words are
encoded (lower-cased unless ``keep_case``); POS and positions are checked but
not stored.

The vocabulary is stored in the file: id 0 is :data:`PAD`, id 1 is
:data:`OOV`, then the training split's words by decreasing count (ties in
alphabetical order), those seen at least ``min_count`` times. With
``vocab_from``, another domain's vocabulary encodes this one instead (its
unknown words become OOV), so that a body trained on that domain sees the
same ids.

Without a split column, lines are split stratified by label, grouped by
sentence, so that a sentence labelled for two entities never lands in two
splits (``group`` = the sentence's index in order of first appearance). A
split column is taken as it is, but a sentence in two of its splits is
refused, as a leak; when it names train and test but no val,
``val_from_train`` (``--val-from-train F``) carves val out of train, with
the same grouping.

Library use::

    from data_prep.text import prepare_text
    info = prepare_text("laptops.tsv", "laptops", "data")
    info = prepare_text("restaurants.tsv", "restaurants", "data", vocab_from="laptops")

Command line::

    python -m data_prep text --input laptops.tsv --domain laptops
    python -m data_prep text --input restaurants.tsv --domain restaurants --vocab-from laptops
"""

import csv
import json
import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from convlstm_tl.data.format import SPLITS, SplitArrays, check_domain_name, find_domain, open_domain, resolve_data_dir
from convlstm_tl.data.writer import write_domain
from convlstm_tl.errors import UserError
from data_prep.delimited import check_delimiter
from data_prep.splits import (
    DEFAULT_TEST, DEFAULT_VAL, add_split_arguments, add_val_from_train_argument, check_ratios, check_val_from_train,
    complete_given_splits, describe_carved, split_indices,
)

logger = logging.getLogger(__name__)

PAD = "<pad>"
OOV = "<oov>"
PAD_ID, OOV_ID = 0, 1
TOKEN_SEPARATOR = "###"
FIELD_SEPARATOR = "|"
# One place for each default; the CLI reads them from here.
DEFAULT_FRAMES = 8
DEFAULT_WIDTH = 8  # 8 frames x 8 tokens = 64 tokens, longer than most review sentences
DEFAULT_MIN_COUNT = 1
DEFAULT_DELIMITER = "\t"


@dataclass(frozen=True)
class Example:
    """One parsed line.

    Attributes:
        words: the sentence's words, in order.
        distances: each word's distance to the entity.
        entity: the entity text.
        label: the label text.
        split: ``train``, ``val``, ``test``, or None without a split column.
        line: the line number in the file (1-based), for messages.
    """

    words: tuple
    distances: tuple
    entity: str
    label: str
    split: str | None
    line: int


def parse_line(text, line, *, delimiter=DEFAULT_DELIMITER):
    """Parse one line of the format (see the module docstring) into an :class:`Example`.

    Raises:
        UserError: naming the line, for broken quoting, a wrong number of
            fields, an empty field, a malformed token or an unknown split
            name.
    """
    try:
        fields = next(csv.reader([text.rstrip("\r\n")], delimiter=check_delimiter(delimiter), strict=True), [])
    except csv.Error as error:
        raise UserError(_quoting_problem(error, line)) from None
    return parse_fields(fields, line, delimiter=delimiter)


def _quoting_problem(error, line):
    return (f"line {line}: {error}; a field that starts with a double quote is read as quoted (CSV, RFC 4180):"
            " end it with a quote and double every quote inside it")


def parse_fields(fields, line, *, delimiter=DEFAULT_DELIMITER):
    """Parse the fields of one example (as the CSV reader split them) into an :class:`Example`.

    Raises:
        UserError: naming the line, for a wrong number of fields, an empty
            field, a malformed token or an unknown split name.
    """
    if len(fields) not in (3, 4):
        separated = "tab" if delimiter == "\t" else repr(delimiter)
        raise UserError(f"line {line}: expected 3 or 4 {separated}-separated fields (sentence, entity, label[, split])"
                        f". Received: {len(fields)} field(s)")
    sentence, entity, label = (field.strip() for field in fields[:3])
    split = fields[3].strip() if len(fields) == 4 else None
    if not sentence or not label:
        raise UserError(f"line {line}: the {'sentence' if not sentence else 'label'} is empty")
    if split is not None and split not in SPLITS:
        raise UserError(f"line {line}: the split column must be one of {', '.join(SPLITS)}. Received: {split!r}")
    words, distances = [], []
    for number, token in enumerate(sentence.split(TOKEN_SEPARATOR), start=1):
        # rsplit: a word may itself contain the separator.
        parts = token.rsplit(FIELD_SEPARATOR, 3)
        try:
            if len(parts) != 4 or not parts[0]:
                raise ValueError
            int(parts[2])
            distance = int(parts[3])
        except ValueError:
            raise UserError(f"line {line}, token {number}: expected word|POS|position|distance-to-entity with "
                            f"integer position and distance. Received: {token!r}") from None
        words.append(parts[0])
        distances.append(distance)
    return Example(tuple(words), tuple(distances), entity, label, split, line)


def read_examples(path, *, delimiter=DEFAULT_DELIMITER, skip_header=False):
    """Parse every non-blank line of ``path``.

    Args:
        path: the file (format in the module docstring).
        delimiter: the field separator; fields may be quoted as in CSV.
        skip_header: skip the first line (a header).

    Raises:
        UserError: for a missing or unreadable file, broken quoting or a
            malformed line (with its number), a file without examples, or a
            split column given on some lines only.
    """
    path = Path(path)
    check_delimiter(delimiter)
    if not path.is_file():
        raise UserError(f"input file {path} not found")
    examples = []
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:  # a byte-order mark is not text
            for line, fields in _records(csv.reader(f, delimiter=delimiter, strict=True)):
                if line == 1 and skip_header or not any(field.strip() for field in fields):
                    continue
                try:
                    examples.append(parse_fields(fields, line, delimiter=delimiter))
                except UserError as error:
                    if line == 1:
                        raise UserError(f"{error}; if line 1 is a header, pass --skip-header") from None
                    raise
    except UnicodeDecodeError as error:
        raise UserError(f"{path} is not UTF-8 text ({error.reason} at byte {error.start})") from None
    if not examples:
        raise UserError(f"{path} holds no examples; expected lines of sentence<TAB>entity<TAB>label")
    with_split = [e.split is not None for e in examples]
    if any(with_split) and not all(with_split):
        odd = examples[with_split.index(not with_split[0])]
        raise UserError(f"line {odd.line}: the split column must be on every line or on none"
                        f" (line {examples[0].line} {'has' if with_split[0] else 'lacks'} it)")
    return examples


def _records(reader):
    """Yield ``(first line number, fields)`` of each record; a quoted field may span lines."""
    line = 1
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            raise UserError(_quoting_problem(error, line)) from None
        yield line, fields
        line = reader.line_num + 1


def build_vocab(word_lists, *, min_count=DEFAULT_MIN_COUNT):
    """The vocabulary of ``word_lists``: PAD, OOV, then words by decreasing count.

    Words seen fewer than ``min_count`` times are left out (they encode as
    OOV); ties in count are in alphabetical order, so the ids do not depend
    on the order of the lines.
    """
    counts = Counter(word for words in word_lists for word in words)
    kept = sorted((w for w, n in counts.items() if n >= min_count and w not in (PAD, OOV)),
                  key=lambda w: (-counts[w], w))
    return [PAD, OOV, *kept]


def encode(words, distances, index, *, length):
    """Word ids ``(length,)`` of one sentence: padded at the end, or cut around the entity.

    Args:
        words: the sentence's words.
        distances: their distances to the entity.
        index: mapping of word to id; unknown words get :data:`OOV_ID`.
        length: number of ids to return.
    """
    ids = np.full(length, PAD_ID, dtype=np.int32)
    start = 0
    if len(words) > length:
        centre = int(np.argmin(np.abs(np.asarray(distances))))
        start = min(max(centre - length // 2, 0), len(words) - length)
    kept = words[start:start + length]
    ids[:len(kept)] = [index.get(word, OOV_ID) for word in kept]
    return ids


def read_vocab(source, data_dir=None):
    """The vocabulary of an existing tokens domain (a name in ``data_dir`` or a path), and its frame shape.

    Raises:
        UserError: if the domain is missing, is not a tokens domain, or its
            vocabulary does not start with PAD and OOV.
    """
    path = Path(source)
    if not (path.suffix == ".h5" and path.is_file()):
        path = find_domain(str(source), data_dir)
    info = open_domain(path, check_values=False)
    if info.kind != "tokens":
        raise UserError(f"--vocab-from needs a tokens domain; {path} holds {info.kind}")
    if tuple(info.vocab[:2]) != (PAD, OOV):
        raise UserError(f"the vocab of {path} does not start with {PAD!r}, {OOV!r}; it was not written by"
                        " python -m data_prep text")
    return list(info.vocab), info.frame_shape


def build_text_domain(examples, *, frames=DEFAULT_FRAMES, width=DEFAULT_WIDTH, vocab=None,
                      min_count=DEFAULT_MIN_COUNT, keep_case=False, val=DEFAULT_VAL, test=DEFAULT_TEST, seed=0,
                      val_from_train=None):
    """Encode parsed examples into the splits of a tokens domain, in memory.

    Args:
        examples: :class:`Example` list (see :func:`read_examples`).
        frames, width: each sentence becomes ``frames`` frames of ``width``
            word ids.
        vocab: encode with this vocabulary (PAD and OOV first); None builds
            one from the training split (see :func:`build_vocab`).
        min_count: when building the vocabulary, the fewest occurrences a
            word needs to get its own id.
        keep_case: keep the words' case; by default they are lower-cased.
        val, test: fractions for val and test when the lines carry no split
            column.
        seed: seed of the split, or of the carving of val.
        val_from_train: when the split column names train and test but no
            val, the fraction of the train lines to carve out as val
            (grouped by sentence).

    Returns:
        ``(splits, class_names, vocab, stats)``: ``{split: SplitArrays}``
        (``group`` = the sentence's index), the sorted label names, the
        vocabulary used, and counts for the provenance (OOV rate, truncated
        sentences, ``val_from_train`` when val was carved, ...).

    Raises:
        UserError: for bad options, fewer than 2 labels, a label with too
            few sentences to split, a sentence in two given splits, or a
            split column without val (and no ``val_from_train``).
    """
    check_val_from_train(val_from_train)
    for name, value in (("frames", frames), ("width", width), ("min_count", min_count)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise UserError(f"{name} must be a positive integer. Received: {name}={value!r}")
    class_names = sorted({e.label for e in examples})
    if len(class_names) < 2:
        raise UserError(f"the examples have {len(class_names)} label(s) ({', '.join(class_names)}); a classifier"
                        " needs at least 2")
    labels = np.array([class_names.index(e.label) for e in examples], dtype=np.int64)
    words = [tuple(w if keep_case else w.lower() for w in e.words) for e in examples]
    sentence_ids = {}
    groups = np.array([sentence_ids.setdefault(w, len(sentence_ids)) for w in words], dtype=np.int64)

    carved = None
    if examples[0].split is not None:
        parts = {name: np.array([i for i, e in enumerate(examples) if e.split == name], dtype=np.int64)
                 for name in SPLITS}
        empty = [name for name in ("train", "test") if not len(parts[name])]
        if empty:
            raise UserError(f"the split column names no line for {' and '.join(empty)}; every split needs examples")
        parts, carved = complete_given_splits(
            parts, labels, groups, val_from_train=val_from_train, seed=seed, class_names=class_names,
            no_val="the split column names no line for val", what="sentence",
            show=lambda i: _shown(examples[i].words), locate=lambda i: f"line {examples[i].line}")
    else:
        if val_from_train is not None:
            raise UserError("--val-from-train applies to a file with a split column; this one has none, so --val"
                            " and --test set the split")
        check_ratios(val, test)
        parts = split_indices(labels, groups, val=val, test=test, seed=seed, class_names=class_names)

    if vocab is None:
        vocab = build_vocab((words[i] for i in parts["train"]), min_count=min_count)
    index = {word: i for i, word in enumerate(vocab)}
    length = frames * width
    splits, stats = {}, {"tokens": 0, "oov": 0, "truncated": 0, "val_from_train": carved}
    for name in SPLITS:
        chosen = parts[name]
        ids = np.stack([encode(words[i], examples[i].distances, index, length=length) for i in chosen])
        for i in chosen:
            stats["tokens"] += min(len(words[i]), length)
            stats["truncated"] += int(len(words[i]) > length)
        stats["oov"] += int((ids == OOV_ID).sum())
        splits[name] = SplitArrays(x=ids.reshape(len(chosen), frames, 1, width, 1), y=labels[chosen],
                                   group=groups[chosen])
    return splits, class_names, vocab, stats


def _shown(words, limit=40):
    """A sentence, shortened, for a message."""
    text = " ".join(words)
    return repr(text if len(text) <= limit else text[:limit - 3] + "...")


def prepare_text(input_path, domain, out_dir=None, *, vocab_from=None, frames=None, width=None,
                 min_count=DEFAULT_MIN_COUNT, keep_case=False, val=DEFAULT_VAL, test=DEFAULT_TEST, seed=0,
                 val_from_train=None, delimiter=DEFAULT_DELIMITER, skip_header=False):
    """Convert a text file into ``<out_dir>/<domain>.h5`` (a tokens domain).

    Args:
        input_path: the tab-separated file (see the module docstring).
        domain: the domain's name (the file's stem).
        out_dir: folder of the domain files; None means ``$CONVLSTM_TL_DATA``
            or ``./data``. ``vocab_from`` is looked up there too.
        vocab_from: name (or ``.h5`` path) of a tokens domain whose
            vocabulary encodes this one.
        frames, width: the frame shape; None takes ``vocab_from``'s, or
            :data:`DEFAULT_FRAMES` x :data:`DEFAULT_WIDTH`.
        min_count, keep_case, val, test, seed, val_from_train: see
            :func:`build_text_domain`.
        delimiter, skip_header: see :func:`read_examples`.

    Returns:
        The :class:`DomainInfo` of the written file.
    """
    check_domain_name(domain)
    check_ratios(val, test)
    check_val_from_train(val_from_train)
    check_delimiter(delimiter)
    vocab, source_shape = None, None
    if vocab_from is not None:
        vocab, source_shape = read_vocab(vocab_from, out_dir)
    frames = frames if frames is not None else (source_shape[0] if source_shape else DEFAULT_FRAMES)
    width = width if width is not None else (source_shape[2] if source_shape else DEFAULT_WIDTH)
    examples = read_examples(input_path, delimiter=delimiter, skip_header=skip_header)
    splits, class_names, vocab, stats = build_text_domain(
        examples, frames=frames, width=width, vocab=vocab, min_count=min_count, keep_case=keep_case,
        val=val, test=test, seed=seed, val_from_train=val_from_train)
    separator = "<TAB>" if delimiter == "\t" else delimiter
    provenance = {
        "source": str(Path(input_path).resolve()),
        "converter": "python -m data_prep text (data_prep.text.prepare_text)",
        "domain": domain,
        "lines": len(examples),
        "format": (f"sentence{separator}entity{separator}label[{separator}split], quoted as in CSV (RFC 4180)"
                   f"{', first line skipped' if skip_header else ''}; tokens word|POS|position|distance joined by ###"),
        "encoded": "words only" + ("" if keep_case else ", lower-cased"),
        "frames": int(frames),
        "width": int(width),
        "length": int(frames * width),
        "padding": f"{PAD!r} (id {PAD_ID}) at the end",
        "truncation": "the length's tokens centred on the entity (smallest |distance|)",
        "vocab": (f"from domain {vocab_from}" if vocab_from is not None
                  else f"training split's words seen >= {min_count} times, by decreasing count"),
        "vocab_size": len(vocab),
        "oov_id": OOV_ID,
        "oov_rate": round(stats["oov"] / max(1, stats["tokens"]), 6),
        "truncated_sentences": stats["truncated"],
        "split": ("the file's split column" + describe_carved(stats["val_from_train"], grouped=True)
                  if examples[0].split is not None else
                  f"stratified by label, grouped by sentence, seed {seed}, ratios train "
                  f"{round(1 - val - test, 6)} / val {val} / test {test}"),
        "val_from_train": stats["val_from_train"],
        "group": "index of the sentence (in order of first appearance); a sentence is in one split only",
        "counts": {name: int(len(splits[name].y)) for name in SPLITS},
    }
    info = write_domain(resolve_data_dir(out_dir) / f"{domain}.h5", splits, domain=domain,
                        class_names=class_names, provenance=json.dumps(provenance), kind="tokens", vocab=vocab)
    logger.info("wrote %s", info.path)
    return info


def add_arguments(parser):
    """Add the ``text`` options to ``parser``."""
    parser.add_argument("--input", type=Path, required=True,
                        help="tab-separated file: sentence, entity, label [, split]; fields may be quoted as in CSV")
    parser.add_argument("--domain", required=True, help="name of the domain; writes <out>/<domain>.h5")
    parser.add_argument("--out", type=Path, default=None,
                        help="folder of domain files (default: $CONVLSTM_TL_DATA or ./data)")
    parser.add_argument("--vocab-from", metavar="DOMAIN",
                        help="encode with this tokens domain's vocabulary (a name in --out, or an .h5 path)")
    parser.add_argument("--frames", type=int, default=None,
                        help=f"frames per sentence (default: --vocab-from's, else {DEFAULT_FRAMES})")
    parser.add_argument("--width", type=int, default=None,
                        help=f"tokens per frame (default: --vocab-from's, else {DEFAULT_WIDTH})")
    parser.add_argument("--min-count", type=int, default=DEFAULT_MIN_COUNT,
                        help=f"occurrences a training word needs to get an id (default: {DEFAULT_MIN_COUNT})")
    parser.add_argument("--keep-case", action="store_true", help="do not lower-case words")
    parser.add_argument("--delimiter", type=_delimiter, default=DEFAULT_DELIMITER,
                        help="field separator, one character; \\t or tab for a tab (default: tab)")
    parser.add_argument("--skip-header", action="store_true", help="skip the first line of the file (a header)")
    add_split_arguments(parser, of="the sentences, without a split column",
                        seed_help="seed of the split, or of --val-from-train")
    add_val_from_train_argument(parser)
    parser.add_argument("--quiet", action="store_true", help="print nothing unless there is an error")


def _delimiter(text):
    """``--delimiter``'s value: a shell cannot easily pass a tab, so ``\\t`` and ``tab`` name it."""
    return "\t" if text in ("\\t", "tab") else text


def run(args):
    """Run ``text`` with parsed ``args``, print a summary, return the exit code."""
    info = prepare_text(args.input, args.domain, args.out, vocab_from=args.vocab_from, frames=args.frames,
                        width=args.width, min_count=args.min_count, keep_case=args.keep_case, val=args.val,
                        test=args.test, seed=args.seed, val_from_train=args.val_from_train,
                        delimiter=args.delimiter, skip_header=args.skip_header)
    if not args.quiet:
        sizes = ", ".join(f"{split} {info.split_sizes[split]}" for split in SPLITS)
        print(f"wrote {info.path}: {sizes} sentences of {info.frame_shape[0]} x {info.frame_shape[2]} tokens,"
              f" vocab {len(info.vocab)}")
    return 0
