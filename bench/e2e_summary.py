#!/usr/bin/env python3
"""The table of bench/e2e_openclip.sh: time, CPU, memory and held-out retrieval of each run.

Every model is scored by the same code, open_clip's own (`open_clip_train.train.
get_clip_metrics`: the paired caption is the only hit), on the same held-out shard with
open_clip's eval transform and tokenizer: open_clip's last checkpoint as it saved it, and
each dissect run through `dissect export` (open_clip's state dict and config).

    python bench/e2e_summary.py OUT EPOCHS TRAIN_SAMPLES
"""

import io
import json
import re
import sys
import tarfile
from pathlib import Path

import open_clip
import torch
from open_clip_train.train import get_clip_metrics
from PIL import Image
from safetensors.torch import load_file

RUNS = ["open_clip", "full", "dissect-momentum"]


def resources(path):
    text = Path(path).read_text()
    field = lambda name: re.search(rf"{re.escape(name)}: (.+)", text).group(1).strip()
    parts = [float(p) for p in field("Elapsed (wall clock) time (h:mm:ss or m:ss)").split(":")]
    wall = sum(p * 60 ** i for i, p in enumerate(reversed(parts)))
    cpu = float(field("User time (seconds)")) + float(field("System time (seconds)"))
    return wall, cpu, int(field("Maximum resident set size (kbytes)")) / 1024


def held_out(out):
    pairs = {}
    for shard in sorted((out / "data").glob("test-*.tar")):
        with tarfile.open(shard) as tar:
            for member in tar.getmembers():
                key, _, ext = member.name.partition(".")
                data = tar.extractfile(member).read()
                if ext == "png":
                    pairs.setdefault(key, {})["image"] = Image.open(io.BytesIO(data)).convert("RGB")
                elif ext == "txt":
                    pairs.setdefault(key, {})["caption"] = data.decode()
    rows = [pairs[k] for k in sorted(pairs) if {"image", "caption"} <= pairs[k].keys()]
    return [r["image"] for r in rows], [r["caption"] for r in rows]


def metrics(model, config, images, captions):
    model.eval()
    size = config["vision_cfg"]["image_size"]
    transform = open_clip.image_transform(size, is_train=False)
    tokenizer = open_clip.tokenizer.SimpleTokenizer(context_length=config["text_cfg"]["context_length"])
    with torch.no_grad():
        f = model.encode_image(torch.stack([transform(i) for i in images]), normalize=True)
        g = model.encode_text(tokenizer(captions), normalize=True)
        return get_clip_metrics(f, g, model.logit_scale.exp())


def open_clip_model(out, epochs):
    config = json.loads(Path("bench/tiny-clip.json").read_text())
    model = open_clip.model.CLIP(**config)
    state = torch.load(out / "open_clip" / "checkpoints" / f"epoch_{epochs}.pt", map_location="cpu")["state_dict"]
    model.load_state_dict({k.removeprefix("module."): v for k, v in state.items()}, strict=True)
    return model, config


def dissect_model(out, run):
    export = out / run / "export"
    config = json.loads((export / "open_clip_config.json").read_text())
    model = open_clip.model.CLIP(**config)
    model.load_state_dict(load_file(str(export / "open_clip_model.safetensors")), strict=True)
    return model, config


def main():
    out, epochs, samples = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    images, captions = held_out(out)
    print(f"{epochs} epochs of {samples} pairs; held-out {len(captions)} pairs, scored by open_clip's get_clip_metrics")
    print("| trainer | wall | per epoch | samples/s | CPU s | peak RSS | I→T R@1/5/10 | T→I R@1/5/10 |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for run in RUNS:
        wall, cpu, rss = resources(out / f"time-{run}.txt")
        model, config = open_clip_model(out, epochs) if run == "open_clip" else dissect_model(out, run)
        m = metrics(model, config, images, captions)
        r = lambda d: "/".join(f"{100 * m[f'{d}_R@{k}']:.1f}" for k in (1, 5, 10))
        name = "open_clip_train" if run == "open_clip" else f"dissect {run}"
        print(f"| {name} | {wall:.0f} s | {wall / epochs:.1f} s | {epochs * samples / wall:.0f} | {cpu:.0f} | "
              f"{rss:.0f} MB | {r('image_to_text')} | {r('text_to_image')} |")


if __name__ == "__main__":
    main()
