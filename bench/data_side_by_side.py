#!/usr/bin/env python3
"""Images per second per core of MMT's training data pipeline: Tandem's C++
loader against the Python original's (torchvision transforms on PIL), in one
run, on the same JPEG files.

    bench/data_side_by_side.py [--build build] [--dir DIR] [--seconds 5]

Without --dir it renders a synthetic Market-1501-layout data set first
(`tandem synth`, 128 x 64 JPEGs like Market-1501's crops) and uses its
bounding_box_train/. Both sides: read the file, decode, Resize(256, 128,
bicubic), RandomHorizontalFlip, Pad(10), RandomCrop(256, 128), ToTensor,
Normalize(ImageNet), RandomErasing(0.5, 0.02-0.4, 0.3, fill = mean); one
thread each (torch.set_num_threads(1), the C++ pipeline on one thread).
"""
import argparse
import json
import math
import os
import random
import subprocess
import sys
import tempfile
import time

import torch
import torchvision.transforms as T
from PIL import Image


class RandomErasing:
    """MMT's RandomErasing (utils/data/transforms.py), written from its rules."""

    def __init__(self, probability=0.5, sl=0.02, sh=0.4, r1=0.3, mean=(0.485, 0.456, 0.406)):
        self.probability, self.sl, self.sh, self.r1, self.mean = probability, sl, sh, r1, mean

    def __call__(self, img):
        if random.uniform(0, 1) >= self.probability:
            return img
        for _ in range(100):
            area = img.size(1) * img.size(2)
            target = random.uniform(self.sl, self.sh) * area
            ratio = random.uniform(self.r1, 1 / self.r1)
            h = int(round(math.sqrt(target * ratio)))
            w = int(round(math.sqrt(target / ratio)))
            if w < img.size(2) and h < img.size(1):
                x1 = random.randint(0, img.size(1) - h)
                y1 = random.randint(0, img.size(2) - w)
                for c in range(3):
                    img[c, x1:x1 + h, y1:y1 + w] = self.mean[c]
                return img
        return img


def python_rate(paths, seconds):
    torch.set_num_threads(1)
    normalizer = T.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])
    transform = T.Compose([
        T.Resize((256, 128), interpolation=T.InterpolationMode.BICUBIC),
        T.RandomHorizontalFlip(p=0.5),
        T.Pad(10),
        T.RandomCrop((256, 128)),
        T.ToTensor(),
        normalizer,
        RandomErasing(probability=0.5, mean=[0.485, 0.456, 0.406]),
    ])
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for path in paths:
            transform(Image.open(path).convert("RGB"))  # as MMT's Preprocessor
            done += 1
            if time.perf_counter() - start >= seconds:
                break
    return done / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--build", default="build")
    parser.add_argument("--dir", help="folder of .jpg files (default: render a synthetic set)")
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    work = None
    directory = args.dir
    if directory is None:
        work = tempfile.mkdtemp(prefix="tandem-bench-data-")
        subprocess.run([os.path.join(args.build, "cli", "tandem"), "synth", "--out", work,
                        "--domain", "market", "--ids", "60", "--cameras", "6", "--seed", "1"],
                       check=True, stdout=subprocess.DEVNULL)
        directory = os.path.join(work, "bounding_box_train")
    paths = sorted(os.path.join(directory, f) for f in os.listdir(directory) if f.endswith(".jpg"))
    size = Image.open(paths[0]).size
    cpp = json.loads(subprocess.run(
        [os.path.join(args.build, "bench", "bench_data"), "--dir", directory,
         "--seconds", str(args.seconds), "--threads", "2"],
        check=True, capture_output=True, text=True).stdout)
    py = python_rate(paths, args.seconds)
    print(f"{len(paths)} JPEG files of {size[0]}x{size[1]} (W x H) in {directory}")
    print("| pipeline | images/s | per core | vs Python |")
    print("| --- | --- | --- | --- |")
    print(f"| Python: torchvision + PIL, 1 thread | {py:.0f} | {py:.0f} | 1.00 |")
    print(f"| Tandem, 1 thread | {cpp['single_thread']:.0f} | {cpp['single_thread']:.0f} | "
          f"{cpp['single_thread'] / py:.2f} |")
    threads = cpp["loader_threads"]
    print(f"| Tandem DataLoader, {threads} threads, batches of 64 | {cpp['loader']:.0f} | "
          f"{cpp['loader'] / threads:.0f} | {cpp['loader'] / threads / py:.2f} |")
    if work is not None:
        subprocess.run(["rm", "-rf", work], check=False)


if __name__ == "__main__":
    sys.exit(main())
