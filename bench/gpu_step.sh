#!/usr/bin/env bash
# The step benchmark on a GPU, LibTorch through dissect next to PyTorch on the same GPU: for
# `tiny`, `small` and `vit-b-32`, alternating rounds of `bench_step --device tch:cuda` (built by
# bench/build_tch.sh) and `bench/torch_clip.py --device cuda`, then a short `dissect train`.
# Run it on the GPU machine from the repository root, with the torch 2.11.0 the binaries were
# built against:
#
#   PYTHON=/path/to/venv/bin/python BIN=dist/tch bench/gpu_step.sh [ROUNDS]      # default 2 rounds
set -euo pipefail

python=${PYTHON:-python3}
bin=${BIN:-dist/tch}
rounds=${1:-2}
torch_lib=$("$python" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
export LD_LIBRARY_PATH="$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

"$python" -c 'import torch; print("torch", torch.__version__, "GPUs", torch.cuda.device_count(), torch.cuda.get_device_name(0))'
for preset in tiny small vit-b-32; do
    case $preset in
        vit-b-32) batch=128 ;;
        *) batch=256 ;;
    esac
    for round in $(seq "$rounds"); do
        echo "== $preset, batch $batch, round $round"
        "$bin/bench_step" --preset "$preset" --batch "$batch" --steps 5 --device tch:cuda | grep -E '^(burn|median|selected)'
        "$python" bench/torch_clip.py --preset "$preset" --batch "$batch" --steps 5 --device cuda | grep -E '^(pytorch|median|selected)'
    done
done

work=$(mktemp -d)
"$bin/dissect" data generate noisy-shapes --out "$work/data" --noise-rate 0.4 --train-size 4096 --test-size 1000
time "$bin/dissect" train --device tch:cuda --data "$work/data" --model micro --epochs 2 --batch-size 64 \
    --strategy dissect-momentum --out "$work/run" --no-progress
