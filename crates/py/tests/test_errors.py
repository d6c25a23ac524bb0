"""Bad input is a Python exception naming the argument, and leaves the selector untouched."""

import numpy as np
import pytest

import dissect_select as ds


def momentum(n=4):
    return ds.Selector("dissect-momentum", 0.5, n, seed=1)


def test_length_mismatch_names_the_array():
    sel = momentum()
    message = r"^clip_scores: length mismatch: the batch has 2 indices but CLIP scores has 1 values"
    with pytest.raises(ValueError, match=message):
        sel.select(np.array([0, 1]), np.array([1.0], dtype=np.float32), epoch=0, step=0)
    big = ds.Selector("big-loss", 0.5, 4)
    with pytest.raises(ValueError, match=r"^losses: length mismatch"):
        big.select(np.array([0, 1]), losses=np.ones(3, dtype=np.float32), epoch=0, step=0)
    oracle = ds.Selector("oracle-clipscore", 0.5, 4)
    with pytest.raises(ValueError, match=r"^reference_scores: length mismatch"):
        oracle.select(np.array([0, 1]), reference_scores=np.ones(3), epoch=0, step=0)


def test_index_out_of_range_and_negative():
    sel = momentum()
    with pytest.raises(ValueError, match=r"^indices: dataset index 9 at batch position 1 is out of range: .*holds 4"):
        sel.select(np.array([0, 9]), np.array([1.0, 2.0]), epoch=0, step=0)
    with pytest.raises(ValueError, match=r"^indices: dataset index -1 at batch position 1 is negative"):
        sel.select(np.array([0, -1]), np.array([1.0, 2.0]), epoch=0, step=0)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_scores(bad):
    sel = momentum()
    with pytest.raises(ValueError, match=r"^clip_scores: CLIP scores at batch position 1 is not finite"):
        sel.select(np.array([0, 1]), np.array([1.0, bad], dtype=np.float32), epoch=0, step=0)
    with pytest.raises(ValueError, match=r"^losses: per-sample losses at batch position 0 is not finite"):
        ds.Selector("small-loss", 0.5, 4).select(np.array([0, 1]), losses=np.array([bad, 1.0]), epoch=0, step=0)


def test_missing_input_and_empty_batch():
    sel = momentum()
    with pytest.raises(ValueError, match=r"^clip_scores: strategy 'dissect-momentum' needs CLIP scores"):
        sel.select(np.array([0]), epoch=0, step=0)
    with pytest.raises(ValueError, match=r"^indices: the batch is empty"):
        sel.select([], [], epoch=0, step=0)


def test_wrong_dtypes_are_type_errors():
    sel = momentum()
    with pytest.raises(TypeError, match=r"^indices must be an integer array of dataset indices, got dtype float32"):
        sel.select(np.array([0.0, 1.0], dtype=np.float32), np.array([1.0, 2.0]), epoch=0, step=0)
    with pytest.raises(TypeError, match=r"^indices .* got dtype bool"):
        sel.select(np.array([True, False]), np.array([1.0, 2.0]), epoch=0, step=0)
    with pytest.raises(TypeError, match=r"^clip_scores must be a floating-point array .* got dtype int64"):
        sel.select(np.array([0, 1]), np.array([1, 2], dtype=np.int64), epoch=0, step=0)
    with pytest.raises(TypeError, match=r"^losses must be a floating-point array .* got dtype <U1"):
        ds.Selector("big-loss", 0.5, 4).select(np.array([0, 1]), losses=np.array(["a", "b"]), epoch=0, step=0)


def test_wrong_shape():
    with pytest.raises(ValueError, match=r"^clip_scores must be a 1-D array, got shape \(2, 2\)"):
        momentum().select(np.array([0, 1]), np.ones((2, 2)), epoch=0, step=0)


def test_rejected_batch_leaves_no_trace():
    sel = momentum()
    draws = sel.get_rng_state()
    bad_calls = [
        lambda: sel.select(np.array([0, 9]), np.array([1.0, 2.0]), epoch=0, step=0),
        lambda: sel.select(np.array([0, 1]), np.array([1.0, np.nan]), epoch=0, step=0),
        lambda: sel.select(np.array([0, 1]), np.array([1.0]), epoch=0, step=0),
    ]
    for call in bad_calls:
        with pytest.raises(ValueError):
            call()
    assert sel.seen_count == 0
    assert sel.last_records is None
    assert sel.get_rng_state() == draws, "no random draw was spent"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"rate": 0.0}, r"^rate: selection rate must be in \(0, 1\], got 0"),
        ({"rate": 1.5}, r"^rate: selection rate"),
        ({"rate": float("nan")}, r"^rate: selection rate"),
        ({"momentum": 1.0}, r"^momentum: momentum beta must be in \[0, 1\), got 1"),
        ({"strategy": "dissect"}, r"^strategy: unknown strategy 'dissect' \(expected one of: full, random"),
        ({"warmup_rows": "some"}, r"^warmup_rows: unknown warm-up rows 'some' \(expected random or all\)"),
    ],
)
def test_invalid_configuration(kwargs, message):
    args = {"strategy": "dissect-momentum", "rate": 0.3, "dataset_len": 10, **kwargs}
    with pytest.raises(ValueError, match=message):
        ds.Selector(**args)


def test_out_of_range_lookups_and_rng_state_size():
    sel = momentum()
    with pytest.raises(IndexError, match=r"^index: dataset index 4 is out of range"):
        sel.sample_state(4)
    with pytest.raises(ValueError, match=r"^state: expected 56 bytes from get_rng_state\(\), got 3"):
        sel.set_rng_state(b"abc")
