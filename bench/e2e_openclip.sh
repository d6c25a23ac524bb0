#!/usr/bin/env bash
# dissect next to open_clip's own trainer on the same job, end to end: the same WebDataset
# shards (noisy-shapes, 32 px), the same model (bench/tiny-clip.json: the `tiny` dimensions
# with CLIP's 49,408-token vocabulary), the same tokenizer (CLIP's BPE, built by
# `dissect data clip-tokenizer` from open_clip's own vocabulary file), batch, epochs, learning
# rate schedule, AdamW settings, gradient clipping, fp32, no augmentation, a checkpoint and a
# held-out evaluation after every epoch. Runs open_clip_train, `dissect train --strategy
# full` and `dissect train --strategy dissect-momentum --rate 0.3`, one after the other,
# each under /usr/bin/time -v, then prints one table (bench/e2e_summary.py), every model
# scored by open_clip's own retrieval code on the same held-out shard.
#
#   python3 -m venv bench/.venv
#   bench/.venv/bin/pip install torch open_clip_torch "webdataset<=0.2.86" pandas braceexpand
#   cargo build --release
#   bench/e2e_openclip.sh            # PY=..., DISSECT=..., DEVICE=..., OUT=..., EPOCHS=..., SEED=... to change
#
# DEVICE=tch with DISSECT=dist/tch/dissect (bench/build_tch.sh) trains dissect on LibTorch's CPU
# device; PY should then be a Python with that build's torch 2.11.0.
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
LR=5e-4
WARMUP=10
WD=0.2

rm -rf "$OUT" && mkdir -p "$OUT"
"$DISSECT" data generate noisy-shapes --out "$OUT/data" --train-size "$TRAIN" --test-size "$TEST" --seed "$SEED" >/dev/null
TRAIN_DATA=$(ls "$OUT"/data/train-*.tar | paste -sd: - | sed 's/:/::/g')
VAL_DATA=$(ls "$OUT"/data/test-*.tar | paste -sd: - | sed 's/:/::/g')
BPE=$("$PY" -c 'import open_clip, os; print(os.path.join(os.path.dirname(open_clip.__file__), "bpe_simple_vocab_16e6.txt.gz"))')
"$DISSECT" data clip-tokenizer --bpe "$BPE" --out "$OUT/clip-tokenizer.json" >/dev/null

echo "open_clip_train ..." >&2
/usr/bin/time -v -o "$OUT/time-open_clip.txt" "$PY" bench/openclip_train.py --model-config bench/tiny-clip.json \
    --train-data "$TRAIN_DATA" --train-num-samples "$TRAIN" --val-data "$VAL_DATA" --val-num-samples "$TEST" \
    --dataset-type webdataset --batch-size "$BATCH" --epochs "$EPOCHS" --lr "$LR" --warmup "$WARMUP" --wd "$WD" \
    --beta1 0.9 --beta2 0.98 --eps 1e-6 --grad-clip-norm 1.0 --precision fp32 --workers 1 --seed "$SEED" \
    --aug-cfg "scale=(1.0,1.0)" "ratio=(1.0,1.0)" --save-frequency 1 --val-frequency 1 --zeroshot-frequency 0 \
    --log-every-n-steps 1000 --report-to "" --logs "$OUT" --name open_clip >"$OUT/open_clip.out" 2>&1

for strategy in full dissect-momentum; do
    echo "dissect train --strategy $strategy ..." >&2
    /usr/bin/time -v -o "$OUT/time-$strategy.txt" "$DISSECT" train --train-data "$TRAIN_DATA" --val-data "$VAL_DATA" \
        --model bench/tiny-clip.json --tokenizer "$OUT/clip-tokenizer.json" --batch-size "$BATCH" --epochs "$EPOCHS" \
        --lr "$LR" --warmup-steps "$WARMUP" --weight-decay "$WD" --max-grad-norm 1.0 --seed "$SEED" \
        --strategy "$strategy" --rate 0.3 --aug none --device "$DEVICE" --no-progress --out "$OUT/$strategy" \
        >"$OUT/$strategy.out" 2>&1
    "$DISSECT" export "$OUT/$strategy" --out "$OUT/$strategy/export" >/dev/null
done

"$PY" bench/e2e_summary.py "$OUT" "$EPOCHS" "$TRAIN"
