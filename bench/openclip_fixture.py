#!/usr/bin/env python3
"""Parity with open_clip, the reference implementation of CLIP that dissect's models follow.

`make` builds a small random-initialised open_clip ViT CLIP and writes one safetensors file
with its state dict under open_clip's own names, a few normalised images and token rows, and
open_clip's image features, text features and logit scale for them; its metadata holds the
model-config JSON. dissect's tests (crates/model/tests/openclip.rs) load it and must give the
same features within 1e-4. CI needs no torch: the fixture is committed.

`check-export` loads a `dissect export` folder into open_clip with `load_state_dict(strict=True)`
and compares open_clip's features with the ones dissect wrote beside the weights.

    pip install torch open_clip_torch safetensors
    python bench/openclip_fixture.py make --out crates/model/tests/fixtures/openclip_vit.safetensors
    python bench/openclip_fixture.py check-export runs/example/export
"""

import argparse
import json
from pathlib import Path

import open_clip
import torch
from safetensors.torch import load_file, save_file

# A ViT CLIP small enough for a committed fixture (about 1 MB) yet with every kind of layer.
CONFIG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "head_width": 32, "mlp_ratio": 4.0, "patch_size": 8},
    "text_cfg": {"context_length": 16, "vocab_size": 512, "width": 64, "heads": 2, "layers": 2, "mlp_ratio": 4.0},
}


def build(config, seed=0):
    torch.manual_seed(seed)
    model = open_clip.model.CLIP(
        embed_dim=config["embed_dim"],
        vision_cfg=open_clip.model.CLIPVisionCfg(**config["vision_cfg"]),
        text_cfg=open_clip.model.CLIPTextCfg(**config["text_cfg"]),
        quick_gelu=False,
    )
    # open_clip zero-initialises nothing that matters here, but its projections start at the
    # same scale for every row; perturb every parameter so that a transposed or misnamed
    # tensor cannot go unnoticed.
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model.eval()


def inputs(config, rows=4, seed=1):
    g = torch.Generator().manual_seed(seed)
    side = config["vision_cfg"]["image_size"]
    images = torch.randn(rows, 3, side, side, generator=g)
    ctx, vocab = config["text_cfg"]["context_length"], config["text_cfg"]["vocab_size"]
    tokens = torch.randint(1, vocab - 1, (rows, ctx), generator=g)
    # open_clip pools the text at the highest token id (CLIP's end-of-text token): put it at
    # a different position in each row, with padding (0) after it.
    eot = torch.tensor([3, 7, ctx - 1, 5][:rows])
    for i, e in enumerate(eot):
        tokens[i, e] = vocab - 1
        tokens[i, e + 1 :] = 0
    return images, tokens, eot


def make(out):
    model = build(CONFIG)
    images, tokens, eot = inputs(CONFIG)
    with torch.no_grad():
        image_features = model.encode_image(images, normalize=True)
        text_features = model.encode_text(tokens, normalize=True)
    tensors = {k: v.contiguous() for k, v in model.state_dict().items()}
    tensors.update({
        "fixture.images": images,
        "fixture.tokens": tokens.to(torch.int64),
        "fixture.eot": eot.to(torch.int64),
        "fixture.image_features": image_features,
        "fixture.text_features": text_features,
    })
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out), metadata={"open_clip_config": json.dumps(CONFIG), "open_clip": open_clip.__version__})
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB): open_clip {open_clip.__version__}, "
          f"{sum(p.numel() for p in model.parameters())} parameters")


def check_export(folder):
    config = json.loads((folder / "open_clip_config.json").read_text())
    model = build(config)
    state = load_file(str(folder / "open_clip_model.safetensors"))
    model.load_state_dict(state, strict=True)
    probe = load_file(str(folder / "probe.safetensors"))
    with torch.no_grad():
        image_features = model.encode_image(probe["images"], normalize=True)
        text_features = model.encode_text(probe["tokens"].long(), normalize=True)
    di = (image_features - probe["image_features"]).abs().max().item()
    dt = (text_features - probe["text_features"]).abs().max().item()
    print(f"open_clip loaded {folder} strictly; max |Δ| image features {di:.2e}, text features {dt:.2e}")
    if max(di, dt) > 1e-4:
        raise SystemExit("features differ by more than 1e-4")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    m = sub.add_parser("make")
    m.add_argument("--out", type=Path, default=Path("crates/model/tests/fixtures/openclip_vit.safetensors"))
    c = sub.add_parser("check-export")
    c.add_argument("folder", type=Path)
    args = p.parse_args()
    if args.command == "make":
        make(args.out)
    else:
        check_export(args.folder)


if __name__ == "__main__":
    main()
