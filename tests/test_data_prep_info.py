"""Tests of ``summarize_domain`` and of ``python -m data_prep info`` / ``check``."""

import json

import h5py
import numpy as np

from conftest import CLASS_NAMES, SPLIT_SIZES, make_splits, write_tiny
from convlstm_tl.data.stats import summarize_domain
from convlstm_tl.data.writer import write_domain
from data_prep.__main__ import main
from data_prep.info import format_summary


def test_summary_counts_per_split_class_and_group(tiny_domain):
    summary = summarize_domain(tiny_domain.path)
    assert summary["domain"] == "Tiny" and summary["kind"] == "frames" and summary["vocab_size"] == 0
    assert summary["class_names"] == list(CLASS_NAMES) and summary["frame_shape"] == [4, 1, 8, 2]
    assert summary["x_dtype"] == "float32" and summary["provenance"] == "synthetic test data"
    for name, n in SPLIT_SIZES.items():
        split = summary["splits"][name]
        y = tiny_domain.splits[name].y
        assert split["n"] == n
        assert split["per_class"] == {c: int((y == i).sum()) for i, c in enumerate(CLASS_NAMES)}
        assert split["n_groups"] == len(np.unique(tiny_domain.splits[name].group))
    json.dumps(summary)  # plain data


def test_summary_without_groups(tmp_path):
    info = write_tiny(tmp_path)
    with h5py.File(info.path, "a") as f:
        for name in SPLIT_SIZES:
            del f[name]["group"]
    assert all(s["n_groups"] is None for s in summarize_domain(info.path)["splits"].values())


def test_info_prints_the_table_and_provenance(tiny_domain, capsys):
    assert main(["info", str(tiny_domain.path)]) == 0
    out = capsys.readouterr().out
    assert out == format_summary(summarize_domain(tiny_domain.path)) + "\n"
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.startswith("  ") and
            len(line.split()) == 4}
    assert rows["total"] == [str(n) for n in SPLIT_SIZES.values()]
    assert rows["walk"] == [str(len([i for i in range(n) if i % 3 == 0])) for n in SPLIT_SIZES.values()]
    assert rows["groups"] == ["6", "2", "2"]
    assert "provenance:" in out and "synthetic test data" in out


def test_info_json_and_json_provenance(tmp_path, capsys):
    path = tmp_path / "p.h5"
    write_domain(path, make_splits(), domain="p", class_names=CLASS_NAMES,
                 provenance=json.dumps({"source": "here", "window": 10}))
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "  source: here" in out and "  window: 10" in out
    assert main(["info", "--json", str(path)]) == 0
    assert json.loads(capsys.readouterr().out)["splits"]["val"]["n"] == SPLIT_SIZES["val"]


def test_check_passes_a_good_file_and_fails_a_bad_one(tiny_domain, tmp_path, capsys):
    assert main(["check", str(tiny_domain.path)]) == 0
    assert capsys.readouterr().out.startswith("ok ")
    with h5py.File(tiny_domain.path, "a") as f:
        f["val"]["x"][3, 0, 0, 0, 0] = np.nan
    assert main(["check", str(tiny_domain.path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "NaN" in err[0] and "sample 3" in err[0]


def test_missing_or_foreign_files_exit_2(tmp_path, capsys):
    (tmp_path / "junk.h5").write_text("no hdf5")
    for argv, message in ((["info", str(tmp_path / "none.h5")], "not found"),
                          (["info", str(tmp_path / "junk.h5")], "not a readable HDF5 file"),
                          (["check", str(tmp_path / "none.h5")], "not found"),
                          (["info"], "required")):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0]
