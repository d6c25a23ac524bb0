"""bench/gap_study.py's statistics on a hand-made two-epoch run, against hand-computed values.

docs/when-dissect-works.md quotes these statistics; the records below are small enough to
compute each by hand (the comments show how).
"""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

spec = importlib.util.spec_from_file_location(
    "gap_study", Path(__file__).resolve().parents[3] / "bench" / "gap_study.py"
)
gap_study = importlib.util.module_from_spec(spec)
spec.loader.exec_module(gap_study)

NOISY = np.array([False, False, True, True])  # rows 0, 1 clean; rows 2, 3 noisy


def two_epoch_run() -> dict:
    """A `dissect-warmup` run with W = 1, batches of two, one row kept per batch.

    Epoch 0 (warm-up, random rows): step 0 scores rows 0, 2 at 10, 2 (batch mean 6); step 1
    scores rows 1, 3 at 30, 28 (mean 29): the model improved between the two steps.
    Epoch 1 ranks by gap = (warm - batch mean of warm) - (curr - batch mean of curr):
      step 2, rows 0, 3: warm 10, 28 (mean 19), curr 40, 25 (mean 32.5) -> -16.5, 16.5;
      step 3, rows 1, 2: warm 30, 2 (mean 16), curr 45, 20 (mean 32.5) -> 1.5, -1.5.
    """
    nan = np.nan
    return {
        "epoch": np.array([0, 0, 0, 0, 1, 1, 1, 1], dtype=np.uint32),
        "step": np.array([0, 0, 1, 1, 2, 2, 3, 3], dtype=np.uint64),
        "index": np.array([0, 2, 1, 3, 0, 3, 1, 2], dtype=np.uint64),
        "curr": np.array([10, 2, 30, 28, 40, 25, 45, 20], dtype=np.float32),
        "hist": np.array([nan, nan, nan, nan, 10, 28, 30, 2], dtype=np.float32),
        "rank_key": np.array([nan, nan, nan, nan, -16.5, 16.5, 1.5, -1.5], dtype=np.float32),
        "selected": np.array([True, False, False, True, False, True, True, False]),
    }


def test_average_ranks_share_ties():
    assert gap_study.average_ranks(np.array([0.0, 5.0, 0.0, 2.0])).tolist() == [1.5, 4.0, 1.5, 3.0]


def test_step_means_are_batch_means():
    means = gap_study.step_means(np.array([10.0, 2.0, 30.0, 28.0]), np.array([0, 0, 1, 1]))
    assert means.tolist() == [6.0, 6.0, 29.0, 29.0]


def test_first_ranked_epoch_skips_the_warm_up():
    run = two_epoch_run()
    assert gap_study.first_ranked_epoch(run["epoch"], run["rank_key"]) == 1
    with pytest.raises(SystemExit, match="no epoch ranked"):
        gap_study.first_ranked_epoch(run["epoch"][:4], run["rank_key"][:4])


def test_first_drop_by_hand():
    out = gap_study.first_drop(two_epoch_run(), NOISY)
    assert out["first ranked epoch"] == 1
    # Epoch 0's steps: the first scored a mean of 6, the last 29.
    assert out["mean score, first tenth of E-1"] == pytest.approx(6.0)
    assert out["mean score, last tenth of E-1"] == pytest.approx(29.0)
    # Keys (-16.5, 16.5, 1.5, -1.5) rank 1, 4, 3, 2; their history steps (0, 1, 1, 0) rank
    # 1.5, 3.5, 3.5, 1.5. Centred: (-1.5, 1.5, .5, -.5) and (-1, 1, 1, -1): 4 / (sqrt(5) * 2).
    assert out["rho(key, step history scored)"] == pytest.approx(4 / (2 * np.sqrt(5)))
    # Clean keys -16.5, 1.5 against noisy 16.5, -1.5: only 1.5 > -1.5 of four pairs.
    assert out["AUC key"] == pytest.approx(0.25)
    # Timing removed, each warm score against its own batch (6 or 29):
    #   row 0: (10 - 6) - (40 - 32.5) = -3.5    row 3: (28 - 29) - (25 - 32.5) = 6.5
    #   row 1: (30 - 29) - (45 - 32.5) = -11.5  row 2: (2 - 6) - (20 - 32.5) = 8.5
    # so every noisy row ranks above every clean one.
    assert out["AUC key, timing removed"] == pytest.approx(0.0)
    assert out["AUC current score"] == pytest.approx(1.0)  # clean 40, 45 vs noisy 25, 20
    assert out["AUC history"] == pytest.approx(0.75)  # clean 10, 30 vs noisy 28, 2: 3 of 4
    # Trained at epoch 0: rows 0 and 3; kept at epoch 1: rows 3 and 1.
    assert out["kept if trained at E-1"] == pytest.approx(0.5)
    assert out["kept if not trained at E-1"] == pytest.approx(0.5)


def test_study_counts_kept_again_by_hand():
    out = gap_study.study(two_epoch_run(), NOISY, first_epoch=1)
    # Clean rows: row 0 kept at epoch 0, left out at 1; row 1 left out at 0, kept at 1.
    assert out["clean: kept again"] == 0.0
    assert out["clean: kept after left out"] == 1.0
    # Noisy rows: row 3 kept at both; row 2 left out at both.
    assert out["noisy: kept again"] == 1.0
    assert out["noisy: kept after left out"] == 0.0
    assert out["epoch 1 AUC key"] == pytest.approx(0.25)
