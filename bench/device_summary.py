#!/usr/bin/env python3
"""The ratio tables of bench/device.sh (no dependencies).

    python3 bench/device_summary.py steps STEPS.tsv
    python3 bench/device_summary.py loader LOADER.txt STEPS.tsv

`steps`: per preset and precision, dissect's and PyTorch's full step (mean ± sd over the
alternating rounds; on a bf16 row PyTorch runs amp_bf16), their ratio, each one's selected step
(scoring included) over its full step next to the cost model's (1 + 3r)/3, and each one's
update alone (clipping and AdamW, bench_step's last line) over its full step. `loader`: each loader run's images/s over the images/s
of the vit-b-32 amp_bf16 full step (dissect's and PyTorch's), above 1 when the data keeps up.
"""

import csv
import os
import re
import statistics
import sys


def mean_sd(values):
    mean = statistics.fmean(values)
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return mean, sd


def read_steps(path):
    rows = {}
    if not os.path.exists(path):
        return rows
    with open(path) as f:
        for row in csv.DictReader(f, delimiter="\t"):
            if not row["full_s"]:
                continue  # a run that printed no timing (it failed; its output is in the log)
            rows.setdefault((row["preset"], row["precision"]), {}).setdefault(row["impl"], []).append(row)
    return rows


def column(runs, name):
    return [float(r[name]) for r in runs]


def steps_table(path):
    print("| preset | precision | dissect step | PyTorch step | dissect / PyTorch | selected / full: dissect | PyTorch "
          "| cost model | update / full: dissect | PyTorch |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for (preset, precision), impls in read_steps(path).items():
        ours, theirs = impls.get("dissect", []), impls.get("pytorch", [])
        if not ours or not theirs:
            print(f"| {preset} | {precision} | {'no timing: see the log' if not ours else ''} | "
                  f"{'no timing: see the log' if not theirs else ''} | | | | | | |")
            continue
        (a, a_sd), (b, b_sd) = mean_sd(column(ours, "full_s")), mean_sd(column(theirs, "full_s"))
        sel_a = statistics.fmean(column(ours, "selected_over_full"))
        sel_b = statistics.fmean(column(theirs, "selected_over_full"))
        if precision == "bf16":
            precision = "bf16 (PyTorch: amp_bf16)"
        print(f"| {preset} | {precision} | {a:.4f} ± {a_sd:.4f} s | {b:.4f} ± {b_sd:.4f} s | {a / b:.2f} | "
              f"{sel_a:.2f} | {sel_b:.2f} | {float(ours[0]['cost_model']):.2f} | "
              f"{update_share(ours, a)} | {update_share(theirs, b)} |")


def update_share(runs, full):
    """The mean update time over the mean full step, or a dash for rows without one."""
    times = [float(r["update_s"]) for r in runs if r.get("update_s")]
    return f"{statistics.fmean(times) / full:.2f}" if times else "–"


def loader_table(loader_path, steps_path):
    steps = read_steps(steps_path).get(("vit-b-32", "amp_bf16"), {})
    consumes = {impl: 256 / statistics.fmean(column(runs, "full_s")) for impl, runs in steps.items()}
    print("| loader threads | images/s | over dissect's vit-b-32 amp_bf16 step | over PyTorch's |")
    print("|---:|---:|---:|---:|")
    for line in open(loader_path):
        found = re.search(r"loader: (\d+) threads.* at (\d+) images/s", line)
        if not found:
            continue
        threads, rate = int(found.group(1)), float(found.group(2))
        cells = [f"{rate / consumes[i]:.2f}" if i in consumes else "–" for i in ("dissect", "pytorch")]
        print(f"| {threads} | {rate:.0f} | {cells[0]} | {cells[1]} |")
    for impl, rate in consumes.items():
        print(f"{impl}'s vit-b-32 amp_bf16 full step consumes {rate:.0f} images/s")


def main():
    if len(sys.argv) >= 3 and sys.argv[1] == "steps":
        steps_table(sys.argv[2])
    elif len(sys.argv) >= 4 and sys.argv[1] == "loader":
        loader_table(sys.argv[2], sys.argv[3])
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
