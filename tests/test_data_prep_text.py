"""Tests of ``data_prep.text``, and of training and transferring on the tokens domains it writes."""

import json
import re

import numpy as np
import pytest

from conftest import data_prep_error_line
from convlstm_tl.data.format import open_domain
from convlstm_tl.data.reader import read_labels, read_split
from convlstm_tl.errors import UserError
from data_prep.__main__ import main
from data_prep.text import OOV_ID, PAD_ID, build_vocab, encode, parse_line, prepare_text, read_examples

SPLITS = ("train", "val", "test")
LABELS = ("Negative", "Neutral", "Positive")
CUES = {"Negative": ("bad", "awful"), "Neutral": ("okay", "fine"), "Positive": ("good", "great")}


def _sentence(words, entity_at=0):
    return "###".join(f"{w}|NN|{i}|{i - entity_at}" for i, w in enumerate(words))


def write_text_file(path, n=60, *, seed=0, extra_words=(), split_column=False):
    """A small data set whose label is given away by one cue word per sentence."""
    rng = np.random.default_rng(seed)
    filler = ["the", "Screen", "is", "a", "phone", "it", *extra_words]
    lines = []
    for i in range(n):
        label = LABELS[i % 3]
        words = list(rng.choice(filler, size=int(rng.integers(3, 9))))
        words.insert(int(rng.integers(0, len(words) + 1)), str(rng.choice(CUES[label])))
        words.append(f"unique{i}")
        line = f"{_sentence(words)}\t{words[0]}\t{label}"
        if split_column:
            line += "\t" + SPLITS[0 if i < n * 0.6 else 1 if i < n * 0.8 else 2]
        lines.append(line)
    path.write_text("\n".join(lines) + "\n")
    return path


def test_parse_line_keeps_words_and_distances():
    example = parse_line("a|DT|0|-1###b|c|NN|1|0###d|NN|2|1\tb|c\tPositive\n", 7)
    assert example.words == ("a", "b|c", "d")  # a word may hold the separator
    assert example.distances == (-1, 0, 1)
    assert (example.entity, example.label, example.split, example.line) == ("b|c", "Positive", None, 7)
    assert parse_line("a|DT|0|0\te\tNeutral\tval", 1).split == "val"


@pytest.mark.parametrize("text, message", [
    ("a|DT|0|0\tPositive", "expected 3 or 4 tab-separated fields"),
    ("a|DT|0|0\te\tPositive\tx\ty", "expected 3 or 4"),
    ("a|DT|0\te\tPositive", "token 1: expected word|POS|position|distance"),
    ("a|DT|0|0###b|NN|1|far\te\tPositive", "token 2"),
    ("\te\tPositive", "sentence is empty"),
    ("a|DT|0|0\te\t ", "label is empty"),
    ("a|DT|0|0\te\tPositive\ttraining", "split column must be one of"),
    ('"a|DT|0|0"x\te\tPositive', "a field that starts with a double quote is read as quoted"),
])
def test_parse_line_errors_name_the_line(text, message):
    with pytest.raises(UserError, match=message) as error:
        parse_line(text, 12)
    assert str(error.value).startswith("line 12")


def test_quoted_fields_hold_the_delimiter_and_doubled_quotes():
    example = parse_line('"a|DT|0|-1###""|``|1|0"\t"big\tscreen, ""new"""\tPositive\t"test"', 3)
    assert example.words == ("a", '"') and example.distances == (-1, 0)
    assert (example.entity, example.label, example.split) == ('big\tscreen, "new"', "Positive", "test")
    example = parse_line('a|DT|0|0,"screen, big",Negative', 4, delimiter=",")
    assert (example.entity, example.label) == ("screen, big", "Negative")
    with pytest.raises(UserError, match="expected 3 or 4 ','-separated fields"):
        parse_line("a|DT|0|0,screen, big, new,Negative", 4, delimiter=",")


def test_build_vocab_reserves_pad_and_oov_and_orders_by_count():
    vocab = build_vocab([("b", "a", "b"), ("c", "a", "b"), ("rare",)], min_count=1)
    assert vocab[:2] == ["<pad>", "<oov>"] and PAD_ID == 0 and OOV_ID == 1
    assert vocab[2:] == ["b", "a", "c", "rare"]
    assert build_vocab([("b", "a", "b"), ("rare",)], min_count=2) == ["<pad>", "<oov>", "b"]


