#!/usr/bin/env python3
"""Why the DISSect gap filters badly, measured on finished runs' visit records.

For each run folder (a `dissect train` or `compare` run with `visits.dsv` or `visits.csv`, on a
dataset with ground-truth noise flags) it prints, over the visits from epoch `--from` on:

- how often a row kept at its previous visit is kept again, and how often a row left out last
  time is kept now, for clean and noisy rows apart: whether the kept set renews itself or freezes;
- the mean ranking key (for DISSect, the gap: history minus current score) of rows kept and
  rows left out at their previous visit;
- the clean-pair ROC-AUC, per epoch, of the current CLIPScore and of the strategy's ranking key
  over that epoch's visits (0.5 = chance, below 0.5 = prefers noisy pairs);
- with `--first-drop`, what decides the first epoch ranked by the key (the earliest whose every
  visit has one): how far the mean score moved within the epoch before it, when the history
  the key compares against was scored (its step), and how well the key would tell clean from
  noisy pairs with that timing taken out (see `first_drop`); then, per later epoch, how
  closely the key still follows that step.

    pip install ./crates/py numpy
    python bench/gap_study.py --from 1 runs/demo/warm-start/seed-*/dissect-warmup ...
    python bench/gap_study.py --first-drop runs/demo/cold-start/seed-*/dissect-warmup ...

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


def average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, ties given their average rank (clamped scores tie at 0 early on)."""
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    return (np.cumsum(counts) - (counts - 1) / 2)[inverse]


def auc(clean_values: np.ndarray, noisy_values: np.ndarray) -> float:
    """P(a clean value > a noisy one), ties counted half (Mann–Whitney)."""
    ranks = average_ranks(np.concatenate([clean_values, noisy_values]))
    n_clean, n_noisy = len(clean_values), len(noisy_values)
    return (ranks[:n_clean].sum() - n_clean * (n_clean + 1) / 2) / (n_clean * n_noisy)


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Rank correlation, ties averaged."""
    return float(np.corrcoef(average_ranks(a), average_ranks(b))[0, 1])


def step_means(values: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """For each value, the mean of the values scored at the same step (its batch's mean)."""
    _, inverse = np.unique(steps, return_inverse=True)
    return (np.bincount(inverse, values) / np.bincount(inverse))[inverse]


def first_ranked_epoch(epoch: np.ndarray, key: np.ndarray) -> int:
    """The earliest epoch whose every visit has a ranking key (warm-up and first sight have none)."""
    ranked = [e for e in np.unique(epoch) if not np.isnan(key[epoch == e]).any()]
    if not ranked:
        raise SystemExit("no epoch ranked every visit by a key: not a DISSect run?")
    return int(ranked[0])


def first_drop(records: dict, flags: np.ndarray) -> dict:
    """What decides the rows the gap keeps at its first ranked epoch E.

    At E both faithful DISSect variants compare a row's clamped score now with its clamped
    score at its visit in epoch E - 1 (`dissect-warmup`'s frozen warm score; the first history
    of `dissect-momentum`). That earlier score was taken at whatever step the loader put the row
    in, and while the model learns fast the mean score climbs within the epoch, so the history
    also records *when* the row was scored. The "timing removed" key centres each history on
    the mean of the batch it was scored in, and the current score on its own batch's mean:
    the part of the gap that is the row's own change against its batch's.
    """
    epoch, step, index = records["epoch"], records["step"], records["index"]
    curr, hist, key, selected = (records[c] for c in ("curr", "hist", "rank_key", "selected"))
    first = first_ranked_epoch(epoch, key)
    before, now = epoch == first - 1, epoch == first
    score_before = np.maximum(curr[before], 0)
    history_step = np.full(len(flags), np.nan)
    history_step[index[before]] = step[before]
    history_batch_mean = np.full(len(flags), np.nan)
    history_batch_mean[index[before]] = step_means(score_before, step[before])
    trained_before = np.zeros(len(flags), dtype=bool)
    trained_before[index[before]] = selected[before]

    rows, score_now = index[now], np.maximum(curr[now], 0)
    noisy, kept = flags[rows], selected[now]
    timing_removed = (hist[now] - history_batch_mean[rows]) - (score_now - step_means(score_now, step[now]))
    steps_before = np.unique(step[before])
    tenth = max(1, len(steps_before) // 10)
    out = {
        "first ranked epoch": first,
        "mean score, first tenth of E-1": score_before[np.isin(step[before], steps_before[:tenth])].mean(),
        "mean score, last tenth of E-1": score_before[np.isin(step[before], steps_before[-tenth:])].mean(),
        "rho(key, step history scored)": spearman(key[now], history_step[rows]),
        "AUC key": auc(key[now][~noisy], key[now][noisy]),
        "AUC key, timing removed": auc(timing_removed[~noisy], timing_removed[noisy]),
        "AUC current score": auc(score_now[~noisy], score_now[noisy]),
        "AUC history": auc(hist[now][~noisy], hist[now][noisy]),
        "kept if trained at E-1": kept[trained_before[rows]].mean(),
        "kept if not trained at E-1": kept[~trained_before[rows]].mean(),
    }
    # Later epochs: `dissect-warmup`'s history is frozen, so that timing never leaves its key.
    for e in np.unique(epoch[epoch > first]):
        here = epoch == e
        finite = np.isfinite(key[here])
        out[f"epoch {e} rho(key, step E-1)"] = spearman(key[here][finite], history_step[index[here]][finite])
    return out


def load_run(run: Path) -> tuple[dict, dict, np.ndarray]:
    """The run's config, visit records and its dataset's noise flags."""
    config = tomllib.loads((run / "config.toml").read_text())
    data = Path(config["data"])
    if not data.is_absolute():
        data = (run / data) if (run / data).exists() else Path.cwd() / data
    visits = run / "visits.dsv"
    records = read_records(visits if visits.exists() else run / "visits.csv")
    return config, records, noise_flags(data)


def study(records: dict, flags: np.ndarray, first_epoch: int) -> dict:
    order = np.lexsort((records["step"], records["index"]))  # by sample, then in time
    index, epoch, selected, key = (records[c][order] for c in ("index", "epoch", "selected", "rank_key"))
    curr = records["curr"][order]
    same_sample = index[1:] == index[:-1]
    later = same_sample & (epoch[1:] >= first_epoch)
    before, now, noisy = selected[:-1][later], selected[1:][later], flags[index[1:][later]]
    key_now = key[1:][later]
    out = {}
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
    parser.add_argument("--first-drop", action="store_true", help="what decides the first ranked epoch")
    args = parser.parse_args()
    for run in args.runs:
        config, records, flags = load_run(run)
        if args.first_drop:
            result = first_drop(records, flags)
        else:
            result = study(records, flags, args.first_epoch)
        print(f"{run} ({config['selection']['strategy']})")
        for name, value in result.items():
            print(f"  {name:32s} {value:8.3f}")


if __name__ == "__main__":
    main()
