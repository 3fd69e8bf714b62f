"""Tests of the transfer advisor: the four-case rule, the distances, and the command line."""

import json

import h5py
import numpy as np
import pytest

from conftest import write_tiny
from convlstm_tl.cli import run_main
from convlstm_tl.cli.advise import PROG, main
from convlstm_tl.config import ModelConfig, TrainConfig
from convlstm_tl.data.format import open_domain
from convlstm_tl.strategies.advisor import (
    LARGE_MIN_PER_CLASS, SIMILAR_MAX_PAD, advise_transfer, labelled_count, mmd2_rbf, proxy_a_distance, recommend,
)
from convlstm_tl.training.source import train_source

N_CLASSES = 7
SMALL = (LARGE_MIN_PER_CLASS // 2) * N_CLASSES
LARGE = LARGE_MIN_PER_CLASS * 2 * N_CLASSES
NEAR, FAR = SIMILAR_MAX_PAD / 4, (SIMILAR_MAX_PAD + 2.0) / 2


@pytest.mark.parametrize("pad, n_labelled, strategy, alternatives, case", [
    (NEAR, SMALL, "freeze", (), "small/similar"),
    (FAR, SMALL, "cut:1", ("freeze",), "small/different"),
    (NEAR, LARGE, "finetune", ("gradual",), "large/similar"),
    (FAR, LARGE, "finetune", ("scratch",), "large/different"),
])
def test_four_cases(pad, n_labelled, strategy, alternatives, case):
    advice = recommend(pad, n_labelled, N_CLASSES)
    assert (advice.strategy, advice.alternatives, advice.case) == (strategy, alternatives, case)
    assert f"PAD {pad:.2f}" in advice.reason and str(n_labelled) in advice.reason


def test_thresholds_are_inclusive_and_per_class():
    assert recommend(SIMILAR_MAX_PAD, SMALL, N_CLASSES).similar
    assert not recommend(SIMILAR_MAX_PAD + 1e-6, SMALL, N_CLASSES).similar
    assert recommend(NEAR, LARGE_MIN_PER_CLASS * N_CLASSES, N_CLASSES).large
    assert not recommend(NEAR, LARGE_MIN_PER_CLASS * N_CLASSES - 1, N_CLASSES).large
    # The same count is large for 2 classes and small for 20.
    assert recommend(NEAR, 4 * LARGE_MIN_PER_CLASS, 2).large and not recommend(NEAR, 4 * LARGE_MIN_PER_CLASS, 20).large


def test_one_block_body_has_nothing_to_cut():
    assert recommend(FAR, SMALL, N_CLASSES, n_blocks=1).strategy == "freeze"


def test_distances_are_near_zero_for_identical_features_and_large_for_shifted():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(300, 16))
    same_pad, same_error = proxy_a_distance(features, features.copy())
    same_mmd, _ = mmd2_rbf(features, features.copy())
    assert same_pad < 0.2 and same_error > 0.45 and abs(same_mmd) < 0.01
    # Another sample of the same distribution is near too.
    assert proxy_a_distance(features, rng.normal(size=(300, 16)))[0] < 0.4
    shifted = rng.normal(size=(300, 16)) + 3.0
    far_pad, far_error = proxy_a_distance(features, shifted)
    far_mmd, _ = mmd2_rbf(features, shifted)
    assert far_pad > 1.9 and far_error < 0.03 and far_mmd > 0.5
    # A small shift lies in between.
    assert same_pad < proxy_a_distance(features, rng.normal(size=(300, 16)) + 0.5)[0] < far_pad


@pytest.mark.slow
def test_advise_on_tiny_domains(tmp_path, capsys):
    data = tmp_path / "data"
    write_tiny(data)
    write_tiny(data, name="Shifted", seed=1)
    # The target's channel 1 is moved far away: a different domain for the body.
    with h5py.File(data / "Shifted.h5", "r+") as f:
        for split in ("train", "val", "test"):
            f[split]["x"][..., 1] = f[split]["x"][..., 1] * 4.0 + 25.0
    runs = tmp_path / "runs"
    train_source(TrainConfig(source="Tiny", runs_dir=str(runs), data_dir=str(data), epochs=1,
                             model=ModelConfig(filters=(4, 4), head_units=8)), verbose=0)

    near = advise_transfer("Tiny", "Tiny", data_dir=str(data), runs_dir=str(runs), target_fraction=0.25)
    assert near.n_labelled == labelled_count(open_domain(data / "Tiny.h5"), target_fraction=0.25) < 48
    assert near.distance.pad < 0.5 and near.distance.n_features == 8 and near.strategy in ("freeze", "cut:1")

    # Source normalization: the shifted channel reaches the body unscaled and the classifier tells them apart.
    far = advise_transfer("Tiny", "Shifted", data_dir=str(data), runs_dir=str(runs), normalization="source")
    assert far.distance.pad > near.distance.pad and far.distance.mmd2 > near.distance.mmd2

    assert main(["--source", "Tiny", "--target", "Tiny", "--data-dir", str(data), "--runs-dir", str(runs),
                 "--json", "--quiet"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["n_labelled"] == 48 and set(printed["distance"]) >= {"pad", "mmd2", "domain_error"}
    assert printed["thresholds"] == {"similar_max_pad": SIMILAR_MAX_PAD, "large_min_per_class": LARGE_MIN_PER_CLASS}

    assert run_main(main, ["--source", "Nope", "--target", "Tiny", "--data-dir", str(data), "--runs-dir",
                           str(runs)], prog=PROG) == 2
    assert "run" in capsys.readouterr().err
