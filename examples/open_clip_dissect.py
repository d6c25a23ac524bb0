#!/usr/bin/env python3
"""DISSect in an open_clip training loop, with the `dissect_select` package.

Each step: a no-grad scoring pass over the whole batch (CLIPScore = 100·cos(image, text), or
per-sample losses for the loss strategies), `Selector.select` with the rows' stable dataset
indices, then open_clip's contrastive loss and the backward pass on the kept rows only. The
selector's state is saved with every checkpoint (`.dss` next to the `.pt`, its RNG position
inside it), so `--resume` continues with the very selections of an uninterrupted run.

Data: WebDataset shards of the built-in noisy-shapes benchmark, as written by

    dissect data generate noisy-shapes --out DIR --noise-rate 0.4

(`DIR/dataset.json`, `train-*.tar`/`test-*.tar` with `{key}.png`, `{key}.txt` and
`{key}.json` = {"noisy": bool, ...}).

Needs `pip install torch open_clip_torch` and `pip install ./crates/py`. The run recorded in
docs/results.md (about 4 minutes on one CPU thread):

    dissect data generate noisy-shapes --out data/noisy-shapes-4k --noise-rate 0.4 \\
        --train-size 4096 --test-size 1000
    python examples/open_clip_dissect.py --data data/noisy-shapes-4k \\
        --strategies dissect-momentum,random,full --epochs 12 --warmup-epochs 4 \\
        --warmup-rows all --threads 1 --out runs/open_clip_dissect

It prints, for each strategy, the fraction of noisy pairs among the kept rows per epoch and
image-to-text / text-to-image R@1 on the clean test split at the end, and writes them to
OUT/results.json. On a CPU that other jobs share, prefer `--threads 1` (or set
OMP_WAIT_POLICY=PASSIVE): PyTorch's spinning OpenMP threads made a step more than 20x slower here.
"""

import argparse
import io
import json
import math
import re
import tarfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

import dissect_select
import open_clip

# open_clip's contrastive loss (symmetric InfoNCE) and CLIP normalisation.
CLIP_LOSS = open_clip.loss.ClipLoss()
MEAN = torch.tensor(open_clip.constants.OPENAI_DATASET_MEAN).view(1, 3, 1, 1)
STD = torch.tensor(open_clip.constants.OPENAI_DATASET_STD).view(1, 3, 1, 1)


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, required=True, help="noisy-shapes directory (dataset.json + shards)")
    p.add_argument("--strategies", default="dissect-momentum,random", help="comma-separated, run one after another")
    p.add_argument("--rate", type=float, default=0.3, help="fraction of each batch trained on")
    p.add_argument("--warmup-epochs", type=int, default=2)
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--warmup-rows", default="random", choices=["random", "all"])
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=Path("runs/open_clip_dissect"))
    p.add_argument("--resume", action="store_true", help="continue each strategy from its last checkpoint")
    return p.parse_args()


# --- data -------------------------------------------------------------------------------------


def expand(pattern):
    """`train-{000000..000002}.tar` -> the three names (zero padding kept), as dissect does."""
    m = re.search(r"\{(\d+)\.\.(\d+)\}", pattern)
    if not m:
        return [pattern]
    width = len(m.group(1))
    first, last = int(m.group(1)), int(m.group(2))
    return [pattern[: m.start()] + str(i).zfill(width) + pattern[m.end() :] for i in range(first, last + 1)]


def read_split(directory, pattern):
    """Images (N,3,H,W float), captions, noisy flags and stable global indices of one split.

    A sample is the run of tar members sharing a key; its global index is its shard's
    `first_index` (from the split's `.index.json`) plus its position in the shard.
    """
    shards = expand(pattern)
    index_files = list(directory.glob("*.index.json"))
    first_index = {}
    for f in index_files:
        for entry in json.loads(f.read_text())["shards"]:
            first_index[entry["shard"]] = entry["first_index"]
    images, captions, noisy, indices = [], [], [], []
    for shard in shards:
        samples = {}
        order = []
        with tarfile.open(directory / shard) as tar:
            for member in tar:
                if not member.isfile():
                    continue
                key, _, ext = member.name.partition(".")
                if key not in samples:
                    samples[key] = {}
                    order.append(key)
                samples[key][ext] = tar.extractfile(member).read()
        for position, key in enumerate(order):
            s = samples[key]
            meta = json.loads(s.get("json", b"{}"))
            image = Image.open(io.BytesIO(s["png"])).convert("RGB")
            images.append(np.asarray(image))
            captions.append(s["txt"].decode().strip())
            noisy.append(bool(meta.get("noisy", False)))
            indices.append(first_index.get(shard, 0) + position)
    pixels = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255.0
    return (pixels - MEAN) / STD, captions, torch.tensor(noisy), torch.tensor(indices, dtype=torch.int64)


