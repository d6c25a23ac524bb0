"""The selection rules, on the hand-computed cases of the Rust unit tests
(crates/select/src/selector.rs and strategy.rs), through the Python API."""

import math

import numpy as np
import pytest

import dissect_select as ds


def f32(values):
    return np.asarray(values, dtype=np.float32)


def idx(values):
    return np.asarray(values, dtype=np.int64)


def selector(strategy, rate, n, **kwargs):
    return ds.Selector(strategy, rate, n, seed=7, **kwargs)


def clip_select(sel, indices, clip, epoch, step):
    return sel.select(idx(indices), f32(clip), epoch=epoch, step=step).tolist()


def test_strategy_list_and_needs():
    assert ds.STRATEGIES == (
        "full",
        "random",
        "small-loss",
        "big-loss",
        "clipscore",
        "dissect-warmup",
        "dissect-momentum",
        "dissect-gated",
        "oracle-clipscore",
        "oracle-cliploss",
    )
    needs = {name: ds.Selector(name, 0.3, 4).needs for name in ds.STRATEGIES}
    assert needs["full"] == () and needs["random"] == ()
    assert needs["small-loss"] == needs["big-loss"] == ("losses",)
    assert needs["clipscore"] == needs["dissect-warmup"] == needs["dissect-momentum"] == ("clip_scores",)
    assert needs["dissect-gated"] == ("clip_scores",)
    assert needs["oracle-clipscore"] == needs["oracle-cliploss"] == ("reference_scores",)
    # Names are matched like the CLI's: case and underscores do not matter.
    assert ds.Selector("Dissect_Momentum", 0.3, 4).strategy == "dissect-momentum"


def test_constructor_defaults_and_repr():
    sel = ds.Selector("dissect-momentum", 0.3, 100)
    assert (sel.rate, sel.dataset_len, sel.warmup_epochs, sel.momentum, sel.seed, sel.warmup_rows) == (
        0.3,
        100,
        2,
        0.9,
        0,
        "random",
    )
    assert repr(sel) == (
        "Selector(strategy='dissect-momentum', rate=0.3, dataset_len=100, warmup_epochs=2, "
        "momentum=0.9, seed=0, warmup_rows='random')"
    )
    assert sel.last_records is None and sel.last_drew_at_random is None and sel.seen_count == 0


def test_keep_count_edges():
    def c(rate):
        return ds.Selector("random", rate, 1)

    assert c(1.0).keep_count(7) == 7
    assert c(0.3).keep_count(256) == 76
    assert c(0.3).keep_count(10) == 3
    assert c(0.29).keep_count(100) == 29, "29% of 100 rows is 29 despite binary rounding"
    assert c(1e-6).keep_count(100) == 1, "at least one row"
    assert c(0.5).keep_count(1) == 1
    assert ds.Selector("full", 0.3, 1).keep_count(256) == 256, "full ignores the rate"


@pytest.mark.parametrize(
    "keys, rate, expected",
    [
        ([1.0, 3.0, 3.0, 2.0, 3.0], 0.4, [1, 2]),
        ([1.0, 3.0, 3.0, 2.0, 3.0], 0.6, [1, 2, 4]),
        ([5.0] * 6, 4 / 6, [0, 1, 2, 3]),
        ([0.0, -1.0, 2.0], 1.0, [0, 1, 2]),
        ([0.0, -1.0, 2.0], 1 / 3, [2]),
    ],
)
def test_top_k_breaks_ties_by_lower_position(keys, rate, expected):
    # clipscore ranks the raw scores, so it exposes the core's top-k directly.
    sel = selector("clipscore", rate, len(keys))
    assert clip_select(sel, range(len(keys)), keys, 0, 0) == expected


def test_full_keeps_everything_and_random_keeps_k():
    indices = idx(range(10))
    full = selector("full", 0.3, 10)
    assert full.select(indices, epoch=0, step=0).tolist() == list(range(10))
    assert full.last_drew_at_random is False

    random = selector("random", 0.3, 10)
    kept = random.select(indices, epoch=0, step=0)
    assert kept.dtype == np.int64 and len(kept) == 3
    assert all(a < b for a, b in zip(kept[:-1], kept[1:])), "ascending positions"
    assert random.last_drew_at_random is True
    again = selector("random", 0.3, 10).select(indices, epoch=0, step=0)
    assert kept.tolist() == again.tolist(), "same seed, same rows"
    assert random.sample_state(int(indices[kept[0]]))["times_selected"] == 1


def test_seed_changes_random_draws():
    # Ten batches of 20 rows, 5 kept each: two seeds drawing the same 50 rows is
    # (1/C(20,5))^10, i.e. never.
    def draws(seed):
        sel = ds.Selector("random", 0.25, 20, seed=seed)
        return [sel.select(idx(range(20)), epoch=0, step=s).tolist() for s in range(10)]

    assert draws(1) == draws(1)
    assert draws(1) != draws(2)


