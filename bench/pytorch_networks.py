#!/usr/bin/env python3
"""The PyTorch peer of `twa bench --networks` and of `twa plan`'s activation bytes.

Builds each preset's network from its layer list (`assets/presets/NAME.toml`, the
TOML twa reads) as a PyTorch module, layer for layer, then on random colour images
(32×32, or --side) at batch 128:

- times a training step (forward, cross-entropy, backward, SGD with momentum), the
  best of three after one to warm up, with --threads CPU threads;
- with --saved, counts the bytes autograd saves for backward in one forward pass
  (torch.autograd.graph.saved_tensors_hooks, each storage once).

Prints one JSON object: per network its parameter count, step_ms, images_per_s and
saved_bytes. Not part of CI (PyTorch is large): `pip install torch`.

    python3 bench/pytorch_networks.py --threads 2
    python3 bench/pytorch_networks.py --saved --no-step --only wrn-28-10
    python3 bench/pytorch_networks.py --saved --no-step --only resnet-18 --side 224 --classes 1000
"""
import argparse, json, math, os, time, tomllib

import torch
from torch import nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
PRESETS = os.path.join(HERE, "..", "assets", "presets")


class Residual(nn.Module):
    """body(x) + shortcut: x, or the shortcut layers on the body's first k outputs."""

    def __init__(self, body, shortcut_from, shortcut):
        super().__init__()
        self.body, self.shortcut_from = nn.ModuleList(body), shortcut_from
        self.shortcut = nn.Sequential(*shortcut) if shortcut else None

    def forward(self, x):
        h, branch = x, x
        for i, layer in enumerate(self.body):
            if i == self.shortcut_from:
                branch = h
            h = layer(h)
        if self.shortcut_from == len(self.body):
            branch = h
        return h + (self.shortcut(branch) if self.shortcut is not None else x)


class PatchEmbed(nn.Module):
    def __init__(self, channels, outputs, patch):
        super().__init__()
        self.proj = nn.Conv2d(channels, outputs, patch, stride=patch)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)


class ClassToken(nn.Module):
    def __init__(self, features):
        super().__init__()
        self.cls_token = nn.Parameter(torch.zeros(1, 1, features))

    def forward(self, x):
        return torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)


class PositionEmbedding(nn.Module):
    def __init__(self, tokens, features):
        super().__init__()
        self.pos_embed = nn.Parameter(torch.zeros(1, tokens, features))

    def forward(self, x):
        return x + self.pos_embed