def load_dataset(directory):
    manifest = json.loads((directory / "dataset.json").read_text())
    train = read_split(directory, manifest["train"])
    test = read_split(directory, manifest["test"])
    return manifest, train, test


# --- model and training -----------------------------------------------------------------------


def tiny_clip(seed):
    """A small open_clip CLIP: 32x32 images in 4x4 patches, 2-layer towers of width 64."""
    torch.manual_seed(seed)
    vision = open_clip.model.CLIPVisionCfg(layers=2, width=64, head_width=32, patch_size=4, image_size=32)
    text = open_clip.model.CLIPTextCfg(context_length=32, vocab_size=49408, width=64, heads=2, layers=2)
    return open_clip.model.CLIP(embed_dim=64, vision_cfg=vision, text_cfg=text)


def score_batch(model, images, tokens, needs):
    """The scoring pass: no gradients, every row of the batch (skipped for full and random)."""
    if not needs:
        return {}
    with torch.no_grad():
        f, g, scale = model(images, tokens)  # normalised features, exp(logit_scale)
        scores = {}
        if "clip_scores" in needs:
            scores["clip_scores"] = (100.0 * (f * g).sum(-1)).numpy()
        if "losses" in needs:
            logits = scale * f @ g.T
            labels = torch.arange(len(f))
            per_row = F.cross_entropy(logits, labels, reduction="none")
            per_column = F.cross_entropy(logits.T, labels, reduction="none")
            scores["losses"] = (0.5 * (per_row + per_column)).numpy()
    return scores


def recall_at_1(model, images, tokens, batch=250):
    """Image-to-text and text-to-image R@1 on the clean test split, in %."""
    model.eval()
    with torch.no_grad():
        f = torch.cat([model.encode_image(images[i : i + batch], normalize=True) for i in range(0, len(images), batch)])
        g = torch.cat([model.encode_text(tokens[i : i + batch], normalize=True) for i in range(0, len(tokens), batch)])
    model.train()
    sim = f @ g.T
    target = torch.arange(len(f))
    image_to_text = (sim.argmax(1) == target).float().mean().item()
    text_to_image = (sim.argmax(0) == target).float().mean().item()
    return 100.0 * image_to_text, 100.0 * text_to_image


def optimiser(model, lr, total_steps):
    """AdamW with a linear warm-up, then a cosine decay to 0, stepped once per step."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.1, betas=(0.9, 0.98), eps=1e-6)
    warmup = min(50, total_steps // 10)

    def lr_factor(s):
        if s < warmup:
            return (s + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (s - warmup) / (total_steps - warmup)))

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)


def train_step(model, optimizer, schedule, selector, x, t, indices, epoch, step):
    """Score every row without gradients, select, then train on the kept rows only."""
    scores = score_batch(model, x, t, selector.needs)
    kept = torch.from_numpy(selector.select(indices.numpy(), epoch=epoch, step=step, **scores))
    f, g, scale = model(x[kept], t[kept])
    loss = CLIP_LOSS(f, g, scale)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    schedule.step()
    with torch.no_grad():
        model.logit_scale.clamp_(0, math.log(100))
    return kept, loss.item()


def save_checkpoint(out, model, optimizer, schedule, selector, epoch, history):
    """Model and optimiser in a `.pt`, the selector's score state in a `.dss` beside it, and
    the selector's RNG position inside the `.pt`."""
    selector.save(out / "checkpoint.dss")  # also flushes the visit records
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(),
             "selector_rng": selector.get_rng_state(), "epoch": epoch, "history": history,
             "records_bytes": (out / "visits.dsv").stat().st_size}
    torch.save(state, out / "checkpoint.pt")