def test_encode_pads_at_the_end_and_maps_unknown_words_to_oov():
    index = {"<pad>": 0, "<oov>": 1, "x": 2, "y": 3}
    ids = encode(("x", "zzz", "y"), (0, 1, 2), index, length=5)
    np.testing.assert_array_equal(ids, [2, OOV_ID, 3, PAD_ID, PAD_ID])
    assert ids.dtype == np.int32


def test_encode_truncates_around_the_entity():
    words = tuple(f"w{i}" for i in range(20))
    index = {w: i + 2 for i, w in enumerate(words)}
    distances = tuple(i - 15 for i in range(20))  # the entity is word 15
    np.testing.assert_array_equal(encode(words, distances, index, length=6), [index[f"w{i}"] for i in range(12, 18)])
    distances = tuple(range(20))  # the entity is word 0: keep the start
    np.testing.assert_array_equal(encode(words, distances, index, length=4), [2, 3, 4, 5])


def test_convert_writes_a_tokens_domain(tmp_path):
    source = write_text_file(tmp_path / "a.tsv", n=60)
    info = prepare_text(source, "reviews", tmp_path / "data", frames=3, width=4)
    assert info.kind == "tokens" and info.frame_shape == (3, 1, 4, 1) and info.x_dtype == "int32"
    assert info.class_names == LABELS and info.vocab[:2] == ("<pad>", "<oov>")
    assert sum(info.split_sizes.values()) == 60
    x, y = read_split(info.path, "train")
    assert x.min() >= 0 and x.max() < len(info.vocab)
    # Lower-cased by default; the training split's own words are never OOV.
    assert "screen" in info.vocab and "Screen" not in info.vocab
    assert not (x == OOV_ID).any()
    # Each label's cue word is in its sentences.
    for label, cues in CUES.items():
        cue_ids = [info.vocab.index(c) for c in cues if c in info.vocab]
        rows = x[y == LABELS.index(label)].reshape(-1, 12)
        assert all(np.isin(row, cue_ids).any() for row in rows)
    provenance = json.loads(info.provenance)
    assert provenance["length"] == 12 and provenance["vocab_size"] == len(info.vocab)


def test_same_sentence_for_two_entities_stays_in_one_split(tmp_path):
    lines = []
    for i in range(30):
        sentence = _sentence(["good" if i % 2 else "bad", "phone", f"s{i}"], entity_at=1)
        for entity, label in (("phone", "Positive" if i % 2 else "Negative"), ("battery", "Neutral")):
            lines.append(f"{sentence}\t{entity}\t{label}")
    (tmp_path / "pairs.tsv").write_text("\n".join(lines))
    info = prepare_text(tmp_path / "pairs.tsv", "pairs", tmp_path)
    seen = {name: set(read_labels(info.path, name)[1].tolist()) for name in SPLITS}
    assert not (seen["train"] & seen["val"] or seen["train"] & seen["test"] or seen["val"] & seen["test"])
    assert sum(info.split_sizes.values()) == 60


def test_split_column_is_used_as_given(tmp_path):
    source = write_text_file(tmp_path / "a.tsv", n=50, split_column=True)
    info = prepare_text(source, "given", tmp_path)
    assert info.split_sizes == {"train": 30, "val": 10, "test": 10}
    assert json.loads(info.provenance)["split"] == "the file's split column"


def test_vocab_from_encodes_with_the_source_vocab(tmp_path):
    data = tmp_path / "data"
    source = prepare_text(write_text_file(tmp_path / "a.tsv"), "src", data, frames=2, width=5)
    target_file = write_text_file(tmp_path / "b.tsv", seed=1, extra_words=("battery", "charger"))
    target = prepare_text(target_file, "tgt", data, vocab_from="src")
    assert target.vocab == source.vocab
    assert target.frame_shape == source.frame_shape  # the frame shape follows the source by default
    # Words the source has keep its ids; the others (unique<i>, battery, charger) become OOV.
    words = {w.lower() for e in read_examples(target_file) for w in e.words}
    known = {source.vocab.index(w) for w in words if w in source.vocab}
    ids = set(np.concatenate([read_split(target.path, name)[0].ravel() for name in SPLITS]).tolist())
    assert ids == known | {OOV_ID, PAD_ID}
    assert prepare_text(target_file, "tgt2", data, vocab_from=str(data / "src.h5"), frames=4).frame_shape[0] == 4


