#!/usr/bin/env bash
# The training step with a locked tower next to the unlocked one, in alternating rounds: the
# tiny model at batch 256 with `full` for 10 steps on a noisy-shapes folder, the mean training
# time of steps 2-9 (forward, backward, optimiser; no scoring or data) read from log.jsonl.
#   bench/lock_rounds.sh <work-dir> [rounds]     (uses target/release/dissect)
set -euo pipefail
work=${1:?usage: bench/lock_rounds.sh <work-dir> [rounds]}
rounds=${2:-3}
bin=$(cd "$(dirname "$0")/.." && pwd)/target/release/dissect
mkdir -p "$work" && cd "$work"
[ -f ns/dataset.json ] || "$bin" data generate noisy-shapes --out ns --train-size 4096 --test-size 256 >/dev/null
for round in $(seq "$rounds"); do
  for variant in none image text; do
    flags=()
    [ "$variant" = image ] && flags=(--lock-image)
    [ "$variant" = text ] && flags=(--lock-text)
    rm -rf "run-$variant"
    "$bin" train --data ns --out "run-$variant" --model tiny --batch-size 256 --epochs 1 --max-steps 10 \
      --strategy full --no-progress "${flags[@]}" >/dev/null 2>&1
    python3 - "run-$variant/log.jsonl" "$variant" "$round" <<'PY'
import json, sys
rows = [r["time"]["training"] for r in map(json.loads, open(sys.argv[1])) if r.get("type") == "step"]
print(f"round {sys.argv[3]} lock {sys.argv[2]:5} training s/step (steps 2-9): {sum(rows[2:10]) / 8:.3f}")
PY
  done
done