def load_checkpoint(out, model, optimizer, schedule, selector):
    """Restore what `save_checkpoint` wrote; returns the history and the epoch to start at."""
    state = torch.load(out / "checkpoint.pt", weights_only=False)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    schedule.load_state_dict(state["schedule"])
    selector.load(out / "checkpoint.dss")
    selector.set_rng_state(state["selector_rng"])
    # Drop the records written after the checkpoint: the resumed run writes them again.
    with open(out / "visits.dsv", "r+b") as records:
        records.truncate(state["records_bytes"])
    return state["history"], state["epoch"] + 1


def train(args, strategy, train_split, test_split, tokenizer):
    images, captions, noisy, indices = train_split
    tokens = tokenizer(captions)
    out = args.out / strategy
    out.mkdir(parents=True, exist_ok=True)
    steps_per_epoch = len(indices) // args.batch
    model = tiny_clip(args.seed)
    optimizer, schedule = optimiser(model, args.lr, steps_per_epoch * args.epochs)
    # The dissect trainer seeds its selection RNG with seed ^ 0x0D155EC7; do the same here.
    selector = dissect_select.Selector(
        strategy, args.rate, int(indices.max()) + 1, warmup_epochs=args.warmup_epochs, momentum=args.momentum,
        seed=args.seed ^ 0x0D155EC7, warmup_rows=args.warmup_rows,
    )
    history = {"strategy": strategy, "kept_noise": [], "kept_rows": [], "epoch_seconds": []}
    start_epoch = 0
    resume = args.resume and (out / "checkpoint.pt").exists()
    if resume:
        history, start_epoch = load_checkpoint(out, model, optimizer, schedule, selector)
    selector.open_records(out / "visits.dsv", append=resume)

    step = start_epoch * steps_per_epoch
    for epoch in range(start_epoch, args.epochs):
        began = time.perf_counter()
        # The batch order depends on (seed, epoch) only, so a resumed run sees the same batches.
        order = torch.randperm(len(indices), generator=torch.Generator().manual_seed(args.seed * 1000 + epoch))
        kept_rows = kept_noisy = 0
        for b in range(steps_per_epoch):
            rows = order[b * args.batch : (b + 1) * args.batch]
            kept, loss = train_step(model, optimizer, schedule, selector, images[rows], tokens[rows], indices[rows],
                                    epoch, step)
            kept_rows += len(kept)
            kept_noisy += int(noisy[rows][kept].sum())
            step += 1
        history["kept_noise"].append(kept_noisy / kept_rows)
        history["kept_rows"].append(kept_rows)
        history["epoch_seconds"].append(time.perf_counter() - began)
        print(f"{strategy:>17} epoch {epoch}: loss {loss:.3f}, kept {kept_rows} rows, "
              f"{100 * kept_noisy / kept_rows:.1f}% noisy ({history['epoch_seconds'][-1]:.0f} s)", flush=True)
        save_checkpoint(out, model, optimizer, schedule, selector, epoch, history)
    selector.close_records()
    test_images, test_captions, _, _ = test_split
    history["i2t_r1"], history["t2i_r1"] = recall_at_1(model, test_images, tokenizer(test_captions))
    return history


def main():
    args = parse_args()
    torch.set_num_threads(args.threads)
    manifest, train_split, test_split = load_dataset(args.data)
    noisy = train_split[2]
    print(f"{manifest['name']}: {len(noisy)} training pairs ({100 * noisy.float().mean():.1f}% noisy), "
          f"{len(test_split[1])} clean test pairs")
    tokenizer = open_clip.tokenizer.SimpleTokenizer(context_length=32)
    results = []
    for strategy in args.strategies.split(","):
        began = time.perf_counter()
        history = train(args, strategy.strip(), train_split, test_split, tokenizer)
        history["wall_seconds"] = time.perf_counter() - began
        results.append(history)
    (args.out / "results.json").write_text(json.dumps(results, indent=2))

    print(f"\n| strategy | kept noisy % per epoch | I→T R@1 | T→I R@1 | wall (s) |")
    print("|---|---|---:|---:|---:|")
    for h in results:
        noise = " ".join(f"{100 * v:.1f}" for v in h["kept_noise"])
        print(f"| {h['strategy']} | {noise} | {h['i2t_r1']:.1f} | {h['t2i_r1']:.1f} | {h['wall_seconds']:.0f} |")


if __name__ == "__main__":
    main()
