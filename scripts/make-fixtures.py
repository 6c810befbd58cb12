#!/usr/bin/env python3
"""Cuts the small real-data fixture under Tests/Fixtures (see its README.md) from the full sets.

Usage: scripts/make-fixtures.py MNIST_DIR FSDD_DIR GUNPOINT_DIR [OUT]   (OUT default Tests/Fixtures)

MNIST_DIR holds the four uncompressed IDX files (train-images.idx3-ubyte or train-images-idx3-ubyte,
...); FSDD_DIR the FSDD repository's recordings/ folder's parent; GUNPOINT_DIR GunPoint_TRAIN.ts and
GunPoint_TEST.ts (UCR/UEA .ts format). The output is the same bytes on every run (gzip without a
time stamp), so its sha256 sums in the README can be checked.
"""
import gzip
import os
import shutil
import struct
import sys

MNIST_COUNT = 1000
FSDD_SPEAKERS = ["george", "jackson"]
FSDD_INDICES = [0, 5, 6]  # index 0-4: upstream's test split; 5-49: train


def idx_prefix(path, count, item_bytes):
    with open(path, "rb") as f:
        data = f.read()
    magic, total = struct.unpack(">II", data[:8])
    dims = (magic & 0xFF) - 1  # dimensions after the count
    header = 8 + 4 * dims
    assert count <= total, path
    return data[:4] + struct.pack(">I", count) + data[8:header] + data[header:header + count * item_bytes]


def find(folder, names):
    for name in names:
        if os.path.exists(os.path.join(folder, name)):
            return os.path.join(folder, name)
    raise SystemExit(f"{folder}: none of {names}")


def main():
    if len(sys.argv) not in (4, 5):
        raise SystemExit(__doc__)
    mnist, fsdd, gunpoint = sys.argv[1:4]
    out = sys.argv[4] if len(sys.argv) == 5 else os.path.join(os.path.dirname(__file__), "..", "Tests", "Fixtures")
    os.makedirs(os.path.join(out, "mnist"), exist_ok=True)
    for split in ["train", "t10k"]:
        for kind, item in [("images", 784), ("labels", 1)]:
            n = 3 if kind == "images" else 1
            source = find(mnist, [f"{split}-{kind}.idx{n}-ubyte", f"{split}-{kind}-idx{n}-ubyte"])
            body = idx_prefix(source, MNIST_COUNT, item)
            with open(os.path.join(out, "mnist", f"{split}-{kind}-idx{n}-ubyte.gz"), "wb") as f:
                with gzip.GzipFile(fileobj=f, mode="wb", mtime=0, filename="") as z:
                    z.write(body)
    recordings = os.path.join(out, "fsdd", "recordings")
    os.makedirs(recordings, exist_ok=True)
    for digit in range(10):
        for speaker in FSDD_SPEAKERS:
            for index in FSDD_INDICES:
                name = f"{digit}_{speaker}_{index}.wav"
                shutil.copyfile(os.path.join(fsdd, "recordings", name), os.path.join(recordings, name))
    os.makedirs(os.path.join(out, "ucr", "GunPoint"), exist_ok=True)
    for split in ["TRAIN", "TEST"]:
        name = f"GunPoint_{split}.ts"
        shutil.copyfile(os.path.join(gunpoint, name), os.path.join(out, "ucr", "GunPoint", name))


if __name__ == "__main__":
    main()
