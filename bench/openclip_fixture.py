#!/usr/bin/env python3
"""Parity with open_clip, the reference implementation of CLIP that dissect's models follow.

`make` builds two small random-initialised open_clip CLIPs, one with a ViT image tower and one
with a ModifiedResNet, and writes a safetensors file for each with its state dict under
open_clip's own names (BatchNorm running statistics included), a few normalised images and
token rows, and open_clip's image and text features for them; its metadata holds the
model-config JSON. For the ResNet it also runs the image tower once in training mode and keeps
those features and the running statistics that pass leaves behind. dissect's tests
(crates/model/tests/openclip.rs) load them and must give the same numbers within 1e-4. CI
needs no torch: the fixtures are committed.

A third fixture has QuickGELU (`"quick_gelu": true`, as OpenAI's weights and open_clip's
`-quickgelu` models); it is also written as PyTorch checkpoints the way users have them: an
open_clip_train checkpoint (`{"epoch", "name", "state_dict"}` with DDP's `module.` prefix) and a
plain state dict (`open_clip_pytorch_model.bin`, as models are published), so that `--init`
is tested on both without Python.

`check-export` loads a `dissect export` folder into open_clip with `load_state_dict(strict=True)`
and compares open_clip's features with the ones dissect wrote beside the weights.

    pip install torch open_clip_torch safetensors
    python bench/openclip_fixture.py make --out crates/model/tests/fixtures
    python bench/openclip_fixture.py check-export runs/example/export
"""

import argparse
import json
from pathlib import Path

import open_clip
import torch
from safetensors.torch import load_file, save_file

# CLIPs small enough for committed fixtures (about 1 MB and 0.6 MB) yet with every kind of
# layer: the ResNet's first stage has a block with and one without a downsampling shortcut,
# and its 64 px input leaves a 2 x 2 map for the attention pool.
CONFIGS = {
    "openclip_vit.safetensors": {
        "embed_dim": 32,
        "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "head_width": 32, "mlp_ratio": 4.0, "patch_size": 8},
        "text_cfg": {"context_length": 16, "vocab_size": 512, "width": 64, "heads": 2, "layers": 2, "mlp_ratio": 4.0},
    },
    "openclip_resnet.safetensors": {
        "embed_dim": 32,
        "vision_cfg": {"image_size": 64, "layers": [2, 1, 1, 1], "width": 4, "head_width": 32, "patch_size": None},
        "text_cfg": {"context_length": 16, "vocab_size": 512, "width": 32, "heads": 2, "layers": 1, "mlp_ratio": 4.0},
    },
    "openclip_vit_quickgelu.safetensors": {
        "embed_dim": 32,
        "quick_gelu": True,
        "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "head_width": 32, "mlp_ratio": 4.0, "patch_size": 8},
        "text_cfg": {"context_length": 16, "vocab_size": 512, "width": 64, "heads": 2, "layers": 2, "mlp_ratio": 4.0},
    },
}


def build(config, seed=0):
    torch.manual_seed(seed)
    model = open_clip.model.CLIP(
        embed_dim=config["embed_dim"],
        vision_cfg=open_clip.model.CLIPVisionCfg(**config["vision_cfg"]),
        text_cfg=open_clip.model.CLIPTextCfg(**config["text_cfg"]),
        quick_gelu=config.get("quick_gelu", False),
    )
    # open_clip zero-initialises nothing that matters here, but its projections start at the
    # same scale for every row; perturb every parameter so that a transposed or misnamed
    # tensor cannot go unnoticed.
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
        # BatchNorm must be read from its running statistics, not from their fresh values.
        for name, b in model.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(0.1 * torch.randn_like(b))
            elif name.endswith("running_var"):
                b.copy_(0.5 + torch.rand_like(b))
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


def make(folder, only=None):
    for name, config in CONFIGS.items():
        if only is None or name in only:
            make_one(folder / name, config)
            if config.get("quick_gelu"):
                write_pytorch_checkpoints(folder, name, config)


def write_pytorch_checkpoints(folder, name, config):
    """The same weights as PyTorch files: a training checkpoint and a bare state dict."""
    state = {k: v for k, v in build(config).state_dict().items() if not k.endswith("num_batches_tracked")}
    stem = name.removesuffix(".safetensors")
    checkpoint = {"epoch": 1, "name": "fixture", "state_dict": {f"module.{k}": v for k, v in state.items()}}
    torch.save(checkpoint, folder / f"{stem}_epoch_1.pt")
    torch.save(state, folder / f"{stem}_open_clip_pytorch_model.bin")
    print(f"wrote {stem}_epoch_1.pt and {stem}_open_clip_pytorch_model.bin")


def make_one(out, config):
    model = build(config)
    images, tokens, eot = inputs(config)
    with torch.no_grad():
        image_features = model.encode_image(images, normalize=True)
        text_features = model.encode_text(tokens, normalize=True)
    # The weights as they are before the training-mode pass below (copies: that pass updates
    # the running statistics in place).
    state = model.state_dict().items()
    tensors = {k: v.detach().clone().contiguous() for k, v in state if not k.endswith("num_batches_tracked")}
    tensors.update({
        "fixture.images": images,
        "fixture.tokens": tokens.to(torch.int64),
        "fixture.eot": eot.to(torch.int64),
        "fixture.image_features": image_features,
        "fixture.text_features": text_features,
    })
    if isinstance(config["vision_cfg"]["layers"], list):
        # One training-mode pass: features from the batch's statistics, and the running
        # statistics it leaves (momentum 0.1, unbiased variance).
        model.visual.train()
        with torch.no_grad():
            tensors["fixture.train_image_features"] = model.encode_image(images, normalize=True)
        for k, v in model.visual.state_dict().items():
            if k.endswith("running_mean") or k.endswith("running_var"):
                tensors[f"fixture.after_train.visual.{k}"] = v.contiguous().clone()
        model.eval()
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out), metadata={"open_clip_config": json.dumps(config), "open_clip": open_clip.__version__})
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
    m.add_argument("--out", type=Path, default=Path("crates/model/tests/fixtures"), help="folder for the fixtures")
    m.add_argument("--only", nargs="*", help="fixture file names to write (default: all)")
    c = sub.add_parser("check-export")
    c.add_argument("folder", type=Path)
    args = p.parse_args()
    if args.command == "make":
        make(args.out, args.only)
    else:
        check_export(args.folder)


if __name__ == "__main__":
    main()
