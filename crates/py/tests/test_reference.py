"""The Python selections equal the Rust core's on the same inputs.

The reference is the `select_file` example of this crate (examples/select_file.rs), which runs
`dissect_select::Selector` with the RNG the Python `Selector` owns. `crates/py/test.sh` builds
it and sets DISSECT_SELECT_REFERENCE; without that variable the test builds it with cargo, and
skips when cargo is not installed.
"""

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

import dissect_select as ds

CRATE = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def reference():
    binary = os.environ.get("DISSECT_SELECT_REFERENCE")
    if binary:
        return [binary]
    if shutil.which("cargo") is None:
        pytest.skip("cargo is not installed: cannot build the Rust reference (crates/py/examples/select_file.rs)")
    manifest = str(CRATE / "Cargo.toml")
    cargo = ["cargo", "--quiet", "--release", "--example", "select_file", "--manifest-path", manifest]
    subprocess.run([cargo[0], "build", *cargo[1:]], check=True)
    return [cargo[0], "run", *cargo[1:], "--"]


def trajectories(strategy, dataset_len, epochs, batch_size, seed):
    """Batches over a shuffled dataset with drifting scores: clean pairs rise then drift down,
    noisy ones creep up, plus jitter, negative values and exact ties."""
    rng = np.random.default_rng(seed)
    noisy = rng.random(dataset_len) < 0.4
    level = np.where(noisy, rng.uniform(-5, 8, dataset_len), rng.uniform(15, 40, dataset_len))
    needs = ds.Selector(strategy, 0.5, 1).needs
    batches = []
    step = 0
    for epoch in range(epochs):
        order = rng.permutation(dataset_len)
        for start in range(0, dataset_len, batch_size):
            indices = order[start : start + batch_size]  # the last batch is shorter
            t = epoch + start / dataset_len
            drift = np.where(noisy[indices], 2.0 * t, -1.5 * t)
            clip = (level[indices] + drift + rng.uniform(-2, 2, len(indices))).astype(np.float32)
            clip[::7] = np.round(clip[::7])  # ties
            batch = {"indices": indices.tolist(), "epoch": epoch, "step": step}
            if "clip_scores" in needs:
                batch["clip_scores"] = [float(v) for v in clip]
            if "losses" in needs:
                batch["losses"] = [float(v) for v in rng.uniform(0, 5, len(indices)).astype(np.float32)]
            if "reference_scores" in needs:
                batch["reference_scores"] = [float(v) for v in level[indices].astype(np.float32)]
            batches.append(batch)
            step += 1
    return batches


CASES = [
    ("full", {}),
    ("random", {}),
    ("small-loss", {}),
    ("big-loss", {}),
    ("clipscore", {}),
    ("dissect-warmup", {"warmup_epochs": 2}),
    ("dissect-momentum", {"momentum": 0.7}),
    ("dissect-momentum", {"warmup_epochs": 1, "warmup_rows": "all"}),
    ("oracle-clipscore", {}),
    ("oracle-cliploss", {}),
]


@pytest.mark.parametrize("strategy, options", CASES, ids=[f"{s}-{i}" for i, (s, _) in enumerate(CASES)])
def test_python_equals_rust(tmp_path, reference, strategy, options):
    dataset_len, seed = 300, 11
    config = {
        "strategy": strategy,
        "rate": 0.3,
        "dataset_len": dataset_len,
        "warmup_epochs": options.get("warmup_epochs", 2),
        "momentum": options.get("momentum", 0.9),
        "warmup_rows": options.get("warmup_rows", "random"),
        "seed": seed,
    }
    batches = trajectories(strategy, dataset_len, epochs=5, batch_size=64, seed=seed)
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({**config, "state_out": str(tmp_path / "rust.dss"), "batches": batches}))
    result = subprocess.run([*reference, str(spec)], check=True, capture_output=True, text=True)
    rust = json.loads(result.stdout)

    sel = ds.Selector(**config)
    positions, drew, keys = [], [], []
    for b in batches:
        names = ("clip_scores", "losses", "reference_scores")
        scores = {k: np.asarray(b[k], dtype=np.float32) for k in names if k in b}
        kept = sel.select(np.asarray(b["indices"]), epoch=b["epoch"], step=b["step"], **scores)
        positions.append(kept.tolist())
        drew.append(sel.last_drew_at_random)
        keys.append([None if np.isnan(k) else k for k in sel.last_records["rank_key"].tolist()])
    sel.save(tmp_path / "python.dss")

    assert len(positions) == 25
    assert positions == rust["positions"]
    assert drew == rust["drew_at_random"]
    rust_keys = [[None if k is None else float(np.float32(k)) for k in row] for row in rust["rank_keys"]]
    assert keys == rust_keys
    assert (tmp_path / "python.dss").read_bytes() == (tmp_path / "rust.dss").read_bytes()
    # The strategies that select at all kept fewer rows than the batch at some step.
    if strategy != "full" and options.get("warmup_rows") != "all":
        assert any(len(p) < len(b["indices"]) for p, b in zip(positions, batches))
