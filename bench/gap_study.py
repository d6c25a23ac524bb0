#!/usr/bin/env python3
"""Why the DISSect gap filters badly, measured on finished runs' visit records.

For each run folder (a `dissect train` or `compare` run with `visits.dsv` or `visits.csv`, on a
dataset with ground-truth noise flags) it prints, over the visits from epoch `--from` on:

- how often a row kept at its previous visit is kept again, and how often a row left out last
  time is kept now, for clean and noisy rows apart: whether the kept set renews itself or freezes;
- the mean ranking key (for DISSect, the gap: history minus current score) of rows kept and
  rows left out at their previous visit;
- the clean-pair ROC-AUC, per epoch, of the current CLIPScore and of the strategy's ranking key
  over that epoch's visits (0.5 = chance, below 0.5 = prefers noisy pairs).

    pip install ./crates/py numpy
    python bench/gap_study.py --from 1 runs/demo/warm-start/seed-*/dissect-warmup ...

Reads records with `dissect_select.read_records`; noise flags from the run's dataset shards.
"""

import argparse
import json
import tarfile
import tomllib
from pathlib import Path

import numpy as np
from dissect_select import read_records


def noise_flags(data_dir: Path) -> np.ndarray:
    """`noisy` per dataset index, from the shards named in `train.index.json`."""
    index = json.loads((data_dir / "train.index.json").read_text())
    length = max(s["first_index"] + s["samples"] for s in index["shards"])
    flags = np.zeros(length, dtype=bool)
    for shard in index["shards"]:
        position = shard["first_index"]
        with tarfile.open(data_dir / shard["shard"]) as tar:
            for member in tar:
                if member.name.endswith(".json"):
                    flags[position] = json.load(tar.extractfile(member))["noisy"]
                    position += 1
    return flags


def auc(clean_values: np.ndarray, noisy_values: np.ndarray) -> float:
    """P(a clean value > a noisy one), ties counted half (Mann–Whitney)."""
    values = np.concatenate([clean_values, noisy_values])
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    ranks = (np.cumsum(counts) - (counts - 1) / 2)[inverse]  # 1-based, ties averaged
    n_clean, n_noisy = len(clean_values), len(noisy_values)
    return (ranks[:n_clean].sum() - n_clean * (n_clean + 1) / 2) / (n_clean * n_noisy)


def study(run: Path, first_epoch: int) -> dict:
    config = tomllib.loads((run / "config.toml").read_text())
    data = Path(config["data"])
    if not data.is_absolute():
        data = (run / data) if (run / data).exists() else Path.cwd() / data
    flags = noise_flags(data)
    visits = run / "visits.dsv"
    records = read_records(visits if visits.exists() else run / "visits.csv")
    order = np.lexsort((records["step"], records["index"]))  # by sample, then in time
    index, epoch, selected, key = (records[c][order] for c in ("index", "epoch", "selected", "rank_key"))
    curr = records["curr"][order]
    same_sample = index[1:] == index[:-1]
    later = same_sample & (epoch[1:] >= first_epoch)
    before, now, noisy = selected[:-1][later], selected[1:][later], flags[index[1:][later]]
    key_now = key[1:][later]
    out = {"run": str(run), "strategy": config["selection"]["strategy"]}
    for name, rows in (("clean", ~noisy), ("noisy", noisy)):
        kept_before = rows & before
        left_before = rows & ~before
        out[f"{name}: kept again"] = now[kept_before].mean()
        out[f"{name}: kept after left out"] = now[left_before].mean()
        out[f"{name}: key if kept before"] = np.nanmean(key_now[kept_before])
        out[f"{name}: key if left out before"] = np.nanmean(key_now[left_before])
    for e in sorted(set(epoch[epoch >= first_epoch].tolist())):
        here = epoch == e
        clean_rows, noisy_rows = here & ~flags[index], here & flags[index]
        out[f"epoch {e} AUC score"] = auc(curr[clean_rows], curr[noisy_rows])
        finite = np.isfinite(key)
        if finite[here].all():
            out[f"epoch {e} AUC key"] = auc(key[clean_rows], key[noisy_rows])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--from", dest="first_epoch", type=int, default=0, help="first epoch studied (W)")
    args = parser.parse_args()
    for run in args.runs:
        result = study(run, args.first_epoch)
        print(f"{result.pop('run')} ({result.pop('strategy')})")
        for name, value in result.items():
            print(f"  {name:32s} {value:8.3f}")


if __name__ == "__main__":
    main()
