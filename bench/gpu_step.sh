#!/usr/bin/env bash
# The step benchmark on a GPU, LibTorch through dissect next to PyTorch on the same GPU: for
# `tiny`, `small`, `vit-b-32` and `rn50` (batch 256), in fp32 and amp_bf16, alternating rounds of
# `bench_step --device tch:cuda` (built by bench/build_tch.sh) and `bench/torch_clip.py --device
# cuda` (amp_bf16 there is torch.autocast, as open_clip_train's); each prints the selected step
# over the full one next to the cost model's (1 + 3r)/3. Then `dissect train` on the GPU: the
# short run that checks the device end to end, amp_bf16 against fp32
# (crates/cli/tests/precision.sh on the GPU), a job of one process under torchrun (NCCL's path,
# which needs no second GPU), and `full` and `dissect-momentum` on the `tiny` preset with the
# wall time of each. Run it on the GPU machine
# from the repository root, with the torch 2.11.0 the binaries were built against (the `rn50`
# reference needs open_clip_torch in that Python: its ModifiedResNet is the image tower):
#
#   PYTHON=/path/to/venv/bin/python BIN=dist/tch bench/gpu_step.sh [ROUNDS]      # default 2 rounds
#
# BASE_BIN names a second build whose `bench_step` joins every round (before/after a change).
# STEPS (timed steps per run, default 10), PRESETS, PRECISIONS (default "fp32 amp_bf16"),
# BATCH (default 256), TRAIN_SIZE (rows of the `tiny` training
# runs, default 20000), and BURN_DEVICE / TORCH_DEVICE (default tch:cuda / cuda) override the
# defaults; `BURN_DEVICE=tch TORCH_DEVICE=cpu PRESETS=tiny STEPS=1 TRAIN_SIZE=512` checks the
# script on a machine without a GPU.
set -euo pipefail

python=${PYTHON:-python3}
bin=${BIN:-dist/tch}
base_bin=${BASE_BIN:-}
rounds=${1:-2}
steps=${STEPS:-10}
presets=${PRESETS:-tiny small vit-b-32 rn50}
precisions=${PRECISIONS:-fp32 amp_bf16}
batch=${BATCH:-256}
train_size=${TRAIN_SIZE:-20000}
burn_device=${BURN_DEVICE:-tch:cuda}
torch_device=${TORCH_DEVICE:-cuda}
torch_lib=$("$python" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
export LD_LIBRARY_PATH="$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

"$python" -c 'import torch; print("torch", torch.__version__, "GPUs", torch.cuda.device_count(),
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")'
for preset in $presets; do
    for precision in $precisions; do
        for round in $(seq "$rounds"); do
            echo "== $preset, batch $batch, $precision, round $round"
            for build in $base_bin $bin; do
                echo "-- $build/bench_step"
                "$build/bench_step" --preset "$preset" --batch "$batch" --steps "$steps" --device "$burn_device" \
                    --precision "$precision" | grep -E '^(burn|median|selected)'
            done
            "$python" bench/torch_clip.py --preset "$preset" --batch "$batch" --steps "$steps" \
                --device "$torch_device" --precision "$precision" | grep -E '^(pytorch|median|selected)'
        done
    done
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
timed() { # label, command...: the command's output, then its wall time in seconds
    local label=$1 start
    shift
    start=$(date +%s.%N)
    "$@"
    awk -v label="$label" -v start="$start" -v end="$(date +%s.%N)" 'BEGIN { printf "wall %s %.1f s\n", label, end - start }'
}
echo "== dissect train on $burn_device"
"$bin/dissect" data generate noisy-shapes --out "$work/small" --noise-rate 0.4 --train-size 4096 --test-size 1000
timed micro "$bin/dissect" train --device "$burn_device" --data "$work/small" --model micro --epochs 2 \
    --batch-size 64 --strategy dissect-momentum --out "$work/micro" --no-progress | tail -n 3
echo "== amp_bf16 against fp32 on $burn_device"
DEVICE=$burn_device crates/cli/tests/precision.sh "$bin/dissect" "$python" || echo "precision check FAILED"
echo "== a job of one process under torchrun on $burn_device"
"$python" -m torch.distributed.run --no-python --nproc-per-node 1 "$bin/dissect" train --device "$burn_device" \
    --data "$work/small" --model micro --epochs 1 --batch-size 64 --strategy dissect-momentum \
    --selection-scope global --local-loss --gather-with-grad --out "$work/job" --no-progress | tail -n 2 ||
    echo "torchrun job FAILED"
"$bin/dissect" data generate noisy-shapes --out "$work/data" --noise-rate 0.4 --train-size "$train_size" --test-size 1000
for strategy in full dissect-momentum; do
    timed "tiny-$strategy" "$bin/dissect" train --device "$burn_device" --data "$work/data" --model tiny \
        --epochs 2 --batch-size 256 --strategy "$strategy" --rate 0.3 --out "$work/$strategy" --no-progress |
        tail -n 3
done
"$python" bench/step_breakdown.py "$work/full" "$work/dissect-momentum"