@pytest.mark.parametrize("content, message", [
    ("a|DT|0|0\te\tPositive\nb|DT|0\te\tNegative\n", "line 2, token 1"),
    ("a|DT|0|0\te\tPositive\n\nb|DT|0|0\te\n", "line 3: expected 3 or 4"),
    ("".join(f"w{i}|NN|0|0\te\tPositive\n" for i in range(9)), "at least 2"),
    ("", "holds no examples"),
    ("a|DT|0|0\te\tPositive\ttrain\nb|DT|0|0\te\tNegative\n", "line 2: the split column must be on every line"),
    ("".join(f"w{i}|NN|0|0\te\t{LABELS[i % 2]}\t{'train' if i < 8 else 'test'}\n" for i in range(10)),
     "names no line for val; pass --val-from-train F"),
    ("sentence\tentity\tlabel\n" + "".join(f"w{i}|NN|0|0\te\t{LABELS[i % 2]}\n" for i in range(9)),
     "line 1, token 1: expected word|POS|position|distance-to-entity with integer position and distance. "
     "Received: 'sentence'; if line 1 is a header, pass --skip-header"),
    ('a|DT|0|0\te\tPositive\n"b|DT|0|0\te\tNegative\nc|DT|0|0\te\tNeutral\n', "line 2: unexpected end of data"),
    ("".join(f"w{i}|NN|0|0\te\t{'Positive' if i else 'Negative'}\n" for i in range(9)), "too few to split"),
])
def test_bad_files_exit_2_with_one_line(content, message, tmp_path, capsys):
    (tmp_path / "bad.tsv").write_text(content)
    line = data_prep_error_line(["text", "--input", str(tmp_path / "bad.tsv"), "--domain", "bad", "--out", str(tmp_path)],
                       capsys)
    assert message in line
    assert not (tmp_path / "bad.h5").exists()


def test_bad_options_exit_2_with_one_line(tmp_path, capsys, tiny_domain):
    good = str(write_text_file(tmp_path / "a.tsv"))
    base = ["text", "--input", good, "--out", str(tiny_domain.data_dir)]
    cases = [
        (["text", "--input", str(tmp_path / "missing.tsv"), "--domain", "x", "--out", str(tmp_path)], "not found"),
        ([*base, "--domain", "x", "--vocab-from", "nothing"], "nothing.h5 not found"),
        ([*base, "--domain", "x", "--vocab-from", "Tiny"], "needs a tokens domain"),
        ([*base, "--domain", "x", "--width", "0"], "width must be a positive"),
        ([*base, "--domain", "x", "--test", "1"], "test ratio"),
        ([*base, "--domain", "../x"], "plain name"),
        (["text", "--domain", "x"], "--input"),
    ]
    for argv, message in cases:
        assert message in data_prep_error_line(argv, capsys)
    (tmp_path / "latin1.tsv").write_bytes("caf\xe9|NN|0|0\te\tPositive\n".encode("latin-1"))
    assert "not UTF-8" in data_prep_error_line(["text", "--input", str(tmp_path / "latin1.tsv"), "--domain", "x"], capsys)


