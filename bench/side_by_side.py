#!/usr/bin/python3
"""Runs a C++ Google Benchmark program and the same operations in Python
(Debian's python3-torch) in one run, and prints the times and their ratio.

    bench/side_by_side.py methods [--build build]

Each C++ benchmark BM_X/arg has a Python twin in PYTHON_TWINS[suite]["BM_X"]
that builds its inputs from `arg` and returns a zero-argument callable timed
here the same way (single thread, median of repeated runs).
"""
import argparse
import json
import statistics
import subprocess
import sys
import time

import torch


def pairwise_euclidean_distance(x, y):
    d = x.pow(2).sum(1, keepdim=True) + y.pow(2).sum(1, keepdim=True).t()
    d = torch.addmm(d, x, y.t(), beta=1, alpha=-2)
    return d.clamp(min=1e-12).sqrt()


def bm_pairwise_euclidean_distance(n):
    torch.manual_seed(0)
    x = torch.randn(n, 2048, requires_grad=True)

    def step():
        x.grad = None
        pairwise_euclidean_distance(x, x).sum().backward()

    return step


PYTHON_TWINS = {
    "methods": {
        "BM_PairwiseEuclideanDistance": bm_pairwise_euclidean_distance,
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
