#!/usr/bin/env python3
"""Runs the clustering benchmarks side by side, one process per workload so
each one's peak RSS is its own, and prints a Markdown table.

    bench/clustering_side_by_side.py [--build build] [--sizes 12936,32621]
                                     [--ivf 100000] [--python-max 12936]
                                     [--evaluate 3368x15913]

For each size: FAISS exact k-NN alone (the floor of a search that treats
queries and database apart), Tandem's Jaccard + adaptive eps + DBSCAN
(exact search), and the dense Python reference of MMT's algorithm up to
--python-max rows (beyond it the dense matrices do not fit: 5 n² floats and
n² int64). For --ivf sizes: Tandem with FAISS IVF search against the exact
run: time, neighbour recall and label agreement. Then evaluation of a
Market-sized query × gallery set against the per-query Python loop.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))


def run(command):
    """(JSON line printed by the command, wall seconds, peak RSS in MiB)."""
    with tempfile.NamedTemporaryFile("r") as timing:
        out = subprocess.run(["/usr/bin/time", "-f", "%e %M", "-o", timing.name] + command,
                             check=True, capture_output=True, text=True).stdout
        wall, rss_kb = timing.read().split()
    line = [l for l in out.splitlines() if l.startswith("{")][-1]
    return json.loads(line), float(wall), int(rss_kb) / 1024


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build", default="build")
    parser.add_argument("--sizes", default="12936,32621,100000")
    parser.add_argument("--ivf", default="32621", help="sizes to run with IVF ('' for none)")
    parser.add_argument("--python-max", type=int, default=12936)
    parser.add_argument("--evaluate", default="3368x15913", help="QxG ('' to skip)")
    args = parser.parse_args()
    bench = os.path.join(args.build, "bench", "bench_clustering")
    reference = os.path.join(HERE, "clustering_reference.py")

    print("| n | workload | time (s) | peak RSS (MiB) | notes |")
    print("| --- | --- | --- | --- | --- |")
    sizes = [int(s) for s in args.sizes.split(",") if s]
    for n in sizes:
        floor, floor_wall, floor_rss = run([bench, "knn", "--n", str(n)])
        print(f"| {n} | FAISS exact k-NN alone (k = 21) | {floor['seconds']:.1f} | {floor_rss:.0f} | the floor |")
        ours, wall, rss = run([bench, "jaccard", "--n", str(n)])
        print(f"| {n} | Tandem Jaccard + eps + DBSCAN (exact) | {ours['seconds']:.1f} | {rss:.0f} | "
              f"{ours['seconds'] / floor['seconds']:.2f}× the floor; search {ours['neighbors_s']:.1f} s, "
              f"Jaccard {ours['jaccard_s']:.1f} s; {ours['clusters']} clusters, eps {ours['eps']:.4f} |")
        if n <= args.python_max:
            py, wall, rss = run([reference, "jaccard", str(n)])
            print(f"| {n} | Python dense MMT reference | {py['seconds']:.1f} | {rss:.0f} | "
                  f"{py['seconds'] / ours['seconds']:.1f}× Tandem's time, {rss / 1024:.1f} GiB; "
                  f"{py['clusters']} clusters, eps {py['eps']:.4f} |")
        sys.stdout.flush()
    for n in [int(s) for s in args.ivf.split(",") if s]:
        with tempfile.TemporaryDirectory() as tmp:
            ivf, wall, rss = run([bench, "jaccard", "--n", str(n), "--search", "ivf", "--save",
                                  os.path.join(tmp, "ivf")])
            print(f"| {n} | Tandem Jaccard + eps + DBSCAN (IVF, default lists and probes) | "
                  f"{ivf['seconds']:.1f} | {rss:.0f} | search {ivf['neighbors_s']:.1f} s; "
                  f"estimated recall {ivf['estimated_recall']:.3f}; {ivf['clusters']} clusters |")
            exact, wall, rss = run([bench, "jaccard", "--n", str(n), "--save", os.path.join(tmp, "exact")])
            print(f"| {n} | Tandem Jaccard + eps + DBSCAN (exact) | {exact['seconds']:.1f} | {rss:.0f} | "
                  f"{exact['clusters']} clusters |")
            cmp, _, _ = run([bench, "compare", "--a", os.path.join(tmp, "ivf"), "--b",
                             os.path.join(tmp, "exact")])
            print(f"| {n} | IVF vs exact | | | neighbour recall {cmp['recall']:.4f}, labels: "
                  f"adjusted Rand {cmp['adjusted_rand_index']:.4f} |")
        sys.stdout.flush()
    if args.evaluate:
        q, g = args.evaluate.split("x")
        ours, _, ours_rss = run([bench, "evaluate", "--q", q, "--g", g])
        py, _, py_rss = run([reference, "evaluate", q, g])
        print(f"| {q}×{g} | evaluation, distances given | {ours['given_s']:.2f} vs {py['given_s']:.2f} | | "
              f"{py['given_s'] / ours['given_s']:.1f}× faster; mAP {ours['mean_ap']:.4f} vs {py['mean_ap']:.4f} |")
        print(f"| {q}×{g} | evaluation, all in | {ours['all_in_s']:.2f} vs {py['all_in_s']:.2f} | "
              f"{ours_rss:.0f} vs {py_rss:.0f} | {py['all_in_s'] / ours['all_in_s']:.1f}× faster |")


if __name__ == "__main__":
    main()