class Attention(nn.Module):
    """timm's Attention: qkv Linear, scaled dot-product attention, proj Linear."""

    def __init__(self, features, heads):
        super().__init__()
        self.heads = heads
        self.qkv, self.proj = nn.Linear(features, 3 * features), nn.Linear(features, features)

    def forward(self, x):
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        attn = (q @ k.transpose(-2, -1) / math.sqrt(c // self.heads)).softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))


class Pool(nn.Module):
    """Global average pooling: over the pixels of an image, or over the tokens."""

    def forward(self, x):
        return x.mean(dim=1) if x.dim() == 3 else x.mean(dim=(2, 3))


def build(layers, shape, classes):
    """The modules of `layers` for input `shape` (C, H, W) or (tokens, features)."""
    out = []
    for spec in layers:
        name, args = (spec, {}) if isinstance(spec, str) else next(iter(spec.items()))
        if name == "conv":
            c, h, w = shape
            k, s, p = args["kernel"], args.get("stride", 1), args.get("padding", 0)
            out.append(nn.Conv2d(c, args["outputs"], k, s, p, bias=args.get("bias", True)))
            shape = (args["outputs"], (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1)
        elif name == "patch_embed":
            c, h, w = shape
            out.append(PatchEmbed(c, args["outputs"], args["patch"]))
            shape = ((h // args["patch"]) * (w // args["patch"]), args["outputs"])
        elif name == "linear":
            n = classes if args["outputs"] == "classes" else args["outputs"]
            out.append(nn.Linear(shape[-1], n))
            shape = shape[:-1] + (n,)
        elif name == "batchnorm":
            out.append(nn.BatchNorm2d(shape[0]) if len(shape) == 3 else nn.BatchNorm1d(shape[0]))
        elif name == "layernorm":
            out.append(nn.LayerNorm(shape[-1]))
        elif name in ("relu", "gelu"):
            out.append(nn.ReLU() if name == "relu" else nn.GELU())
        elif name == "dropout":
            out.append(nn.Dropout(args["p"]))
        elif name in ("max_pool", "avg_pool"):
            c, h, w = shape
            k, s, p = args["kernel"], args.get("stride", args["kernel"]), args.get("padding", 0)
            pool = nn.MaxPool2d if name == "max_pool" else nn.AvgPool2d
            out.append(pool(k, s, p))
            shape = (c, (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1)
        elif name == "global_avg_pool":
            out.append(Pool())
            shape = (shape[-1] if len(shape) == 2 else shape[0],)
        elif name == "flatten":
            out.append(nn.Flatten())
            shape = (math.prod(shape),)
        elif name == "class_token":
            out.append(ClassToken(shape[1]))
            shape = (shape[0] + 1, shape[1])
        elif name == "position_embedding":
            out.append(PositionEmbedding(*shape))
        elif name == "attention":
            out.append(Attention(shape[1], args["heads"]))
        elif name == "take_class_token":
            out.append(Lambda(lambda x: x[:, 0]))
            shape = (shape[1],)
        elif name == "residual":
            body, shape_after = build(args["body"], shape, classes)
            k = args.get("shortcut_from", 0)
            _, branch_shape = build(args["body"][:k], shape, classes)
            shortcut, _ = build(args.get("shortcut", []), branch_shape, classes)
            out.append(Residual(body, k, shortcut))
            shape = shape_after
        elif name == "repeat":
            for _ in range(args["times"]):
                more, shape = build(args["layers"], shape, classes)
                out.extend(more)
        else:
            raise SystemExit(f"unknown layer {name}")
    return out, shape


class Lambda(nn.Module):
    def __init__(self, f):
        super().__init__()
        self.f = f

    def forward(self, x):
        return self.f(x)


def network(name, side, classes):
    with open(os.path.join(PRESETS, f"{name}.toml"), "rb") as f:
        layers = tomllib.load(f)["model"]["layers"]
    modules, _ = build(layers, (3, side, side), classes)
    return nn.Sequential(*modules)


def step_ms(model, side, batch, classes):
    x, y = torch.randn(batch, 3, side, side), torch.arange(batch) % classes
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    best = math.inf
    for i in range(4):
        started = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()
        if i > 0:
            best = min(best, time.perf_counter() - started)
    return best * 1e3


def saved_bytes(model, side, batch):
    """Bytes autograd keeps for backward after one forward pass, each storage once."""
    seen = {}

    def pack(t):
        seen[(t.untyped_storage().data_ptr(), t.untyped_storage().nbytes())] = True
        return t

    x = torch.randn(batch, 3, side, side)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(x).sum()
    return sum(size for (_, size) in seen)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", nargs="*", default=["vgg16-bn", "resnet-18", "vit"])
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--side", type=int, default=32, help="image side (224: ImageNet's)")
    ap.add_argument("--classes", type=int, help="default: 100 for the CIFAR-100 presets, else 10")
    ap.add_argument("--saved", action="store_true")
    ap.add_argument("--no-step", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    report = {"torch": torch.__version__, "threads": args.threads}
    for name in args.only:
        cifar100 = name in ("vit", "wrn-28-10", "preresnet-164", "preresnet-110")
        classes = args.classes or (100 if cifar100 else 10)
        model = network(name, args.side, classes).train()
        row = {"params": sum(p.numel() for p in model.parameters()), "classes": classes}
        if args.saved:
            row["saved_bytes"] = saved_bytes(model, args.side, args.batch)
        if not args.no_step:
            ms = step_ms(model, args.side, args.batch, classes)
            row.update(step_ms=ms, images_per_s=args.batch * 1e3 / ms)
        report[name] = row
        print(name, row, flush=True)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
