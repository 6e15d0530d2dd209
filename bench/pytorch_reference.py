#!/usr/bin/env python3
"""The peer of `twa train` for speed comparisons: the same models (MLP-BN
784-256-256-10 and the `cnn` preset's conv net), the same data (Fashion-MNIST IDX
files, normalised with the training split's mean and std), the same batch, optimiser
and schedule, on PyTorch's CPU backend with a chosen number of threads. Prints one
JSON object: seconds per epoch (training + evaluation on the test split, as twa's
metrics.jsonl counts an epoch) and the test accuracy after each.

    python3 bench/pytorch_reference.py --data /usr/share/datasets/fashion-mnist \
        --model mlp --epochs 2 --threads 2

Not part of CI (PyTorch is large): `pip install torch`.
"""
import argparse, gzip, json, os, struct, time

import torch
from torch import nn


def read_idx(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    dims = data[3]
    shape = struct.unpack(">" + "I" * dims, data[4 : 4 + 4 * dims])
    return torch.frombuffer(bytearray(data[4 + 4 * dims :]), dtype=torch.uint8).reshape(shape)


def split(data_dir, prefix):
    def find(kind):
        for name in (f"{prefix}-{kind}", f"{prefix}-{kind}.gz"):
            if os.path.exists(os.path.join(data_dir, name)):
                return os.path.join(data_dir, name)
        raise SystemExit(f"no {prefix}-{kind}[.gz] in {data_dir}")

    images = read_idx(find("images-idx3-ubyte")).float() / 255.0
    labels = read_idx(find("labels-idx1-ubyte")).long()
    return images.unsqueeze(1), labels


def model(name):
    if name == "mlp":
        return nn.Sequential(
            nn.Flatten(),
            nn.Linear(784, 256), nn.BatchNorm1d(256), nn.ReLU(),
            nn.Linear(256, 256), nn.BatchNorm1d(256), nn.ReLU(),
            nn.Linear(256, 10),
        )
    return nn.Sequential(  # the `cnn` preset
        nn.Conv2d(1, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(3136, 256), nn.BatchNorm1d(256), nn.ReLU(),
        nn.Linear(256, 10),
    )


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    p.add_argument("--model", choices=["mlp", "cnn"], default="mlp")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--eval-batch", type=int, default=1000)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    x, y = split(args.data, "train")
    tx, ty = split(args.data, "t10k")
    mean, std = x.mean(), x.std()
    x, tx = (x - mean) / std, (tx - mean) / std
    net = model(args.model)
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    loss_fn = nn.CrossEntropyLoss()
    epochs = []
    for epoch in range(args.epochs):
        started = time.perf_counter()
        net.train()
        order = torch.randperm(len(y))
        for start in range(0, len(y), args.batch):
            idx = order[start : start + args.batch]
            opt.zero_grad(set_to_none=True)
            loss_fn(net(x[idx]), y[idx]).backward()
            opt.step()
        net.eval()
        correct = 0
        with torch.no_grad():
            for start in range(0, len(ty), args.eval_batch):
                out = net(tx[start : start + args.eval_batch])
                correct += (out.argmax(1) == ty[start : start + args.eval_batch]).sum().item()
        epochs.append({"epoch": epoch + 1, "seconds": time.perf_counter() - started,
                       "test_acc": correct / len(ty)})
    print(json.dumps({"model": args.model, "threads": args.threads, "batch": args.batch,
                      "torch": torch.__version__, "epochs": epochs}))


if __name__ == "__main__":
    main()
