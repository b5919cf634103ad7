#!/usr/bin/python3
"""Images per second of one MMT iteration: Tandem's C++ step (bench_mmt_step)
against the same step in Python (bench/mmt_step_reference.py), in one run,
same model, batch, input size and threads; prints a Markdown table.

    bench/mmt_step_side_by_side.py [--build build] [--threads 2] [--rounds 2]
        [--lock /tmp/tandem-build.lock] [--case SPEC ...] [--max-seconds 60]
        [--device cpu|cuda] [--bf16] [--channels-last] [--json-out FILE]

A case SPEC is backbone:HxW:batch:P:iters:warmup, e.g. resnet18:128x64:32:8:3:1.
Default cases: resnet18 at 128 x 64, batch 32 = 8 x 4, 3 iterations after 1
warm-up; then resnet50 at 256 x 128, batch 64 = 16 x 4 (MMT's sizes), one
iteration without warm-up. Each round runs C++ then Python, one process each
(so each peak RSS is its own), under --lock when given (flock: other builds on
a shared machine wait, and both sides of a round see the same machine); rounds
alternate so that drift hits both sides. A case whose first C++ iteration
takes longer than --max-seconds is reported and not repeated.

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


def run(command):
    """Runs one side; returns its JSON line plus wall time and peak RSS (MiB)."""
    start = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(command)} exited {proc.returncode}")
    result = json.loads(out.strip().splitlines()[-1])
    result["wall_seconds"] = time.perf_counter() - start
    result["peak_rss_mib"] = usage.ru_maxrss / 1024
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
    args = parser.parse_args()
    cases = args.case or [parse_case(c) for c in DEFAULT_CASES]
    binary = os.path.join(args.build, "bench", "bench_mmt_step")
    reference = os.path.join(HERE, "mmt_step_reference.py")

    rows, records = [], []
    for case in cases:
        cpp, py, skipped = [], [], None
        for r in range(args.rounds):
            with locked(args.lock):
                c = run([binary] + flags(case, args))
                cpp.append(c)
                records.append(c)
                print(json.dumps(c), file=sys.stderr, flush=True)
                if r == 0 and c["median_seconds_per_iter"] > args.max_seconds:
                    skipped = (f"C++ took {c['median_seconds_per_iter']:.0f} s per iteration "
                               f"(> {args.max_seconds:.0f} s): Python not run")
                    break
                p = run([args.python, reference] + flags(case, args))
                py.append(p)
                records.append(p)
                print(json.dumps(p), file=sys.stderr, flush=True)
            if r == 0 and c["wall_seconds"] + p["wall_seconds"] > 4 * args.max_seconds:
                break  # one round of a slow case is all the time allows
        rows.append((case, cpp, py, skipped))

    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(records, f, indent=1)

    mode = args.device + (" bf16" if args.bf16 else " fp32")
    mode += " channels_last" if args.channels_last else ""
    print(f"\n{mode}, {args.threads} threads, {args.classes} classes; images/s = batch / median "
          "seconds per iteration over all rounds\n")
    print("| backbone | input | batch (P × K) | timed iterations | C++ images/s | Python images/s "
          "| C++ / Python | C++ s/iter | Python s/iter | peak RSS C++ / Python (MiB) "
          "| first loss C++ / Python |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    notes = []
    for case, cpp, py, skipped in rows:
        k = case["batch"] // case["ids_per_batch"]
        head = (f"| {case['backbone']} | {case['height']} × {case['width']} | "
                f"{case['batch']} ({case['ids_per_batch']} × {k}) |")
        cpp_t = statistics.median([t for c in cpp for t in c["times"]])
        if skipped:
            print(f"{head} {len(cpp[0]['times'])} + 0 | {case['batch'] / cpp_t:.2f} | – | – | "
                  f"{cpp_t:.2f} | – | {cpp[0]['peak_rss_mib']:.0f} / – | "
                  f"{cpp[0]['first_loss']:.5f} / – |")
            notes.append(f"{case['backbone']} {case['height']} × {case['width']}: {skipped}")
            continue
        py_t = statistics.median([t for p in py for t in p["times"]])
        n = sum(len(c["times"]) for c in cpp)
        print(f"{head} {n} + {sum(len(p['times']) for p in py)} | {case['batch'] / cpp_t:.2f} | "
              f"{case['batch'] / py_t:.2f} | {py_t / cpp_t:.2f} | {cpp_t:.3f} | {py_t:.3f} | "
              f"{max(c['peak_rss_mib'] for c in cpp):.0f} / "
              f"{max(p['peak_rss_mib'] for p in py):.0f} | "
              f"{cpp[0]['first_loss']:.5f} / {py[0]['first_loss']:.5f} |")
    for note in notes:
        print(f"\n{note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