@pytest.mark.slow
def test_train_on_tokens_then_transfer_with_the_source_vocab(tmp_path):
    """A tokens source trains with an embedding; transfer restores it only for a target with the same vocab."""
    import keras

    from convlstm_tl.config import ModelConfig, TrainConfig, TransferConfig
    from convlstm_tl.training.source import train_source
    from convlstm_tl.training.transfer import transfer

    data, runs = tmp_path / "data", tmp_path / "runs"
    prepare_text(write_text_file(tmp_path / "a.tsv", n=90), "src", data, frames=2, width=6)
    target_file = write_text_file(tmp_path / "b.tsv", n=60, seed=1, extra_words=("battery",))
    prepare_text(target_file, "tgt", data, vocab_from="src")
    prepare_text(target_file, "own", data)

    source = train_source(TrainConfig(source="src", data_dir=str(data), runs_dir=str(runs), epochs=1, batch_size=16,
                                      model=ModelConfig(filters=(4,), head_units=8, embedding_dim=6)), verbose=0)
    embedding = source.model.get_layer("embedding")
    assert embedding.get_weights()[0].shape == (len(open_domain(data / "src.h5").vocab), 6)
    assert "normalize" not in [layer.name for layer in source.model.layers]
    recorded = json.loads((source.run_dir / "config.json").read_text())
    assert recorded["domain"]["kind"] == "tokens" and recorded["normalization"] is None
    reloaded = keras.saving.load_model(source.run_dir / "model.keras", compile=False)
    x, _ = read_split(data / "src.h5", "test")
    np.testing.assert_allclose(reloaded.predict(x, verbose=0), source.model.predict(x, verbose=0), atol=1e-5)

    result = transfer(TransferConfig(target="tgt", source_run="src", strategy="freeze", data_dir=str(data),
                                     runs_dir=str(runs), epochs=1, batch_size=16), verbose=0)
    # Frozen with the body: the embedding is the source's, unchanged by training.
    np.testing.assert_array_equal(result.model.get_layer("embedding").get_weights()[0], embedding.get_weights()[0])
    assert 0.0 <= result.metrics["accuracy"] <= 1.0 and result.metrics["n_test"] == 9

    with pytest.raises(UserError, match="--vocab-from src"):
        transfer(TransferConfig(target="own", source_run="src", strategy="freeze", data_dir=str(data),
                                runs_dir=str(runs), epochs=1), verbose=0)
    assert not (runs / "src-own-freeze").exists()

    # Evaluation refuses, before predicting, a domain whose ids mean other words.
    from convlstm_tl.evaluation.plan import plan_evaluation

    assert plan_evaluation([source.run_dir], ["src", "tgt"], data_dir=str(data)).pairs
    with pytest.raises(UserError, match="another vocabulary"):
        plan_evaluation([source.run_dir], ["own"], data_dir=str(data))


def _given_split_lines(n_sentences=30, *, with_val=True, entities=("phone", "battery")):
    """Sentences each labelled for two entities (same label), the split given by sentence:
    of every 5, one in test, one in val (or train, without val), the rest in train."""
    lines = []
    for i in range(n_sentences):
        label = LABELS[i % 3]
        sentence = _sentence([CUES[label][0], "phone", f"s{i}"], entity_at=1)
        split = {0: "test", 1: "val" if with_val else "train"}.get(i % 5, "train")
        lines += [f"{sentence}\t{entity}\t{label}\t{split}" for entity in entities]
    return lines


def test_a_sentence_in_two_given_splits_is_refused(tmp_path, capsys):
    lines = _given_split_lines()
    lines[1] = lines[1].rsplit("\t", 1)[0] + "\ttrain"  # sentence 0 is in test on line 1, in train on line 2
    (tmp_path / "leak.tsv").write_text("\n".join(lines) + "\n")
    argv = ["text", "--input", str(tmp_path / "leak.tsv"), "--domain", "leak", "--out", str(tmp_path)]
    line = data_prep_error_line(argv, capsys)
    assert "sentence 'bad phone s0' is in both the given train and test splits (line 2 and line 1)" in line
    assert "must be in one split only" in line
    assert not (tmp_path / "leak.h5").exists()


def test_npz_and_text_refuse_a_leak_in_given_splits_alike(tmp_path, capsys):
    lines = _given_split_lines()
    lines.append(lines[4].rsplit("\t", 1)[0] + "\ttest")  # sentence 2 (train) again, in test
    (tmp_path / "leak.tsv").write_text("\n".join(lines) + "\n")
    text_line = data_prep_error_line(["text", "--input", str(tmp_path / "leak.tsv"), "--domain", "t", "--out",
                                      str(tmp_path)], capsys)
    np.savez(tmp_path / "leak.npz", x=np.zeros((6, 2, 1, 1, 1)), y=np.arange(6) % 2,
             group=np.array([0, 1, 2, 3, 4, 1]), split=np.array(["train", "train", "val", "val", "test", "test"]))
    npz_line = data_prep_error_line(["npz", "--input", str(tmp_path / "leak.npz"), "--domain", "n", "--out",
                                     str(tmp_path)], capsys)
    pattern = r"error: (group|sentence) .+ is in both the given train and test splits.*; a \1 must be in one split only"
    assert re.search(pattern, text_line) and re.search(pattern, npz_line), (text_line, npz_line)
    assert not (tmp_path / "t.h5").exists() and not (tmp_path / "n.h5").exists()


