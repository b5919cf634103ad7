#!/usr/bin/env python3
"""Images per second of one MMT iteration: Tandem's C++ step (bench_mmt_step)
against the same step in Python (bench/mmt_step_reference.py), in one run,
same model, batch, input size and threads; prints a Markdown table.

    bench/mmt_step_side_by_side.py [--build build] [--threads 2] [--rounds 2]
        [--lock /tmp/tandem-build.lock] [--case SPEC ...] [--max-seconds 60]
        [--device cpu|cuda] [--bf16] [--channels-last] [--cpp-sequential]
        [--python-parallel] [--env KEY=VALUE ...] [--json-out FILE]

A case SPEC is backbone:HxW:batch:P:iters:warmup, e.g. resnet18:128x64:32:8:3:1.
Default cases: resnet18 at 128 x 64, batch 32 = 8 x 4, 3 iterations after 1
warm-up; then resnet50 at 256 x 128, batch 64 = 16 x 4 (MMT's sizes), one
iteration without warm-up. Each round runs every side once, one process each
(so each peak RSS is its own), under --lock when given (flock: other builds on
a shared machine wait, and all sides of a round see the same machine); round r
starts with side r mod n, so that drift hits every side. The sides: C++ as
the trainer runs it (bench_mmt_step; by default the two student/teacher pairs
on two threads), with --cpp-sequential also bench_mmt_step --sequential (the
pairs one after the other, as the Python step), the Python step as the
originals write it, and with --python-parallel mmt_step_reference.py
--parallel-pairs (not the originals: MmtStep's two threads in Python). A case
whose first C++ iteration takes longer than --max-seconds is reported and the
other sides are not run.

Figures: images/s = batch / median of every timed iteration of all rounds
(each iteration is one full MMT step over the batch). The first-iteration
losses of the two sides are printed too: the programs draw weights and inputs
in the same order from the shared CPU generator, so equal losses show that
the same step was timed.
"""
import argparse
import contextlib
import fcntl
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_CASES = ["resnet18:128x64:32:8:3:1", "resnet50:256x128:64:16:1:0"]


def parse_case(spec):
    try:
        backbone, size, batch, ids, iters, warmup = spec.split(":")
        height, width = size.lower().split("x")
        return {"backbone": backbone, "height": int(height), "width": int(width),
                "batch": int(batch), "ids_per_batch": int(ids), "iters": int(iters),
                "warmup": int(warmup)}
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"bad case {spec!r}: want backbone:HxW:batch:P:iters:warmup") from None


@contextlib.contextmanager
def locked(path):
    if not path:
        yield
        return
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def load_average():
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def run(command, env=None):
    """Runs one side; returns its JSON line plus wall time, peak RSS (MiB) and
    the 1-minute load average at its start and end."""
    load = load_average()
    start = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True,
                            env=dict(os.environ, **(env or {})))
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(command)} exited {proc.returncode}")
    result = json.loads(out.strip().splitlines()[-1])
    result["wall_seconds"] = time.perf_counter() - start
    result["peak_rss_mib"] = usage.ru_maxrss / 1024
    result["load_average"] = [load, load_average()]
    return result


