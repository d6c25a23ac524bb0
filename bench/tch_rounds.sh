#!/usr/bin/env bash
# A change to the LibTorch path, measured on LibTorch's CPU device: alternating rounds of the
# `tch` build before the change (BASE_BIN), the build after it (BIN) and PyTorch, for each
# PRESET:BATCH, then the mean ± sd full step of each and the ratios (bench/device_summary.py's
# table, with the "before" build in PyTorch's place and PyTorch in a second table).
#
#   PYTHON=torch211/bin/python BIN=dist/tch BASE_BIN=/path/to/before bench/tch_rounds.sh ROUNDS PRESET:BATCH...
#
# Both folders are bench/build_tch.sh outputs built against PYTHON's torch. STEPS (default 3)
# timed steps a run; PRECISION (default fp32) as bench_step and torch_clip.py take it.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
bin=$(realpath "${BIN:-dist/tch}")
base_bin=$(realpath "${BASE_BIN:?BASE_BIN: the folder of the build before the change}")
rounds=${1:?ROUNDS}
shift
steps=${STEPS:-3}
precision=${PRECISION:-fp32}
torch_lib=$("$python" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
export LD_LIBRARY_PATH="$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
awk -v header=1 -f bench/step_row.awk >"$out/now.tsv"
cp "$out/now.tsv" "$out/pytorch.tsv"
for round in $(seq "$rounds"); do
    for spec in "$@"; do
        preset=${spec%%:*} batch=${spec##*:}
        for impl in before after pytorch; do
            case $impl in
                before) run=("$base_bin/bench_step" --device tch) ;;
                after) run=("$bin/bench_step" --device tch) ;;
                pytorch) run=("$python" bench/torch_clip.py --device cpu) ;;
            esac
            "${run[@]}" --preset "$preset" --batch "$batch" --steps "$steps" --precision "$precision" >"$out/run.txt" 2>&1 ||
                { echo "$impl $spec FAILED:"; tail -n 5 "$out/run.txt"; continue; }
            row=$(awk -v preset="$preset,$batch" -v precision="$precision" -v impl="$impl" -v round="$round" \
                -f bench/step_row.awk "$out/run.txt")
            echo "$row"
            # The summary compares "dissect" with "pytorch": after with before, then after with PyTorch.
            case $impl in
                after) echo "$row" | sed 's/\tafter\t/\tdissect\t/' | tee -a "$out/pytorch.tsv" >>"$out/now.tsv" ;;
                before) echo "$row" | sed 's/\tbefore\t/\tpytorch\t/' >>"$out/now.tsv" ;;
                pytorch) echo "$row" >>"$out/pytorch.tsv" ;;
            esac
        done
    done
done
echo
echo "After the change over before it (the \"PyTorch\" columns are the build before):"
"$python" bench/device_summary.py steps "$out/now.tsv"
echo
echo "After the change over PyTorch:"
"$python" bench/device_summary.py steps "$out/pytorch.tsv"
