#!/usr/bin/env python3
"""The table of bench/e2e_openclip.sh: time, CPU, memory, GPU memory and held-out retrieval of
each run, and each dissect run's wall time over open_clip_train's.

Every model is scored by the same code, open_clip's own (`open_clip_train.train.
get_clip_metrics`: the paired caption is the only hit), on the same held-out shard with
open_clip's eval transform and tokenizer, on the GPU where there is one: open_clip's last
checkpoint as it saved it, and each dissect run through `dissect export` (open_clip's state
dict and config). The costs are bench/timed.py's reports.

    python bench/e2e_summary.py OUT EPOCHS TRAIN_SAMPLES DATA
"""

import io
import json
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
    cost = json.loads(Path(path).read_text())
    if cost["status"] != 0:
        raise SystemExit(f"{' '.join(cost['command'][:3])} ... failed with status {cost['status']}")
    return cost["wall_s"], cost["cpu_s"], cost["peak_rss_mib"], cost["peak_gpu_mib"]


def held_out(data):
    pairs = {}
    for shard in sorted(data.glob("test-*.tar")):
        with tarfile.open(shard) as tar:
            for member in tar.getmembers():
                key, _, ext = member.name.partition(".")
                data = tar.extractfile(member).read()
                if ext in ("png", "jpg", "jpeg"):
                    pairs.setdefault(key, {})["image"] = Image.open(io.BytesIO(data)).convert("RGB")
                elif ext == "txt":
                    pairs.setdefault(key, {})["caption"] = data.decode()
    rows = [pairs[k] for k in sorted(pairs) if {"image", "caption"} <= pairs[k].keys()]
    return [r["image"] for r in rows], [r["caption"] for r in rows]


def metrics(model, config, images, captions):
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = model.to(device).eval()
    size = config["vision_cfg"]["image_size"]
    transform = open_clip.image_transform(size, is_train=False)
    tokenizer = open_clip.tokenizer.SimpleTokenizer(context_length=config["text_cfg"]["context_length"])
    with torch.no_grad():
        f = torch.cat([model.encode_image(torch.stack([transform(i) for i in images[at:at + 256]]).to(device),
                                          normalize=True) for at in range(0, len(images), 256)])
        g = torch.cat([model.encode_text(tokenizer(captions[at:at + 256]).to(device), normalize=True)
                       for at in range(0, len(captions), 256)])
        return get_clip_metrics(f.float(), g.float(), model.logit_scale.exp().float())


def open_clip_model(out, epochs):
    config = json.loads((out / "model.json").read_text())
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
    out, epochs, samples, data = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4])
    images, captions = held_out(data)
    print(f"{epochs} epochs of {samples} pairs; held-out {len(captions)} pairs, scored by open_clip's get_clip_metrics")
    print("| trainer | wall | per epoch | pairs/s | CPU s | peak RSS | peak GPU | I→T R@1/5/10 | T→I R@1/5/10 |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    walls = {}
    for run in RUNS:
        wall, cpu, rss, gpu = resources(out / f"cost-{run}.json")
        walls[run] = wall
        model, config = open_clip_model(out, epochs) if run == "open_clip" else dissect_model(out, run)
        m = metrics(model, config, images, captions)
        r = lambda d: "/".join(f"{100 * m[f'{d}_R@{k}']:.1f}" for k in (1, 5, 10))
        name = "open_clip_train" if run == "open_clip" else f"dissect {run}"
        gpu_cell = "–" if gpu is None else f"{gpu:.0f} MiB"
        print(f"| {name} | {wall:.0f} s | {wall / epochs:.1f} s | {epochs * samples / wall:.0f} | {cpu:.0f} | "
              f"{rss:.0f} MiB | {gpu_cell} | {r('image_to_text')} | {r('text_to_image')} |")
    for run in RUNS[1:]:
        print(f"wall time, dissect {run} / open_clip_train: {walls[run] / walls['open_clip']:.2f}")


if __name__ == "__main__":
    main()
