#!/usr/bin/env python3
"""The PyTorch peer of `twa bench --loader DIR`, and the JPEG folder both read.

    python3 bench/pytorch_loader.py DIR --make        # write the folder (Pillow)
    python3 bench/pytorch_loader.py DIR --workers 2   # time torchvision on it
    twa bench --loader DIR                            # time twa on it

--make writes DIR/train/CLASS/*.jpg and DIR/val/CLASS/*.jpg: 10 classes, 50 + 10
images each, 320×240 or 240×320 JPEGs (quality 90) of smooth colour fields with
noise, so that decoding is work as on photographs.

Timing: torchvision's ImageFolder with Resize(SIDE) + CenterCrop(SIDE) + ToTensor
(the same resize of the shorter side and centre crop twa's --image-size does) through
a DataLoader with --workers processes and batch 64, every image of both splits once;
prints images/s as one JSON object. Not part of CI (PyTorch is large).
"""
import argparse, json, os, random, time


def make(root):
    from PIL import Image, ImageFilter

    rng = random.Random(1)
    for split, per in (("train", 50), ("val", 10)):
        for c in range(10):
            d = os.path.join(root, split, f"class{c:02}")
            os.makedirs(d, exist_ok=True)
            for i in range(per):
                w, h = (320, 240) if rng.random() < 0.5 else (240, 320)
                small = Image.new("RGB", (8, 6))
                small.putdata([tuple(rng.randrange(256) for _ in range(3)) for _ in range(48)])
                image = small.resize((w, h), Image.BICUBIC)
                noise = Image.effect_noise((w, h), 24).convert("RGB")
                image = Image.blend(image, noise, 0.15).filter(ImageFilter.SMOOTH)
                image.save(os.path.join(d, f"{i:04}.jpg"), quality=90)


def measure(root, side, workers):
    import torch
    from torch.utils.data import ConcatDataset, DataLoader
    from torchvision import datasets, transforms

    torch.set_num_threads(1)
    t = transforms.Compose(
        [transforms.Resize(side), transforms.CenterCrop(side), transforms.ToTensor()]
    )
    both = ConcatDataset(
        [datasets.ImageFolder(os.path.join(root, s), transform=t) for s in ("train", "val")]
    )
    start = time.perf_counter()
    count = 0
    for x, _ in DataLoader(both, batch_size=64, num_workers=workers):
        count += x.shape[0]
    seconds = time.perf_counter() - start
    print(json.dumps({"images": count, "side": side, "workers": workers,
                      "seconds": seconds, "images_per_s": count / seconds}))


if __name__ == "__main__":
    a = argparse.ArgumentParser()
    a.add_argument("dir")
    a.add_argument("--make", action="store_true")
    a.add_argument("--side", type=int, default=224)
    a.add_argument("--workers", type=int, default=2)
    args = a.parse_args()
    if args.make:
        make(args.dir)
    else:
        measure(args.dir, args.side, args.workers)
