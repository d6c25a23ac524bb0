#!/usr/bin/env bash
# The tests that need LibTorch: a virtual environment with PyPI's torch 2.11.0 (and the CUDA
# header packages that let the build compile NCCL in), the `tch` build of bench/build_tch.sh,
# the c10d binding's tests between real processes (crates/dist/tests/gloo.rs), jobs of 2 and 3
# processes under torchrun against one process (crates/cli/tests/processes.sh), and amp_bf16
# against fp32 (crates/cli/tests/precision.sh).
#
#   crates/cli/tests/tch.sh
#
# DISSECT_TCH_VENV: where the environment lives (default target/tch-venv, reused between runs).
# No GPU is needed: the CUDA wheel runs on the CPU, and the jobs use Gloo.
set -euo pipefail
root="$(cd "$(dirname "$0")/../../.." && pwd)"
cd "$root"
venv="${DISSECT_TCH_VENV:-$root/target/tch-venv}"

if [ ! -x "$venv/bin/python" ]; then
    "${PYTHON:-python3}" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    torch==2.11.0 'nvidia-cuda-crt==13.0.*' 'nvidia-cuda-cccl==13.0.*'

PYTHON="$venv/bin/python" bench/build_tch.sh target/tch/dist

# The tests find libtorch as the build script does: as torch-sys does, with its variables.
export PATH="$venv/bin:$PATH" LIBTORCH_USE_PYTORCH=1 LIBTORCH_BYPASS_VERSION_CHECK=1
# The code behind the feature, which the default build's clippy does not see.
CARGO_TARGET_DIR=target/tch cargo clippy --release -p dissect-dist -p dissect-model -p dissect-cli \
    --features dissect-cli/tch --all-targets -- -D warnings
CARGO_TARGET_DIR=target/tch cargo test --release -p dissect-dist --features c10d
# The model's LibTorch kernels and amp_bf16 (unit tests), and the model on LibTorch's CPU
# against flex (crates/model/tests/tch.rs).
LD_LIBRARY_PATH="$("$venv/bin/python" -c 'import os, torch; print(os.path.dirname(torch.__file__))')/lib" \
    CARGO_TARGET_DIR=target/tch cargo test --release -p dissect-model --features tch --lib --test tch

crates/cli/tests/processes.sh target/tch/dist/dissect "$venv/bin/python"
crates/cli/tests/precision.sh target/tch/dist/dissect "$venv/bin/python"
