#!/usr/bin/env python3
"""Make the shipped class-balanced Fashion-MNIST subset from the full IDX files.

Takes, in file order, the first 1000 training images of each class (10,000 in all) and
the first 200 test images of each class (2,000), keeps their original order, and writes
them as gzip-compressed IDX files next to this script. Standard library only.

    python3 make_subset.py /usr/share/datasets/fashion-mnist
"""
import gzip
import struct
import sys
from pathlib import Path


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    rank = data[3]
    dims = struct.unpack(">" + "I" * rank, data[4 : 4 + 4 * rank])
    return dims, data[4 + 4 * rank :]


def write_idx(path, dims, body):
    header = bytes([0, 0, 8, len(dims)]) + struct.pack(">" + "I" * len(dims), *dims)
    # mtime=0 keeps the files byte-identical from run to run.
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as f:
        f.write(header + body)


def subset(src, prefix, per_class, out):
    (n, rows, cols), images = read_idx(src / f"{prefix}-images-idx3-ubyte.gz")
    _, labels = read_idx(src / f"{prefix}-labels-idx1-ubyte.gz")
    size = rows * cols
    taken = {c: 0 for c in range(10)}
    keep = []
    for i, label in enumerate(labels):
        if taken[label] < per_class:
            taken[label] += 1
            keep.append(i)
    write_idx(out / f"{prefix}-images-idx3-ubyte.gz", (len(keep), rows, cols),
              b"".join(images[i * size : (i + 1) * size] for i in keep))
    write_idx(out / f"{prefix}-labels-idx1-ubyte.gz", (len(keep),), bytes(labels[i] for i in keep))
    print(f"{prefix}: {len(keep)} of {n} images, {per_class} per class")


if __name__ == "__main__":
    src = Path(sys.argv[1] if len(sys.argv) > 1 else "/usr/share/datasets/fashion-mnist")
    out = Path(__file__).resolve().parent
    subset(src, "train", 1000, out)
    subset(src, "t10k", 200, out)
