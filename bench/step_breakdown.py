#!/usr/bin/env python3
"""Where a training step's time goes, from a run's log.jsonl (no dependencies).

Each epoch line of the log carries the seconds spent waiting for the loader, in the scoring
pass, in the selection core and in training (forward, backward, optimiser step), and the
cumulative wall time of the training steps. What the four parts do not cover is the rest of
the step: slicing the batch into ranks and copying it into tensors, accounting, the visit
records and the log line. Prints one row per run folder: the share of each part and the mean
step time, over all epochs.

    python3 bench/step_breakdown.py runs/tiny-full runs/tiny-dissect
"""

import json
import sys
from pathlib import Path

PARTS = ["data", "scoring", "selection", "training"]


def breakdown(run):
    totals = dict.fromkeys(PARTS, 0.0)
    steps, wall, previous = 0, 0.0, 0.0
    for line in (Path(run) / "log.jsonl").read_text().splitlines():
        record = json.loads(line)
        if record.get("type") != "epoch":
            continue
        summary = record["summary"]
        for part in PARTS:
            totals[part] += summary[f"time_{part}_s"]
        steps += summary["steps"]
        wall += summary["train_time_s"] - previous
        previous = summary["train_time_s"]
    rest = wall - sum(totals.values())
    shares = [100 * totals[p] / wall for p in PARTS] + [100 * rest / wall]
    return steps, wall / max(steps, 1), shares


def main():
    print("| run | steps | step | data | scoring | selection | training | rest (tensors, records, log) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for run in sys.argv[1:]:
        steps, step, shares = breakdown(run)
        cells = " | ".join(f"{s:.1f}%" for s in shares)
        print(f"| {Path(run).name} | {steps} | {step:.3f} s | {cells} |")


if __name__ == "__main__":
    main()