def test_clipscore_keeps_highest_current_scores():
    sel = selector("clipscore", 0.5, 20)
    assert clip_select(sel, [10, 11, 12, 13], [20.0, -5.0, 31.0, 20.0], 0, 0) == [0, 2], "tie goes to position 0"
    assert sel.last_records["rank_key"][1] == -5.0, "clipscore ranks the raw score"


def test_small_and_big_loss_rank_per_sample_losses():
    # Per-sample losses of the 3x3 similarity matrix S = [[2,0,0],[0,1,0],[1,0,0]] (logit scale
    # applied): l_j = (CE(row j) + CE(column j)) / 2 with CE = logsumexp - diagonal.
    s = np.array([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    row = np.log(np.exp(s).sum(axis=1)) - np.diag(s)
    col = np.log(np.exp(s).sum(axis=0)) - np.diag(s)
    losses = f32(0.5 * (row + col))
    # By hand: l0 = (ln(e^2+2) - 2 + ln(e^2+1+e) - 2)/2 ~ 0.324, l1 = ln(e+2) - 1 ~ 0.551,
    # l2 = (ln(e+2) + ln 3)/2 ~ 1.325.
    e = math.e
    by_hand = [
        0.5 * (math.log(e * e + 2) - 2 + math.log(e * e + 1 + e) - 2),
        math.log(e + 2) - 1,
        0.5 * (math.log(e + 2) + math.log(3)),
    ]
    assert losses.tolist() == pytest.approx(by_hand, abs=1e-6)
    assert by_hand == pytest.approx([0.3236, 0.5514, 1.3250], abs=1e-4)
    small = selector("small-loss", 0.34, 3).select(idx([0, 1, 2]), losses=losses, epoch=0, step=0)
    assert small.tolist() == [0]
    big = selector("big-loss", 0.67, 3).select(idx([0, 1, 2]), None, losses, epoch=0, step=0)
    assert big.tolist() == [1, 2]


def test_warmup_stores_last_warmup_score_then_ranks_centred_gap():
    sel = selector("dissect-warmup", 0.5, 4, warmup_epochs=2)
    # Epochs 0 and 1 are warm-up: random rows, every visit overwrites `warm`.
    kept = clip_select(sel, [0, 1, 2, 3], [1.0, 1.0, 1.0, 1.0], 0, 0)
    assert sel.last_drew_at_random and len(kept) == 2
    clip_select(sel, [0, 1, 2, 3], [50.0, 40.0, 30.0, -20.0], 1, 1)
    assert sel.last_drew_at_random
    assert sel.last_records["hist"][0] == 1.0, "the previous warm-up score is reported as history"
    warm = [sel.sample_state(i)["warm"] for i in range(4)]
    assert warm == [50.0, 40.0, 30.0, 0.0], "last warm-up visit, clamped at 0"

    # Epoch 2: gap = (warm - mean warm) - (curr - mean curr).
    # warm = [50,40,30,0], mean 30 -> [20,10,0,-30]
    # curr = [60,20,30,10], mean 30 -> [30,-10,0,-20]
    # gap  = [-10, 20, 0, -10] -> keep positions 1 and 2.
    assert clip_select(sel, [0, 1, 2, 3], [60.0, 20.0, 30.0, 10.0], 2, 2) == [1, 2]
    assert not sel.last_drew_at_random
    assert sel.last_records["rank_key"].tolist() == [-10.0, 20.0, 0.0, -10.0]
    assert sel.sample_state(0)["warm"] == 50.0, "after warm-up the stored score is frozen"


def test_warmup_rows_all_trains_every_row_until_w():
    # Any selecting strategy trains on all rows before W, then selects k.
    sel = selector("random", 0.5, 4, warmup_epochs=1, warmup_rows="all")
    assert clip_select(sel, [0, 1, 2, 3], [1.0] * 4, 0, 0) == [0, 1, 2, 3]
    assert sel.last_drew_at_random is False
    assert len(clip_select(sel, [0, 1, 2, 3], [1.0] * 4, 1, 1)) == 2
    assert sel.last_drew_at_random is True
    for strategy in ["dissect-warmup", "dissect-momentum"]:
        sel = selector(strategy, 0.5, 4, warmup_epochs=1, warmup_rows="all", momentum=0.5)
        # Epoch 0 < W: every row, no ranking, and the scores still recorded.
        assert clip_select(sel, [0, 1, 2, 3], [10.0, 20.0, 30.0, 40.0], 0, 0) == [0, 1, 2, 3], strategy
        records = sel.last_records
        assert not sel.last_drew_at_random and records["selected"].all() and np.isnan(records["rank_key"]).all()
        # A second warm-up visit: momentum's history keeps updating (10 -> 10/2 + 30/2 = 20).
        assert len(clip_select(sel, [0, 1, 2, 3], [30.0, 20.0, 30.0, 40.0], 0, 1)) == 4
        if strategy == "dissect-momentum":
            assert sel.sample_state(0)["hist"] == 20.0
        # Epoch 1 = W, k rows by the gap:
        # warm-up: warm = [30,20,30,40] centred [0,-10,0,10]; curr centred [-15,-5,5,15];
        #   gap = (15, -5, -5, -5) -> position 0, then the tie goes to position 1.
        # momentum: hist = [20,20,30,40], gap = hist - curr = (10, 0, 0, 0) -> positions 0, 1.
        assert clip_select(sel, [0, 1, 2, 3], [10.0, 20.0, 30.0, 40.0], 1, 2) == [0, 1], strategy
        assert not sel.last_drew_at_random


def test_warmup_centring_ignores_a_global_shift():
    sel = selector("dissect-warmup", 0.5, 4, warmup_epochs=1)
    clip_select(sel, [0, 1, 2, 3], [10.0, 20.0, 30.0, 40.0], 0, 0)
    # Every score rose by 25 except sample 2, which rose by only 5: a relative drop.
    kept = clip_select(sel, [0, 1, 2, 3], [35.0, 45.0, 35.0, 65.0], 1, 1)
    # Shifts relative to the mean shift (20): [+5,+5,-15,+5] -> gap = [-5,-5,15,-5].
    assert sel.last_records["rank_key"].tolist() == [-5.0, -5.0, 15.0, -5.0]
    assert kept == [0, 2], "sample 2 first, then the tie goes to position 0"


def test_momentum_first_sight_random_then_gap_and_ema_order():
    sel = selector("dissect-momentum", 0.5, 6, momentum=0.5)
    # No sample has history: random rows, history initialised to the current score.
    clip_select(sel, [0, 1, 2, 3], [10.0, 20.0, -4.0, 40.0], 0, 0)
    assert sel.last_drew_at_random
    assert np.isnan(sel.last_records["hist"]).all()
    assert [sel.sample_state(i)["hist"] for i in range(4)] == [10.0, 20.0, 0.0, 40.0], "hist = max(0, curr)"

    # 0..3 have history; 4 is new (gap 0). gap = hist - curr with the OLD history:
    # 0: 10-30 = -20, 1: 20-10 = 10, 4: new -> 0, 3: 40-20 = 20.
    kept = clip_select(sel, [0, 1, 4, 3], [30.0, 10.0, 7.0, 20.0], 1, 1)
    assert not sel.last_drew_at_random
    assert sel.last_records["rank_key"].tolist() == [-20.0, 10.0, 0.0, 20.0]
    assert kept == [1, 3]
    assert sel.last_records["hist"][0] == 10.0
    # Then the EMA update with beta = 0.5: hist <- hist/2 + curr/2.
    assert [sel.sample_state(i)["hist"] for i in [0, 1, 4, 3]] == [20.0, 15.0, 7.0, 30.0]
    slot = sel.sample_state(1)
    assert (slot["last_epoch"], slot["last"]) == (1, 10.0)
    assert slot["times_selected"] >= 1, "selected in step 1, perhaps also in the random step 0"


def test_bookkeeping_counts_visits():
    sel = selector("clipscore", 0.5, 3)
    clip_select(sel, [0, 1], [5.0, 1.0], 0, 0)
    clip_select(sel, [0, 2], [5.0, 9.0], 3, 1)
    s0, s1, s2 = (sel.sample_state(i) for i in range(3))
    assert (s0["times_selected"], s0["last_epoch"], s0["seen"]) == (1, 3, True)
    assert (s1["times_selected"], s1["last_epoch"], s1["last"]) == (0, 0, 1.0)
    assert s2["times_selected"] == 1
    assert sel.seen_count == 3
    assert sel.sample_state(2)["warm"] is None and sel.sample_state(2)["hist"] is None


def test_oracle_uses_reference_scores():
    sel = selector("oracle-cliploss", 0.67, 3)
    kept = sel.select(idx([0, 1, 2]), epoch=0, step=0, reference_scores=f32([0.1, 0.9, 0.5]))
    assert kept.tolist() == [1, 2]


def test_k_edges():
    clip = list(range(10))
    assert len(clip_select(selector("clipscore", 1.0, 10), range(10), clip, 0, 0)) == 10
    assert clip_select(selector("clipscore", 1e-9, 10), range(10), clip, 0, 0) == [9]


def test_records_of_the_last_selection():
    sel = selector("dissect-momentum", 0.5, 8, momentum=0.5)
    clip_select(sel, [5, 6], [3.0, -1.0], 4, 17)
    records = sel.last_records
    assert sorted(records) == ["curr", "epoch", "hist", "index", "rank_key", "selected", "step"]
    assert records["epoch"].dtype == np.uint32 and records["epoch"].tolist() == [4, 4]
    assert records["step"].dtype == np.uint64 and records["step"].tolist() == [17, 17]
    assert records["index"].tolist() == [5, 6]
    assert records["curr"].dtype == np.float32 and records["curr"].tolist() == [3.0, 0.0], "clamped at 0"
    assert records["selected"].dtype == np.bool_ and records["selected"].sum() == 1
