#!/usr/bin/env bash
# dissect next to open_clip's own trainer on the same job, end to end: the same WebDataset
# shards (noisy-shapes), the same model config, the same tokenizer (CLIP's BPE, built by
# `dissect data clip-tokenizer` from open_clip's own vocabulary file), batch, epochs, learning
# rate schedule, AdamW settings, gradient clipping, precision, no augmentation, a checkpoint and
# a held-out evaluation after every epoch. Runs open_clip_train, `dissect train --strategy
# full` and `dissect train --strategy dissect-momentum --rate 0.3`, one after the other, each
# under bench/timed.py (wall and CPU time, peak memory, peak GPU memory), then prints one table
# (bench/e2e_summary.py), every model scored by open_clip's own retrieval code on the same
# held-out shard.
#
#   python3 -m venv bench/.venv
#   bench/.venv/bin/pip install torch open_clip_torch "webdataset<=0.2.86" pandas braceexpand
#   cargo build --release
#   bench/e2e_openclip.sh
#
# The defaults are a CPU job: 8,192 pairs of 32 px PNGs, bench/tiny-clip.json (the `tiny`
# dimensions with CLIP's 49,408-token vocabulary), 5 epochs, fp32, one open_clip data worker.
# Environment variables change them: PY, DISSECT, DEVICE (dissect's --device), OUT, EPOCHS,
# BATCH, SEED, TRAIN, TEST, MODEL (a model config JSON both trainers read), PRECISION (fp32 or
# amp_bf16, both trainers), WORKERS (open_clip's --workers; dissect decodes on every core),
# IMAGE_SIZE and IMAGE_FORMAT (of the generated images; the model's own size is in MODEL),
# DATA (a dataset folder of `dissect data generate` to use instead of generating one; outside
# OUT, which is emptied first).
# DEVICE=tch with DISSECT=dist/tch/dissect (bench/build_tch.sh) trains dissect on LibTorch's CPU
# device; PY should then be a Python with that build's torch 2.11.0. bench/device.sh runs this
# on a GPU with open_clip's ViT-B-32 at 224 px.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-bench/.venv/bin/python}
DISSECT=${DISSECT:-target/release/dissect}
DEVICE=${DEVICE:-cpu}
OUT=${OUT:-target/e2e}
EPOCHS=${EPOCHS:-5}
BATCH=${BATCH:-256}
SEED=${SEED:-0}
TRAIN=${TRAIN:-8192}
TEST=${TEST:-1024}
MODEL=${MODEL:-bench/tiny-clip.json}
PRECISION=${PRECISION:-fp32}
WORKERS=${WORKERS:-1}
IMAGE_SIZE=${IMAGE_SIZE:-32}
IMAGE_FORMAT=${IMAGE_FORMAT:-png}
LR=5e-4
WARMUP=10
WD=0.2

rm -rf "$OUT" && mkdir -p "$OUT"
DATA=${DATA:-$OUT/data}
if [ ! -f "$DATA/dataset.json" ]; then
    "$DISSECT" data generate noisy-shapes --out "$DATA" --train-size "$TRAIN" --test-size "$TEST" --seed "$SEED" \
        --image-size "$IMAGE_SIZE" --image-format "$IMAGE_FORMAT" >/dev/null
fi
read -r TRAIN TEST < <("$PY" -c 'import json, sys; m = json.load(open(sys.argv[1])); print(m["train_size"], m["test_size"])' \
    "$DATA/dataset.json")
TRAIN_DATA=$(ls "$DATA"/train-*.tar | paste -sd: - | sed 's/:/::/g')
VAL_DATA=$(ls "$DATA"/test-*.tar | paste -sd: - | sed 's/:/::/g')
BPE=$("$PY" -c 'import open_clip, os; print(os.path.join(os.path.dirname(open_clip.__file__), "bpe_simple_vocab_16e6.txt.gz"))')
"$DISSECT" data clip-tokenizer --bpe "$BPE" --out "$OUT/clip-tokenizer.json" >/dev/null
cp "$MODEL" "$OUT/model.json"

echo "open_clip_train ..." >&2
"$PY" bench/timed.py "$OUT/cost-open_clip.json" -- "$PY" bench/openclip_train.py --model-config "$MODEL" \
    --train-data "$TRAIN_DATA" --train-num-samples "$TRAIN" --val-data "$VAL_DATA" --val-num-samples "$TEST" \
    --dataset-type webdataset --batch-size "$BATCH" --epochs "$EPOCHS" --lr "$LR" --warmup "$WARMUP" --wd "$WD" \
    --beta1 0.9 --beta2 0.98 --eps 1e-6 --grad-clip-norm 1.0 --precision "$PRECISION" --workers "$WORKERS" \
    --seed "$SEED" --aug-cfg "scale=(1.0,1.0)" "ratio=(1.0,1.0)" --save-frequency 1 --val-frequency 1 \
    --zeroshot-frequency 0 --log-every-n-steps 1000 --report-to "" --logs "$OUT" --name open_clip \
    >"$OUT/open_clip.out" 2>&1

for strategy in full dissect-momentum; do
    echo "dissect train --strategy $strategy ..." >&2
    "$PY" bench/timed.py "$OUT/cost-$strategy.json" -- "$DISSECT" train --train-data "$TRAIN_DATA" \
        --val-data "$VAL_DATA" --model "$MODEL" --tokenizer "$OUT/clip-tokenizer.json" --batch-size "$BATCH" \
        --epochs "$EPOCHS" --lr "$LR" --warmup-steps "$WARMUP" --weight-decay "$WD" --max-grad-norm 1.0 \
        --seed "$SEED" --strategy "$strategy" --rate 0.3 --aug none --device "$DEVICE" --precision "$PRECISION" \
        --no-progress --out "$OUT/$strategy" >"$OUT/$strategy.out" 2>&1
    "$DISSECT" export "$OUT/$strategy" --out "$OUT/$strategy/export" >/dev/null
done

"$PY" bench/e2e_summary.py "$OUT" "$EPOCHS" "$TRAIN" "$DATA"
