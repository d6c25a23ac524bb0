#!/usr/bin/env bash
# Jobs of several processes on the CPU, through torch.distributed's Gloo: the `tch` build of
# `dissect` (bench/build_tch.sh) launched by torchrun and by hand. Checks that
#   1. 2 and 3 processes with --selection-scope global select exactly what one process selects
#      on the same batches, with the same losses (float tolerance), also with --local-loss
#      --gather-with-grad;
#   2. 2 processes with the default local scope keep k rows of each half of every batch, and
#      only rank 0 writes the run folder;
#   3. a killed process makes the others fail with an error within --dist-timeout, not hang;
#      the run then resumes from its last checkpoint under torchrun, on another world size.
#
#   crates/cli/tests/processes.sh DISSECT_BIN PYTHON     # PYTHON: the torch 2.11.0 it was built against
set -euo pipefail
dissect=$(realpath "$1")
python=${2:-python3}
torchrun=("$python" -m torch.distributed.run)
torch_lib=$("$python" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
export LD_LIBRARY_PATH="$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" RUST_BACKTRACE=0
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
free_port() { "$python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
fail() { echo "FAIL: $*" >&2; exit 1; }

"$dissect" data generate noisy-shapes --out data --train-size 192 --test-size 48 --noise-rate 0.4 >/dev/null
job=(--data data --device tch --model micro --batch-size 48 --rate 0.3 --lr 1e-3 --warmup-steps 2
     --strategy dissect-momentum --records csv --no-progress)
common=("${job[@]}" --epochs 2)

echo "1. one process against 2 and 3 with the global scope"
"$dissect" train "${common[@]}" --selection-scope global --out single >/dev/null
"${torchrun[@]}" --no-python --nproc-per-node 2 --master-port "$(free_port)" \
    "$dissect" train "${common[@]}" --selection-scope global --out two >/dev/null
"${torchrun[@]}" --no-python --nproc-per-node 3 --master-port "$(free_port)" \
    "$dissect" train "${common[@]}" --selection-scope global --local-loss --gather-with-grad --out three >/dev/null
"$python" - <<'PY'
import csv, json
def losses(run):
    return [json.loads(l)["loss"] for l in open(f"{run}/log.jsonl") if '"type":"step"' in l.replace(" ", "")]
def visits(run):
    return [(r["index"], r["selected"]) for r in csv.DictReader(open(f"{run}/visits.csv"))]
single = losses("single")
assert len(single) == 8, single
for run in ["two", "three"]:
    got = losses(run)
    worst = max(abs(a - b) for a, b in zip(single, got))
    assert len(got) == len(single) and worst < 1e-4, (run, single, got)
    assert visits(run) == visits("single"), f"{run}: selections differ"
    print(f"   {run}: {len(got)} steps, the same selections, losses within {worst:.1e}")
PY

echo "2. two processes, local scope: k of each half, one writer"
"${torchrun[@]}" --no-python --nproc-per-node 2 --master-port "$(free_port)" \
    "$dissect" train "${common[@]}" --out local >/dev/null
"$python" - <<'PY'
import csv
rows = list(csv.DictReader(open("local/visits.csv")))
assert len(rows) == 8 * 48, len(rows)
for step in range(8):
    batch = rows[step * 48:(step + 1) * 48]
    for half in (batch[:24], batch[24:]):
        kept = sum(r["selected"] in ("1", "true") for r in half)
        assert kept == 7, (step, kept)  # floor(24 * 0.3)
print("   8 steps, 7 of each process's 24 rows kept")
PY
[ "$(ls local/checkpoints | grep -c step-)" -ge 1 ] || fail "rank 0 wrote no checkpoint"

echo "3. a killed process ends the job with an error; the run resumes"
port=$(free_port)
launch() {
    RANK=$1 LOCAL_RANK=$1 WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=$port \
        "$dissect" train "${job[@]}" --epochs 40 --checkpoint-every 2 --dist-timeout 20 --out killed \
        >"rank$1.out" 2>"rank$1.err" &
}
launch 0; rank0=$!
launch 1; rank1=$!
for _ in $(seq 600); do
    [ -e killed/checkpoints/latest ] && grep -q '"step":3,' killed/log.jsonl 2>/dev/null && break
    sleep 0.1
done
kill -9 "$rank1"
start=$(date +%s)
if wait "$rank0"; then fail "rank 0 finished although its peer was killed"; fi
took=$(( $(date +%s) - start ))
[ "$took" -le 30 ] || fail "rank 0 took ${took} s to notice its peer was gone"
grep -q -i "peer\|closed\|connection" rank0.err || fail "rank 0's error does not say why: $(cat rank0.err)"
echo "   rank 0 stopped ${took} s after its peer was killed: $(grep -m 1 '^Error' rank0.err)"
"${torchrun[@]}" --no-python --nproc-per-node 3 --master-port "$(free_port)" \
    "$dissect" train "${job[@]}" --epochs 40 --checkpoint-every 2 --max-steps 24 --out killed --resume >/dev/null
grep -q '"step":23,' killed/log.jsonl || fail "the resumed run did not reach step 24"
echo "   resumed by 3 processes to step 24"
echo "all checks passed"
