#!/usr/bin/env python3
"""Mean ± sample sd per strategy over several `dissect compare` runs (their table.json files).

    python bench/table_mean_sd.py runs/a/table.json runs/b/table.json runs/c/table.json
"""

import json
import statistics as st
import sys

runs = [json.load(open(p)) for p in sys.argv[1:]]
names = [r["strategy"] for r in runs[0]]
def ms(v): return f"{st.mean(v):.1f} ± {st.stdev(v):.1f}"
print("| Strategy | TR R@1 | IR R@1 | R@10 (TR/IR mean) | Selected noise % | Wall time (s) |")
print("|---|---:|---:|---:|---:|---:|")
for n in names:
    rows = [next(r for r in run if r["strategy"] == n) for run in runs]
    tr = [r["eval"]["retrieval"]["image_to_text"]["r1"] for r in rows]
    ir = [r["eval"]["retrieval"]["text_to_image"]["r1"] for r in rows]
    r10 = [(r["eval"]["retrieval"]["image_to_text"]["r10"] + r["eval"]["retrieval"]["text_to_image"]["r10"]) / 2 for r in rows]
    noise = [100 * r["selected_noise_fraction"] for r in rows]
    wall = [r["wall_time_s"] for r in rows]
    print(f"| {n} | {ms(tr)} | {ms(ir)} | {ms(r10)} | {ms(noise)} | {ms(wall)} |")
