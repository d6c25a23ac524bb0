#!/usr/bin/env bash
# The step on the CPU, side by side: alternating rounds of Burn on flex, Burn on LibTorch's CPU
# device (the `tch` build) and PyTorch, for `tiny` (batch 256) and `small` (batch 128), 2 threads.
#
#   cargo build --release -p dissect-model --example bench_step
#   PYTHON=torch211/bin/python BIN=dist/tch bench/cpu_step_rounds.sh [ROUNDS]     # default 2
#
# PYTHON: the torch 2.11.0 the `tch` build links (bench/build_tch.sh); BIN: that build's folder.
# BASE_BIN names a folder with a second flex `bench_step` that joins every round (before/after
# a change).
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
bin=${BIN:-dist/tch}
rounds=${1:-2}
base_bin=${BASE_BIN:-}
torch_lib=$("$python" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
export LD_LIBRARY_PATH="$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
for round in $(seq "$rounds"); do
    for spec in tiny:256 small:128; do
        preset=${spec%%:*} batch=${spec##*:}
        echo "== round $round $preset $batch"
        if [ -n "$base_bin" ]; then
            echo "flex ($base_bin):"
            "$base_bin/bench_step" --preset "$preset" --batch "$batch" --steps 5 | grep -E '^(median|selected)'
        fi
        echo "flex:"
        target/release/examples/bench_step --preset "$preset" --batch "$batch" --steps 5 | grep -E '^(median|selected)'
        echo "tch:"
        "$bin/bench_step" --preset "$preset" --batch "$batch" --steps 5 --device tch | grep -E '^(median|selected)'
        echo "pytorch:"
        "$python" bench/torch_clip.py --preset "$preset" --batch "$batch" --steps 5 --threads 2 2>/dev/null \
            | grep -E '^(median|selected)'
    done
done
