#!/usr/bin/env python3
"""open_clip's own trainer (`python -m open_clip_train.main`) with a model-config JSON file.

open_clip_train takes a model *name*; this registers the JSON given as `--model-config PATH`
under its file stem first (open_clip.add_model_config), then runs open_clip_train.main with
the remaining arguments, `--model` set to that stem.

    python bench/openclip_train.py --model-config bench/tiny-clip.json --train-data ... --epochs 5
"""

import sys
from pathlib import Path

import open_clip
from open_clip_train.main import main


def split_model_config(argv):
    if "--model-config" not in argv:
        raise SystemExit("--model-config PATH is required")
    at = argv.index("--model-config")
    path = Path(argv[at + 1])
    rest = argv[:at] + argv[at + 2:]
    return path, rest


if __name__ == "__main__":
    config, rest = split_model_config(sys.argv[1:])
    open_clip.add_model_config(config)
    main(rest + ["--model", config.stem])