def flags(case, args):
    out = ["--backbone", case["backbone"], "--batch", str(case["batch"]),
           "--ids-per-batch", str(case["ids_per_batch"]), "--height", str(case["height"]),
           "--width", str(case["width"]), "--iters", str(case["iters"]),
           "--warmup", str(case["warmup"]), "--threads", str(args.threads),
           "--classes", str(args.classes), "--device", args.device]
    if args.bf16:
        out.append("--bf16")
    if args.channels_last:
        out.append("--channels-last")
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--build", default="build", help="CMake build folder")
    parser.add_argument("--python", default=sys.executable, help="interpreter of the reference")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--classes", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--lock", help="flock this file around each round")
    parser.add_argument("--case", action="append", type=parse_case,
                        help="backbone:HxW:batch:P:iters:warmup (repeatable)")
    parser.add_argument("--max-seconds", type=float, default=60.0,
                        help="skip a case whose first C++ iteration takes longer")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--json-out", help="write every side's JSON result here")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                        help="set in the environment of every side (e.g. OMP_WAIT_POLICY=passive)")
    parser.add_argument("--python-parallel", action="store_true",
                        help="also time mmt_step_reference.py --parallel-pairs (NOT the "
                             "originals: MmtStep's two threads written in Python)")
    parser.add_argument("--cpp-sequential", action="store_true",
                        help="also time bench_mmt_step --sequential (the pairs one after the "
                             "other, as the Python step)")
    args = parser.parse_args()
    cases = args.case or [parse_case(c) for c in DEFAULT_CASES]
    binary = os.path.join(args.build, "bench", "bench_mmt_step")
    reference = os.path.join(HERE, "mmt_step_reference.py")

    sides = [("cpp", [binary])]
    if args.cpp_sequential:
        sides.append(("cpp_sequential", [binary, "--sequential"]))
    sides.append(("python", [args.python, reference]))
    if args.python_parallel:
        sides.append(("python_parallel", [args.python, reference, "--parallel-pairs"]))
    env = dict(kv.split("=", 1) for kv in args.env)
    rows, records = [], []
    for case in cases:
        runs, skipped = {name: [] for name, _ in sides}, None
        for r in range(args.rounds):
            wall = 0.0
            with locked(args.lock):
                # Round r starts with side r mod n, so that drift hits every side.
                for name, command in sides[r % len(sides):] + sides[:r % len(sides)]:
                    if r == 0 and name != "cpp" and skipped:
                        continue
                    result = run(command + flags(case, args), env)
                    result["side"] = name
                    runs[name].append(result)
                    records.append(result)
                    wall += result["wall_seconds"]
                    print(json.dumps(result), file=sys.stderr, flush=True)
                    if (r == 0 and name == "cpp"
                            and result["median_seconds_per_iter"] > args.max_seconds):
                        skipped = (f"C++ took {result['median_seconds_per_iter']:.0f} s per "
                                   f"iteration (> {args.max_seconds:.0f} s): the others not run")
            if skipped or (r == 0 and wall > 2 * len(sides) * args.max_seconds):
                break  # one round of a slow case is all the time allows
        rows.append((case, runs, skipped))

    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(records, f, indent=1)

    mode = args.device + (" bf16" if args.bf16 else " fp32")
    mode += " channels_last" if args.channels_last else ""
    loads = [x for r in records for x in r["load_average"]]
    print(f"\n{mode}, {args.threads} threads, {args.classes} classes; images/s = batch / median "
          "seconds per iteration over all rounds"
          + (f"; environment {' '.join(args.env)}" if args.env else "")
          + (f"; 1-minute load average {min(loads):.1f} to {max(loads):.1f}" if loads else "")
          + "\n")
    labels = {"cpp": "C++", "cpp_sequential": "C++ sequential", "python": "Python",
              "python_parallel": "Python parallel pairs (not the originals)"}
    names = [name for name, _ in sides]
    others = [name for name in names if name != "python"]
    print("| backbone | input | batch (P × K) | timed iterations | "
          + " | ".join(f"{labels[n]} images/s" for n in names) + " | "
          + " | ".join(f"{labels[n]} / Python" for n in others)
          + " | C++ s/iter | Python s/iter | peak RSS C++ / Python (MiB) "
          "| first loss C++ / Python |")
    print("| --- " * (8 + len(names) + len(others)) + "|")
    notes = []

    def seconds(results):
        return statistics.median([t for x in results for t in x["times"]]) if results else None

    def cell(v, fmt):
        return "–" if v is None else format(v, fmt)

    for case, runs, skipped in rows:
        k = case["batch"] // case["ids_per_batch"]
        t = {name: seconds(runs[name]) for name in names}
        rate = lambda s: None if s is None else case["batch"] / s
        ratio = lambda s: None if s is None or t["python"] is None else t["python"] / s
        rss = lambda results: (max(x["peak_rss_mib"] for x in results) if results else None)
        cpp, py = runs["cpp"], runs["python"]
        counts = " + ".join(str(sum(len(x["times"]) for x in runs[name])) for name in names)
        print(f"| {case['backbone']} | {case['height']} × {case['width']} | "
              f"{case['batch']} ({case['ids_per_batch']} × {k}) | {counts} | "
              + " | ".join(cell(rate(t[n]), ".2f") for n in names) + " | "
              + " | ".join(cell(ratio(t[n]), ".2f") for n in others)
              + f" | {cell(t['cpp'], '.3f')} | {cell(t['python'], '.3f')} "
              f"| {cell(rss(cpp), '.0f')} / {cell(rss(py), '.0f')} "
              f"| {cell(cpp[0]['first_loss'], '.5f')} / "
              f"{cell(py[0]['first_loss'] if py else None, '.5f')} |")
        if skipped:
            notes.append(f"{case['backbone']} {case['height']} × {case['width']}: {skipped}")
    for note in notes:
        print(f"\n{note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
