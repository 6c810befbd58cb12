#!/usr/bin/env python3
"""Writes MNIST (the four IDX files, raw or .gz) as image folders for `source: images`:
OUT/train/<digit>/<index>.png and OUT/test/<digit>/<index>.png (70,000 8-bit grey PNG files).
For the end-to-end check of image folders; nothing is shipped. Python 3 standard library only.

    python3 scripts/mnist-to-png.py MNIST_DIR OUT_DIR
"""
import gzip
import os
import struct
import sys
import zlib


def read_idx(folder, names):
    for base in names:
        for name in (base, base + ".gz"):
            path = os.path.join(folder, name)
            if os.path.isfile(path):
                with open(path, "rb") as f:
                    data = f.read()
                if data[:2] == b"\x1f\x8b":
                    data = gzip.decompress(data)
                rank = data[3]
                dims = struct.unpack(">" + "I" * rank, data[4:4 + 4 * rank])
                return dims, data[4 + 4 * rank:]
    sys.exit(f"mnist-to-png: {folder}: none of {names} found")


def png(width, height, pixels):
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
    rows = b"".join(b"\x00" + pixels[y * width:(y + 1) * width] for y in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows, 6)) + chunk(b"IEND", b"")


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    source, out = sys.argv[1], sys.argv[2]
    splits = [("train", ["train-images-idx3-ubyte", "train-images.idx3-ubyte"], ["train-labels-idx1-ubyte", "train-labels.idx1-ubyte"]),
              ("test", ["t10k-images-idx3-ubyte", "t10k-images.idx3-ubyte"], ["t10k-labels-idx1-ubyte", "t10k-labels.idx1-ubyte"])]
    total = 0
    for split, image_names, label_names in splits:
        (count, rows, cols), pixels = read_idx(source, image_names)
        _, labels = read_idx(source, label_names)
        for digit in range(10):
            os.makedirs(os.path.join(out, split, str(digit)), exist_ok=True)
        size = rows * cols
        for i in range(count):
            path = os.path.join(out, split, str(labels[i]), f"{i:05d}.png")
            with open(path, "wb") as f:
                f.write(png(cols, rows, pixels[i * size:(i + 1) * size]))
        total += count
    print(f"wrote {total} PNG files under {out}")


if __name__ == "__main__":
    main()
