#!/usr/bin/env bash
# Builds stripped `dissect` and `bench_step` binaries with the `tch` feature (Burn's LibTorch
# backend) against the libtorch of a PyPI torch 2.11.0, without network access, to run here on
# the CPU (`--device tch`) or to carry to a GPU machine that has the same torch
# (`--device tch:cuda`); and `bench_loader` (the data loader alone, no LibTorch) beside them.
#
#   PYTHON=/path/to/venv/bin/python bench/build_tch.sh [OUT_DIR]     # default OUT_DIR: dist/tch
#
# torch 2.11.0 is `pip install torch==2.11.0` (the default wheel is built for CUDA 13.0 and
# runs on the CPU as well). torch-sys 0.22 expects 2.9.0; 2.11 compiles unchanged, so the
# version check is bypassed; 2.15's headers do not compile. LIBTORCH_USE_PYTORCH makes
# torch-sys take libtorch from that Python instead of downloading one.
set -euo pipefail

python=${PYTHON:-python3}
out=${1:-dist/tch}
target=${CARGO_TARGET_DIR:-target/tch}

version=$("$python" -c 'import torch; print(torch.__version__.split("+")[0])' 2>/dev/null) || {
    echo "no torch in $python: pip install torch==2.11.0 (or set PYTHON to a Python that has it)" >&2
    exit 1
}
if [ "$version" != 2.11.0 ]; then
    echo "torch $version in $python; this build needs 2.11.0 (torch-sys 0.22 does not compile against newer headers)" >&2
    exit 1
fi
torch_lib=$("$python" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')

# torch-sys runs `python` from PATH inside a virtual environment, `python3` otherwise.
export PATH="$(dirname "$python"):$PATH"
export LIBTORCH_USE_PYTORCH=1 LIBTORCH_BYPASS_VERSION_CHECK=1
export CARGO_TARGET_DIR=$target
# Rust links with --as-needed, which drops libtorch_cuda (nothing references it by name: it
# registers the CUDA device when loaded), and LibTorch would then see no GPU. Linking it again
# without --as-needed keeps it, when this torch has it. `cargo rustc` gives these flags to the
# two binaries only: in RUSTFLAGS they would reach the proc macros, which rustc then cannot load.
link=(-C "link-arg=-Wl,-rpath,$torch_lib")
if [ -e "$torch_lib/libtorch_cuda.so" ]; then
    link+=(-C link-arg=-Wl,--no-as-needed -C "link-arg=-L$torch_lib" -C link-arg=-ltorch_cuda)
fi

cargo rustc --release -p dissect-cli --bin dissect --features tch -- "${link[@]}"
cargo rustc --release -p dissect-model --example bench_step --features tch -- "${link[@]}"
cargo build --release -p dissect-data --example bench_loader

mkdir -p "$out"
strip -o "$out/dissect" "$target/release/dissect"
strip -o "$out/bench_step" "$target/release/examples/bench_step"
strip -o "$out/bench_loader" "$target/release/examples/bench_loader"

glibc=$(objdump -T "$out/dissect" | grep -o 'GLIBC_[0-9.]*' | sort -uV | tail -1)
echo "built $out/dissect, $out/bench_step and $out/bench_loader (torch $version; needs $glibc or newer on the machine that runs them)"
echo "LibTorch libraries they load: $(readelf -d "$out/dissect" | grep -o 'libtorch[a-z_]*\.so' | sort -u | tr '\n' ' ')"
echo "run them with the same torch's libraries on the library path, e.g."
echo "  LD_LIBRARY_PATH=$torch_lib $out/dissect train --device tch:cuda ..."
