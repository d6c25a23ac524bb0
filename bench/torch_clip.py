#!/usr/bin/env python3
"""The CLIP model of crates/model (dissect-model) in PyTorch, timed like
`cargo run --release -p dissect-model --example bench_step`.

Same dimensions, pre-LayerNorm blocks, fused qkv attention, exact GELU, causal text
attention, features at the end-of-text position, bias-free patch embedding and projections,
learnable temperature; AdamW (0.9, 0.98, eps 1e-6, decay 0.2 by open_clip_train's rule: every
tensor of 2+ dimensions whose name has no "bn", "ln", "bias" or "logit_scale"), global
grad-norm clipping at 1.0, temperature clamp. The ResNet presets (`rn-tiny`, `rn50`) take
open_clip's own `ModifiedResNet` as the image tower (`pip install open_clip_torch`), trained
in train mode and scored in eval mode, as dissect does. The parameter count is printed so it
can be checked against the Burn run.

    bench/.venv/bin/python bench/torch_clip.py --preset tiny --batch 256 --steps 5 --threads 2
"""

import argparse
import math
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

PRESETS = {
    "micro": dict(image_size=16, patch_size=4, vision_width=64, vision_layers=2, vision_heads=2,
                  text_width=64, text_layers=2, text_heads=2, context_length=16, vocab_size=512,
                  embed_dim=64),
    "tiny": dict(image_size=32, patch_size=4, vision_width=128, vision_layers=4, vision_heads=4,
                 text_width=128, text_layers=4, text_heads=4, context_length=16, vocab_size=1024,
                 embed_dim=128),
    "small": dict(image_size=64, patch_size=8, vision_width=256, vision_layers=6, vision_heads=4,
                  text_width=256, text_layers=6, text_heads=4, context_length=32, vocab_size=8192,
                  embed_dim=256),
    "vit-b-32": dict(image_size=224, patch_size=32, vision_width=768, vision_layers=12,
                     vision_heads=12, text_width=512, text_layers=12, text_heads=8,
                     context_length=77, vocab_size=49408, embed_dim=512),
    # ResNet image towers: open_clip's ModifiedResNet (stage depths, stem width, pool heads).
    "rn-tiny": dict(image_size=32, resnet_layers=[1, 1, 1, 1], resnet_width=16, resnet_heads=8,
                    text_width=128, text_layers=4, text_heads=4, context_length=16, vocab_size=1024,
                    embed_dim=128),
    "rn50": dict(image_size=224, resnet_layers=[3, 4, 6, 3], resnet_width=64, resnet_heads=32,
                 text_width=512, text_layers=12, text_heads=8, context_length=77, vocab_size=49408,
                 embed_dim=1024),
}


class Attention(nn.Module):
    def __init__(self, width, heads):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.out = nn.Linear(width, width)

    def forward(self, x, causal):
        b, l, d = x.shape
        qkv = self.qkv(x).reshape(b, l, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        ctx = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2], is_causal=causal)
        return self.out(ctx.transpose(1, 2).reshape(b, l, d))


class Block(nn.Module):
    def __init__(self, width, heads, ratio=4):
        super().__init__()
        self.ln_1 = nn.LayerNorm(width)
        self.attn = Attention(width, heads)
        self.ln_2 = nn.LayerNorm(width)
        self.mlp_fc = nn.Linear(width, ratio * width)
        self.mlp_proj = nn.Linear(ratio * width, width)

    def forward(self, x, causal):
        x = x + self.attn(self.ln_1(x), causal)
        return x + self.mlp_proj(F.gelu(self.mlp_fc(self.ln_2(x))))