def test_given_splits_keep_the_sentence_groups(tmp_path):
    (tmp_path / "given.tsv").write_text("\n".join(_given_split_lines()) + "\n")
    info = prepare_text(tmp_path / "given.tsv", "given", tmp_path)
    assert info.has_groups
    groups = {name: read_labels(info.path, name)[1] for name in SPLITS}
    assert len(np.unique(groups["train"])) == 18 and len(groups["train"]) == 36
    assert not set(groups["train"].tolist()) & set(groups["test"].tolist())


def test_val_from_train_carves_val_out_of_the_train_lines(tmp_path, capsys):
    (tmp_path / "tt.tsv").write_text("\n".join(_given_split_lines(n_sentences=60, with_val=False)) + "\n")
    argv = ["text", "--input", str(tmp_path / "tt.tsv"), "--domain", "tt", "--out", str(tmp_path), "--quiet"]
    assert "--val-from-train" in data_prep_error_line(argv, capsys)
    assert main([*argv, "--val-from-train", "0.25", "--seed", "2"]) == 0
    info = open_domain(tmp_path / "tt.h5")
    assert info.split_sizes == {"train": 72, "val": 24, "test": 24}
    labels = {name: read_labels(info.path, name) for name in SPLITS}
    assert not set(labels["train"][1].tolist()) & set(labels["val"][1].tolist())  # both entities of a sentence
    assert set(labels["val"][0].tolist()) == {0, 1, 2}
    provenance = json.loads(info.provenance)
    assert provenance["val_from_train"] == {"fraction": 0.25, "seed": 2}
    assert provenance["split"].startswith("the file's split column; val carved out of the given train split")
    first = read_split(info.path, "val")[0]
    assert main([*argv, "--domain", "again", "--val-from-train", "0.25", "--seed", "2"]) == 0
    np.testing.assert_array_equal(read_split(tmp_path / "again.h5", "val")[0], first)
    assert "drop --val-from-train" in data_prep_error_line(
        [*argv[:2], str(write_text_file(tmp_path / "v.tsv", split_column=True)), *argv[3:], "--val-from-train",
         "0.2"], capsys)
    assert "applies to a file with a split column" in data_prep_error_line(
        [*argv[:2], str(write_text_file(tmp_path / "n.tsv")), *argv[3:], "--val-from-train", "0.2"], capsys)


def test_skip_header_and_quoted_fields(tmp_path):
    lines = ["sentence,entity,label"]
    for i in range(30):
        label = LABELS[i % 3]
        words = [CUES[label][i % 2], "screen", f"u{i}"]
        lines.append(f'"{_sentence(words)}","screen, ""{i}""",{label}')
    (tmp_path / "quoted.csv").write_text("\r\n".join(lines) + "\r\n")
    info = prepare_text(tmp_path / "quoted.csv", "q", tmp_path, delimiter=",", skip_header=True)
    assert sum(info.split_sizes.values()) == 30
    assert "first line skipped" in json.loads(info.provenance)["format"]
    with pytest.raises(UserError, match="pass --skip-header"):
        prepare_text(tmp_path / "quoted.csv", "q2", tmp_path, delimiter=",")
    assert not (tmp_path / "q2.h5").exists()
    tab = tmp_path / "header.tsv"
    tab.write_text("sentence\tentity\tlabel\n" + write_text_file(tmp_path / "a.tsv", n=30).read_text())
    assert main(["text", "--input", str(tab), "--domain", "h", "--out", str(tmp_path), "--skip-header",
                 "--delimiter", "\\t", "--quiet"]) == 0
    assert sum(open_domain(tmp_path / "h.h5").split_sizes.values()) == 30
