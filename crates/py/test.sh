#!/usr/bin/env bash
# Build the dissect_select wheel, install it into a virtual environment and run the pytest
# suite. Everything comes from PyPI (maturin, numpy, pytest) and crates.io.
#
#   crates/py/test.sh [PYTEST ARGS...]
#
# PYTHON picks the interpreter for a new environment (default python3); DISSECT_PY_VENV
# where it lives (default crates/py/.venv, reused between runs).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="${DISSECT_PY_VENV:-$here/.venv}"

if [ ! -x "$venv/bin/python" ]; then
    "${PYTHON:-python3}" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "maturin>=1.9,<2" "numpy>=1.21" pytest

# Its own workspace, so its own target folder; under the root's ignored target/ by default.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target/py}"
wheels="$(mktemp -d)"
trap 'rm -rf "$wheels"' EXIT
"$venv/bin/maturin" build --release --quiet --manifest-path "$here/Cargo.toml" --interpreter "$venv/bin/python" --out "$wheels"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --force-reinstall --no-deps "$wheels"/dissect_select-*.whl

# The Rust reference the equality test compares with, built here rather than inside pytest.
cargo build --release --quiet --example select_file --manifest-path "$here/Cargo.toml"
export DISSECT_SELECT_REFERENCE="$CARGO_TARGET_DIR/release/examples/select_file"

# pytest exits non-zero on a failure and with 5 when it collected no test.
cd "$here"
"$venv/bin/python" -m pytest tests -p no:cacheprovider "$@"