class Clip(nn.Module):
    def __init__(self, c):
        super().__init__()
        tw, e = c["text_width"], c["embed_dim"]
        self.resnet = None
        if "resnet_layers" in c:
            from open_clip.modified_resnet import ModifiedResNet

            self.resnet = ModifiedResNet(c["resnet_layers"], e, c["resnet_heads"], c["image_size"], c["resnet_width"])
        else:
            self.p = c["patch_size"]
            vw = c["vision_width"]
            n = (c["image_size"] // self.p) ** 2
            self.patch_embed = nn.Linear(3 * self.p * self.p, vw, bias=False)
            self.class_embedding = nn.Parameter(vw ** -0.5 * torch.randn(vw))
            self.vis_pos = nn.Parameter(vw ** -0.5 * torch.randn(n + 1, vw))
            self.ln_pre = nn.LayerNorm(vw)
            self.vis_blocks = nn.ModuleList(Block(vw, c["vision_heads"]) for _ in range(c["vision_layers"]))
            self.ln_post = nn.LayerNorm(vw)
            self.vis_proj = nn.Linear(vw, e, bias=False)
        self.token_embedding = nn.Embedding(c["vocab_size"], tw)
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        self.txt_pos = nn.Parameter(0.01 * torch.randn(c["context_length"], tw))
        self.txt_blocks = nn.ModuleList(Block(tw, c["text_heads"]) for _ in range(c["text_layers"]))
        self.ln_final = nn.LayerNorm(tw)
        self.text_projection = nn.Linear(tw, e, bias=False)
        self.logit_scale = nn.Parameter(torch.tensor([math.log(1 / 0.07)]))

    def encode_image(self, img):
        if self.resnet is not None:
            return F.normalize(self.resnet(img), dim=-1)
        b, ch, h, w = img.shape
        p = self.p
        x = img.reshape(b, ch, h // p, p, w // p, p).permute(0, 2, 4, 1, 3, 5)
        x = self.patch_embed(x.reshape(b, (h // p) * (w // p), ch * p * p))
        x = torch.cat([self.class_embedding.expand(b, 1, -1), x], 1) + self.vis_pos
        x = self.ln_pre(x)
        for blk in self.vis_blocks:
            x = blk(x, False)
        return F.normalize(self.vis_proj(self.ln_post(x[:, 0])), dim=-1)

    def encode_text(self, tokens, eot):
        l = tokens.shape[1]
        x = self.token_embedding(tokens) + self.txt_pos[:l]
        for blk in self.txt_blocks:
            x = blk(x, True)
        x = x[torch.arange(x.shape[0], device=x.device), eot]
        return F.normalize(self.text_projection(self.ln_final(x)), dim=-1)

    def forward(self, img, tokens, eot):
        return self.encode_image(img), self.encode_text(tokens, eot), self.logit_scale


def per_sample_loss(f, g, t):
    s = t.exp() * f @ g.t()
    diag = torch.arange(s.shape[0], device=s.device)
    return -0.5 * (s.log_softmax(1)[diag, diag] + s.log_softmax(0)[diag, diag])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--ratio", type=float, default=0.3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu", help="cpu or cuda[:N] (every timing ends in a host read, so a GPU is synchronised)")
    ap.add_argument("--precision", default="fp32", choices=["fp32", "amp_bf16"],
                    help="amp_bf16: forward and loss under torch.autocast(bfloat16), as open_clip_train's default")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    c = PRESETS[a.preset]
    b, k = a.batch, max(1, math.floor(a.batch * a.ratio))
    dev = torch.device(a.device)
    model = Clip(c).to(dev)
    def decayed(n, p):
        return p.ndim >= 2 and not any(word in n for word in ("bn", "ln", "bias", "logit_scale"))

    decay = [p for n, p in model.named_parameters() if decayed(n, p)]
    rest = [p for n, p in model.named_parameters() if not decayed(n, p)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.2},
                             {"params": rest, "weight_decay": 0.0}],
                            lr=1e-4, betas=(0.9, 0.98), eps=1e-6)
    nparams = sum(p.numel() for p in model.parameters())
    print(f"pytorch {torch.__version__} on {dev}: preset {a.preset} precision {a.precision} params {nparams} "
          f"batch {b} k {k} steps {a.steps} threads {torch.get_num_threads()}")
    amp = a.precision == "amp_bf16"

    def autocast():
        # open_clip_train's amp_bf16: the model and the loss under autocast.
        return torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=amp)

    img = (torch.rand(b, 3, c["image_size"], c["image_size"]) * 2 - 1).to(dev)
    l = c["context_length"]
    tok = torch.randint(1, c["vocab_size"], (b, l)).to(dev)
    eot = torch.randint(l // 2, l, (b,)).to(dev)

    def train(idx=None):
        model.train()
        i, t, e = (img, tok, eot) if idx is None else (img[idx], tok[idx], eot[idx])
        with autocast():
            f, g, s = model(i, t, e)
            loss = per_sample_loss(f, g, s).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        return loss.item()

    def score():
        model.eval()  # BatchNorm on its running statistics, as dissect scores
        with torch.no_grad(), autocast():
            f, g, s = model(img, tok, eot)
            return (100 * (f * g).sum(1)).float().tolist(), per_sample_loss(f, g, s).float().tolist()

    full, sc, sel = [], [], []
    for rnd in range(a.steps + 1):
        t0 = time.perf_counter()
        loss = train()
        t1 = time.perf_counter()
        score()
        t2 = time.perf_counter()
        _, per = score()
        order = sorted(range(b), key=lambda j: (-per[j], j))[:k]
        train(torch.tensor(order, device=dev))
        t3 = time.perf_counter()
        if rnd > 0:
            full.append(t1 - t0)
            sc.append(t2 - t1)
            sel.append(t3 - t2)
        print(f"round {rnd}: full {t1 - t0:.3f}s score {t2 - t1:.3f}s selected {t3 - t2:.3f}s "
              f"loss {loss:.4f}")
    f, s, se = statistics.median(full), statistics.median(sc), statistics.median(sel)
    r = k / b
    print(f"median full step      {f:.3f} s  ({b / f:.1f} samples/s)")
    print(f"median scoring pass   {s:.3f} s  (score/full {s / f:.3f})")
    print(f"median selected step  {se:.3f} s")
    print(f"selected/full {se / f:.3f}  vs cost model (1+3r)/3 = {(1 + 3 * r) / 3:.3f} at r = {r:.3f}")
    u = statistics.median(time_update(model, opt, autocast, (img, tok, eot), a.steps))
    print(f"median update         {u:.4f} s  (update/full {u / f:.3f}, "
          f"{sum(1 for _ in model.parameters())} parameter tensors)")


def time_update(model, opt, autocast, batch, steps):
    """The update alone, as bench_step times it: clipping and AdamW from one backward pass's
    gradients to a host read of the temperature (torch's AdamW picks its multi-tensor
    implementation on a GPU, as in open_clip_train)."""
    times = []
    model.train()
    for rnd in range(steps + 1):
        with autocast():
            f, g, s = model(*batch)
            loss = per_sample_loss(f, g, s).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        model.logit_scale.item()  # the backward pass has finished on the device
        t0 = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        model.logit_scale.item()
        if rnd > 0:
            times.append(time.perf_counter() - t0)
    return times


if __name__ == "__main__":
    main()
