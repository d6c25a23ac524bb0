#!/usr/bin/env bash
# Everything the GPU work is judged by, in one call on one GPU machine, each part's table printed
# and written as soon as it is measured (about 9.5 minutes on an H200, estimated from the step times
# measured there on 2026-11-30; it has run end to end only on a CPU so far, see bench/README.md).
# The parts run in the order of what they decide, so a run cut short keeps the most:
#   1. the training step: `bench_step --device tch:cuda` against bench/torch_clip.py on the same
#      GPU (PyTorch eager; amp_bf16 there is torch.autocast, as in open_clip_train), alternating
#      rounds, batch 256, fp32 and amp_bf16, for vit-b-32 and rn50; with each one's selected
#      step (scoring included, r = 0.3) over its full step, next to the cost model's (1 + 3r)/3;
#   2. the data: 50,000 pairs of 256 px JPEGs generated, then the loader alone (decode, resize
#      to 224, normalise, tokenize on every core) in images/s over what the vit-b-32 amp_bf16
#      step consumes;
#   3. the whole job next to open_clip_train (bench/e2e_openclip.sh): open_clip's ViT-B-32
#      config, CLIP's tokenizer, those shards, 2 epochs, amp_bf16, `full` and
#      `dissect-momentum` at r = 0.3: wall time, pairs/s, peak GPU memory, held-out retrieval,
#      and each dissect run's step time split into data, scoring, selection and training;
#   4. more steps, one round each: dissect's pure bf16 for vit-b-32 and rn50 next to PyTorch's
#      amp_bf16 (what an open_clip user runs), and tiny and small in fp32 and amp_bf16;
#   5. checks: amp_bf16 and bf16 against fp32 on the GPU (crates/cli/tests/precision.sh) and a
#      job of one process under torchrun (NCCL's code path; needs no second GPU).
# Prepare on any x86-64 Linux machine, no GPU needed:
#
#   PYTHON=/path/to/torch-2.11.0-venv/bin/python bench/build_tch.sh     # dist/tch
#   bench/device_wheels.sh                                              # target/device-wheels
#
# then run on the GPU machine from the repository root, with dist/tch and target/device-wheels
# copied along and the torch 2.11.0 the binaries were built against as `python3`:
#
#   bench/device.sh [RESULTS_DIR]
#
# The log and every table are also written to RESULTS_DIR (default target/device). PYTHON, BIN
# (dist/tch), WHEELS, STEPS (timed steps per bench run, default 6), ROUNDS (of vit-b-32 and
# rn50, default 2), BIG and SMALL (the presets of part 1 and of part 4), BF16 (part 4's bf16
# presets, default "vit-b-32 rn50"), TRAIN (pairs of the job, default 50000), EPOCHS (2),
# JOB_MODEL (the job's model config; default open_clip's ViT-B-32.json), PARTS (default
# "steps data job extra checks") and BURN_DEVICE / TORCH_DEVICE (tch:cuda / cuda) change it;
# `BURN_DEVICE=tch TORCH_DEVICE=cpu BIG=micro SMALL= TRAIN=1024 ...` checks the script on a
# machine without a GPU (see bench/README.md).
set -euo pipefail
cd "$(dirname "$0")/.."
results=$(realpath -m "${1:-target/device}")
mkdir -p "$results"
rm -f "$results"/{steps.tsv,steps.md,loader.txt,loader.md,job.md}  # the tables of an earlier run
exec > >(tee "$results/device.log") 2>&1
python=${PYTHON:-python3}
bin=$(realpath "${BIN:-dist/tch}")
wheels=${WHEELS:-target/device-wheels}
steps=${STEPS:-6}
rounds=${ROUNDS:-2}
big=${BIG-vit-b-32 rn50}
small=${SMALL-tiny small}
bf16_presets=${BF16-vit-b-32 rn50}
train=${TRAIN:-50000}
epochs=${EPOCHS:-2}
parts=${PARTS:-steps data job extra checks}
burn_device=${BURN_DEVICE:-tch:cuda}
torch_device=${TORCH_DEVICE:-cuda}
batch=256
began=$(date +%s)
section() { echo; echo "=== $1 (at $(($(date +%s) - began)) s)"; }
wants() { [[ " $parts " == *" $1 "* ]]; }

section setup
if [ -d "$wheels" ]; then
    "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/device-site \
        "$wheels"/*.whl
    export PYTHONPATH=/tmp/device-site${PYTHONPATH:+:$PYTHONPATH}
fi
torch_lib=$("$python" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
export LD_LIBRARY_PATH="$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" PYTHONUNBUFFERED=1
"$python" -c 'import torch; print("torch", torch.__version__, "GPUs", torch.cuda.device_count(),
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "", "CPUs", __import__("os").cpu_count())'
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

