"""Tests of ``convlstm_tl.bench.benchmark`` on tiny shapes: what it returns, not how fast (speed is the bench's job)."""

import numpy as np
import pytest

from convlstm_tl.bench import __main__ as bench_cli
from convlstm_tl.bench import benchmark as bench
from convlstm_tl.data.format import open_domain
from convlstm_tl.data.sequence import DomainSequence

TINY = {"tiny": ((3, 1, 6, 2), 3)}


@pytest.mark.slow
def test_benchmark_layers_reports_both_cells_and_their_ratios():
    results = bench.benchmark_layers(TINY, repeats=1, train_batches={"tiny": 1}, predict_batches={"tiny": 1},
                                     batch_size=4, filters=(2,))
    entry = results["tiny"]
    assert entry["frame_shape"] == [3, 1, 6, 2]
    for cell in bench.CELLS:
        figures = entry[cell]
        assert figures["train_seq_per_s"] > 0 and figures["predict_seq_per_s"] > 0
        assert figures["train_peak_rss_mib"] > 0 and len(figures["train_runs"]) == 1
    # the ratio is ours over stock, from the medians
    assert entry["train_ratio"] == pytest.approx(entry["fast"]["train_seq_per_s"] / entry["keras"]["train_seq_per_s"])
    assert entry["predict_ratio"] > 0
    # two models differing only in the layer: the same number of weights
    assert entry["fast"]["n_params"] == entry["keras"]["n_params"]


def test_synthetic_domain_follows_the_format(tmp_path):
    info = bench.write_synthetic_domain(tmp_path / "Big.h5", 70, (2, 1, 3, 4), chunk=32, n_eval=5)
    checked = open_domain(info.path)  # the full check, values included
    assert checked.split_sizes == {"train": 70, "val": 5, "test": 5}
    assert checked.frame_shape == (2, 1, 3, 4)
    x, y = DomainSequence(info.path, "train", batch_size=70)[0]
    assert x.shape == (70, 2, 1, 3, 4) and y.min() >= 0 and y.max() < checked.n_classes
    # chunks differ from each other, so no two batches are the same data
    assert not np.array_equal(x[0], x[32])


@pytest.mark.slow
def test_data_path_trains_one_epoch_and_deletes_its_file(tmp_path):
    result = bench.benchmark_data_path(tmp_path, file_gib=0.0005, frame_shape=(2, 2, 2, 8), batch_size=16,
                                       workers=(1, 2))
    assert list(tmp_path.iterdir()) == []
    assert [epoch["workers"] for epoch in result["epochs"]] == [1, 2]
    assert result["n_samples"] == int(0.0005 * 2**30 / (2 * 2 * 2 * 8 * 4))
    assert all(epoch["peak_rss_mib"] > 0 and epoch["samples_per_s"] > 0 for epoch in result["epochs"])


def test_report_and_json_carry_every_ratio(tmp_path):
    results = {"layers": {"watch": {"keras": {"train_seq_per_s": 800.0, "predict_seq_per_s": 2000.0,
                                              "train_peak_rss_mib": 900.0, "predict_peak_rss_mib": 910.0},
                                    "fast": {"train_seq_per_s": 1000.0, "predict_seq_per_s": 2500.0,
                                             "train_peak_rss_mib": 920.0, "predict_peak_rss_mib": 915.0},
                                    "train_ratio": 1.25, "predict_ratio": 1.25}},
               "data_path": None}
    text = bench_cli.format_report(results)
    assert "1.25x" in text and "800.0" in text and "920" in text


def test_bad_shapes_flag_is_a_user_error(capsys):
    from convlstm_tl.cli import run_main

    assert run_main(bench_cli.main, ["--shapes", "watch,cifar"], prog=bench_cli.PROG) == 2
    assert "--shapes takes names from watch, digits" in capsys.readouterr().err
