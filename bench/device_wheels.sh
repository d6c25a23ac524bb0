#!/usr/bin/env bash
# Downloads the Python packages bench/device.sh needs that the GPU machine's image lacks
# (open_clip_torch with its trainer, webdataset and their pure-Python needs) as wheels for its
# Python 3.12, into target/device-wheels (or the folder given), to be carried there: that
# machine reaches no package registry. torch, torchvision, timm, pandas, regex and
# nvidia-ml-py are already in its image.
#
#   bench/device_wheels.sh [OUT]        # PYTHON=... names the pip's Python (default python3)
set -euo pipefail
out=${1:-target/device-wheels}
"${PYTHON:-python3}" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_17_x86_64 -d "$out" \
    open_clip_torch==3.3.0 webdataset==0.2.86 braceexpand==0.1.7 ftfy==6.3.1 wcwidth==0.9.4
ls "$out"