bench_round() { # preset precision round: one row per implementation into steps.tsv
    local preset=$1 precision=$2 round=$3 impl
    for impl in dissect pytorch; do
        local run=("$bin/bench_step" --device "$burn_device") as=$precision
        if [ "$impl" = pytorch ]; then
            run=("$python" bench/torch_clip.py --device "$torch_device")
            # PyTorch's side of a bf16 row is autocast, open_clip_train's default.
            [ "$precision" = bf16 ] && as=amp_bf16
        fi
        "${run[@]}" --preset "$preset" --batch "$batch" --steps "$steps" --precision "$as" >"$work/step.out" 2>&1 ||
            { echo "$impl $preset $precision FAILED:"; tail -n 5 "$work/step.out"; }
        awk -v preset="$preset" -v precision="$precision" -v impl="$impl" -v round="$round" -f bench/step_row.awk \
            "$work/step.out" | tee -a "$results/steps.tsv"
    done
}

steps_header() {
    [ -f "$results/steps.tsv" ] ||
        awk -v header=1 -f bench/step_row.awk >"$results/steps.tsv"
}
steps_summary() {
    "$python" bench/device_summary.py steps "$results/steps.tsv" | tee "$results/steps.md" || echo "summary FAILED"
}

# The parts run in the order of what they decide, and every table is written as soon as it is
# measured, so a run cut short keeps what it measured.
if wants steps; then
    section "1. training step: $big, fp32 and amp_bf16, batch $batch, $steps timed steps a run"
    steps_header
    for preset in $big; do
        for precision in fp32 amp_bf16; do
            for round in $(seq "$rounds"); do bench_round "$preset" "$precision" "$round"; done
        done
    done
    steps_summary
fi

data=$work/data
if wants data || wants job; then
    section "2. data: $train pairs of 256 px JPEGs"
    "$bin/dissect" data generate noisy-shapes --out "$data" --train-size "$train" --test-size 1000 \
        --image-size 256 --image-format jpeg --noise-rate 0.3 --shard-size 1000  # a shard per open_clip worker
    du -sh "$data"
fi
if wants data; then
    bpe=$("$python" -c 'import open_clip, os; print(os.path.join(os.path.dirname(open_clip.__file__), "bpe_simple_vocab_16e6.txt.gz"))')
    "$bin/dissect" data clip-tokenizer --bpe "$bpe" --out "$work/clip-tokenizer.json" >/dev/null
    pattern=$("$python" -c 'import json, sys; print(json.load(open(sys.argv[1]))["train"])' "$data/dataset.json")
    for threads in $(nproc) $(($(nproc) / 2)); do
        "$bin/bench_loader" --shards "$data/$pattern" --tokenizer "$work/clip-tokenizer.json" --image-size 224 \
            --batch "$batch" --threads "$threads" --batches 80 | tee -a "$results/loader.txt"
    done
    "$python" bench/device_summary.py loader "$results/loader.txt" "$results/steps.tsv" | tee "$results/loader.md" ||
        echo "summary FAILED"
fi

if wants job; then
    model=${JOB_MODEL:-$("$python" -c 'import open_clip, os; print(os.path.join(os.path.dirname(open_clip.__file__), "model_configs", "ViT-B-32.json"))')}
    section "3. the whole job: open_clip_train and dissect, $(basename "$model" .json), $epochs epochs, amp_bf16"
    PY=$python DISSECT=$bin/dissect DEVICE=$burn_device OUT=$work/job DATA=$data EPOCHS=$epochs MODEL=$model \
        PRECISION=amp_bf16 WORKERS=$(($(nproc) - 2)) bench/e2e_openclip.sh | tee "$results/job.md"
    "$python" bench/step_breakdown.py "$work/job/full" "$work/job/dissect-momentum" | tee -a "$results/job.md"
fi

if wants extra; then
    section "4. more steps: bf16 for $bf16_presets (PyTorch: amp_bf16), and $small in fp32 and amp_bf16, one round"
    steps_header
    for preset in $bf16_presets; do bench_round "$preset" bf16 1; done
    for preset in $small; do
        for precision in fp32 amp_bf16; do bench_round "$preset" "$precision" 1; done
    done
    steps_summary
fi

if wants checks; then
    section "5. checks on $burn_device"
    DEVICE=$burn_device crates/cli/tests/precision.sh "$bin/dissect" "$python" || echo "precision check FAILED"
    "$bin/dissect" data generate noisy-shapes --out "$work/small" --train-size 1024 --test-size 256 >/dev/null
    "$python" -m torch.distributed.run --no-python --nproc-per-node 1 "$bin/dissect" train --device "$burn_device" \
        --data "$work/small" --model micro --epochs 1 --batch-size 64 --strategy dissect-momentum \
        --selection-scope global --local-loss --gather-with-grad --out "$work/torchrun" --no-progress | tail -n 2 ||
        echo "torchrun job FAILED"
fi
section done
