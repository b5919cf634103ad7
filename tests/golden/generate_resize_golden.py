#!/usr/bin/env python3
"""Writes tests/golden/resize_golden.bin: PIL's bicubic resize (what
torchvision's Resize(interpolation=BICUBIC) calls on PIL images) of
procedural RGB images, the reference for worker/data/transforms.cpp.
Run from the repository root with the project's venv (scripts/setup; Pillow
and numpy are pinned in scripts/python-requirements.txt):

    .venv/bin/python tests/golden/generate_resize_golden.py

The input of each case is computed from a formula that the C++ test
repeats (pattern() below), so only the outputs are stored:
per case, int32 little-endian in_h, in_w, out_h, out_w, then out_h*out_w*3
bytes (HWC RGB). The file is @generated: edit this script, not the file.
"""
import struct
import sys

import numpy as np
from PIL import Image

CASES = [
    (128, 64, 256, 128),   # Market-1501 crop to MMT's input (upsampling)
    (300, 150, 256, 128),  # larger crop (downsampling, antialiased)
    (64, 32, 256, 128),    # 4x upsampling
    (97, 45, 31, 77),      # shrink one axis, grow the other
    (256, 128, 256, 128),  # identity
    (40, 128, 256, 128),   # one axis unchanged
    (300, 400, 256, 128),  # width shrunk 3x: wide filter, generic tap count
    (3, 2, 256, 128),      # input smaller than the filter support
]


def pattern(h, w):
    y, x, c = np.meshgrid(np.arange(h), np.arange(w), np.arange(3), indexing="ij")
    return ((x * 37 + y * 11 + c * 71 + ((x * y) % 17) * 9) % 256).astype(np.uint8)


def main(path):
    with open(path, "wb") as out:
        out.write(struct.pack("<i", len(CASES)))
        for in_h, in_w, out_h, out_w in CASES:
            image = Image.fromarray(pattern(in_h, in_w), "RGB")
            resized = np.asarray(image.resize((out_w, out_h), Image.BICUBIC))
            assert resized.shape == (out_h, out_w, 3)
            out.write(struct.pack("<4i", in_h, in_w, out_h, out_w))
            out.write(resized.tobytes())


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/golden/resize_golden.bin")
