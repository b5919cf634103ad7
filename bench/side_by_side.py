#!/usr/bin/env python3
"""Runs a C++ Google Benchmark program and the same operations in Python
(the project venv's torch, the same release as the LibTorch linked: run it
with .venv/bin/python) in one run, and prints the times and their ratio.

    bench/side_by_side.py methods [--build build]

Each C++ benchmark BM_X/arg has a Python twin in PYTHON_TWINS[suite]["BM_X"]
that builds its inputs from `arg` and returns a zero-argument callable timed
here the same way (single thread, median of repeated runs). The methods
twins call the originals' losses in bench/reference/losses.py.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import torch


# ---- methods: the losses as the Python originals compute them ---------------
import torch.nn.functional as F  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # bench/reference
from reference.losses import (  # noqa: E402
    afn, class_balance, cross_entropy_label_smooth, l2_consistency, mcc,
    pairwise_euclidean_distance, soft_cross_entropy, soft_triplet_loss, triplet_loss)

BATCH, CLASSES, DIM = 64, 700, 2048


def twin(make):
    """Wraps make() -> (leaves, loss_fn) into a timed forward+backward step."""
    def build(arg):
        torch.manual_seed(0)
        leaves, loss_fn = make(arg)

        def step():
            for t in leaves:
                t.grad = None
            loss_fn().backward()
        return step
    return build


def pk_labels():
    return torch.arange(BATCH // 4).repeat_interleave(4)


def leaf(*shape):
    return torch.randn(*shape, requires_grad=True)


def _pairwise(n):
    x = leaf(n, DIM)
    return [x], lambda: pairwise_euclidean_distance(x, x).sum()


def _soft_triplet_soft(_):
    f1, f2, labels = leaf(BATCH, DIM), torch.randn(BATCH, DIM), pk_labels()
    return [f1], lambda: soft_triplet_loss(f1, f2, labels)


def _soft_triplet_margin0(_):
    f, labels = leaf(BATCH, DIM), pk_labels()
    return [f], lambda: soft_triplet_loss(f, f, labels, margin=0.0)


def _triplet(_):
    f, labels = leaf(BATCH, DIM), pk_labels()
    return [f], lambda: triplet_loss(f, labels, 0.3)


def _soft_ce(_):
    y, target = leaf(BATCH, CLASSES), torch.randn(BATCH, CLASSES)
    return [y], lambda: soft_cross_entropy(y, target)


def _ce_ls(_):
    y, labels = leaf(BATCH, CLASSES), torch.randint(CLASSES, (BATCH,))
    return [y], lambda: cross_entropy_label_smooth(y, labels)


def _l2_consistency(_):
    y = leaf(BATCH, CLASSES)
    teacher = F.softmax(torch.randn(BATCH, CLASSES), 1)
    mask = (torch.rand(BATCH) > 0.3).float()
    return [y], lambda: l2_consistency(F.softmax(y, 1), teacher, mask)


def _class_balance(_):
    y = leaf(BATCH, CLASSES)
    return [y], lambda: class_balance(F.softmax(y, 1))


def _mcc(_):
    y = leaf(BATCH, CLASSES)
    return [y], lambda: mcc(y)


def _afn(_):
    f = leaf(BATCH, DIM)
    return [f], lambda: afn(f)


PYTHON_TWINS = {
    "methods": {
        "BM_PairwiseEuclideanDistance": twin(_pairwise),
        "BM_SoftTripletLossSoft": twin(_soft_triplet_soft),
        "BM_SoftTripletLossMargin0": twin(_soft_triplet_margin0),
        "BM_TripletLoss": twin(_triplet),
        "BM_SoftCrossEntropyLoss": twin(_soft_ce),
        "BM_CrossEntropyLabelSmooth": twin(_ce_ls),
        "BM_L2ConsistencyLoss": twin(_l2_consistency),
        "BM_ClassBalanceLoss": twin(_class_balance),
        "BM_MinimumClassConfusionLoss": twin(_mcc),
        "BM_AdaptiveFeatureNorm": twin(_afn),
    },
}


def time_python(step, min_seconds=0.5, repeats=5):
    """Median seconds per call over `repeats` rounds of at least min_seconds."""
    step()  # warm-up
    per_call = []
    for _ in range(repeats):
        calls, start = 0, time.perf_counter()
        while time.perf_counter() - start < min_seconds / repeats or calls == 0:
            step()
            calls += 1
        per_call.append((time.perf_counter() - start) / calls)
    return statistics.median(per_call)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("suite", choices=sorted(PYTHON_TWINS))
    parser.add_argument("--build", default="build", help="CMake build folder")
    parser.add_argument("--filter", default=".", help="benchmark name regex")
    args = parser.parse_args()
    torch.set_num_threads(1)

    binary = f"{args.build}/bench/bench_{args.suite}"
    output = subprocess.run(
        [binary, "--benchmark_format=json", f"--benchmark_filter={args.filter}",
         "--benchmark_repetitions=5", "--benchmark_report_aggregates_only=true"],
        check=True, capture_output=True, text=True).stdout
    results = [b for b in json.loads(output)["benchmarks"] if b.get("aggregate_name") == "median"]

    print(f"{'benchmark':48} {'C++ (us)':>10} {'Python (us)':>12} {'Python/C++':>11}")
    for bench in results:
        name, _, arg = bench["run_name"].partition("/")
        cpp_us = bench["real_time"] * {"ns": 1e-3, "us": 1.0, "ms": 1e3, "s": 1e6}[bench["time_unit"]]
        twin = PYTHON_TWINS[args.suite].get(name)
        if twin is None:
            print(f"{bench['run_name']:48} {cpp_us:10.1f} {'-':>12} {'-':>11}")
            continue
        py_us = time_python(twin(int(arg) if arg else None)) * 1e6
        print(f"{bench['run_name']:48} {cpp_us:10.1f} {py_us:12.1f} {py_us / cpp_us:11.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
