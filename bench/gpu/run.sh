#!/usr/bin/env bash
# The one-call GPU check of Tandem's training core (issue 18), and its CPU
# smoke mode.
#
# MODE=gpu (default), on a GPU machine that has a CUDA PyTorch and little
# else: configures a core-only build against that PyTorch's LibTorch, builds
# only what it runs, then
#   1. the MMT job check (bench_mmt_job_check): a 2-epoch mmt job on a
#      synthetic target with Jaccard + DBSCAN pseudo labels, on the CPU and
#      on the GPU with the same seed; passes when the fp32 losses agree
#      within 1e-3 (relative);
#   2. one MMT iteration (bench_mmt_step: two students forward + backward,
#      two EMA teachers forward, Adam, EMA) for ResNet-50 (last stride 1) at
#      256 x 128, batch 64 = 16 x 4, in fp32 and in bf16 (CUDA autocast)
#      with channels_last, and the Python twin (bench/mmt_step_reference.py)
#      on the same GPU; images/s and the rank's peak GPU memory;
#   3. `ctest -L cuda` (the _CUDA GoogleTest cases of methods_test,
#      worker_test and clustering_test) when GoogleTest is found.
# Sized for <= 8 minutes of one H100 call with 16 cores, build included.
#
# MODE=cpu: the smoke test CI runs (ctest test gpu_script.cpu_smoke): reuses
# BUILD_DIR when it is configured already (else configures a core-only
# build there), builds bench_mmt_step and bench_mmt_job_check only, runs
# both tiny on the CPU, and exits 0 when both ran and printed their result.
#
#   bench/gpu/run.sh                       # results in $OUT or build-gpu/results
#   OUT=/some/folder bench/gpu/run.sh      # results there instead
#   MODE=cpu BUILD_DIR=build bench/gpu/run.sh
#
# Needs: a PyTorch in $PYTHON (a CUDA one that sees a GPU in gpu mode), the
# CUDA toolkit (nvcc) that a CUDA LibTorch's CMake files ask for, CMake >=
# 3.22, a C++17 compiler; ninja if present. Nothing is downloaded.
# Environment (all optional):
#   MODE=gpu|cpu           see above
#   PYTHON=python3         interpreter holding the PyTorch (cpu mode: the
#                          checkout's .venv/bin/python when it exists)
#   BUILD_DIR=build-gpu    build folder (relative to the repository root)
#   OUT=...                results folder (default BUILD_DIR/results)
#   JOBS=$(nproc)          build parallelism
#   ITERS=20 WARMUP=5      timed and warm-up iterations per bench run (gpu mode)
#   TESTS=auto|0|1         build the test binaries and run ctest -L cuda (auto: if GoogleTest is found)
#   SUITES=0               1: also run the three test binaries whole (gpu mode; minutes more)
#   PYTHON_TWIN=1          also time the Python reference on the GPU (0: skip)
# Every step writes its log under the results folder; summary.md and
# results.jsonl hold the figures. See bench/gpu/README.md.
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SRC=$(cd "$HERE/../.." && pwd)
MODE=${MODE:-gpu}
case "$MODE" in
  gpu | cpu) ;;
  *) echo "bench/gpu/run.sh: MODE must be gpu or cpu, got '$MODE'" >&2; exit 2 ;;
esac
if [ "$MODE" = cpu ] && [ -z "${PYTHON:-}" ] && [ -x "$SRC/.venv/bin/python" ]; then
  PYTHON=$SRC/.venv/bin/python
fi
PYTHON=${PYTHON:-python3}
BUILD_DIR=${BUILD_DIR:-build-gpu}
case "$BUILD_DIR" in /*) BUILD=$BUILD_DIR ;; *) BUILD=$SRC/$BUILD_DIR ;; esac
RESULTS=${OUT:-$BUILD/results}
JOBS=${JOBS:-$(nproc 2>/dev/null || echo 8)}
ITERS=${ITERS:-20}
WARMUP=${WARMUP:-5}
TESTS=${TESTS:-auto}
SUITES=${SUITES:-0}
PYTHON_TWIN=${PYTHON_TWIN:-1}
mkdir -p "$RESULTS" "$BUILD"
LOG=$RESULTS/run.log
: >"$LOG"

log() { echo "[bench/gpu $(date +%H:%M:%S)] $*" | tee -a "$LOG"; }
die() {
  log "FAILED: $*"
  exit 1
}
# step NAME LIMIT_SECONDS CMD...: runs CMD with its output in NAME.log (and
# the log's tail on the console), fails after LIMIT_SECONDS.
step() {
  local name=$1 limit=$2
  shift 2
  log "$name: $*"
  local start=$SECONDS rc=0
  timeout "$limit" "$@" >"$RESULTS/$name.log" 2>&1 || rc=$?
  tail -n 15 "$RESULTS/$name.log"
  log "$name: exit $rc after $((SECONDS - start)) s"
  return $rc
}

cd "$SRC" || die "no repository at $SRC"
log "mode $MODE, repository $SRC, build $BUILD, results $RESULTS"
START=$SECONDS

# --- 1. What this machine has; configure ---------------------------------------
# (cpu mode on a configured build folder skips all of it: the smoke test in
# CI only builds, which is nothing there, and runs.)
REUSE=0
[ "$MODE" = cpu ] && [ -f "$BUILD/CMakeCache.txt" ] && REUSE=1
if [ "$REUSE" = 1 ]; then
  log "cpu mode: reusing the configured build folder $BUILD"
else
  command -v nvidia-smi >/dev/null && nvidia-smi >"$RESULTS/nvidia-smi.log" 2>&1
  TORCH_OK=0
  "$PYTHON" - "$MODE" >"$RESULTS/torch.log" 2>&1 <<'EOF' || TORCH_OK=$?
import torch, sys
print("torch", torch.__version__, "cuda", torch.version.cuda,
      "cudnn", torch.backends.cudnn.version())
print("cmake_prefix_path", torch.utils.cmake_prefix_path)
if not torch.cuda.is_available():
    if sys.argv[1] == "cpu":
        print("device cpu (no GPU visible)")
        sys.exit(0)
    sys.exit("torch.cuda.is_available() is False")
print("device", torch.cuda.get_device_name(0), "capability", torch.cuda.get_device_capability(0))
print("bf16", torch.cuda.is_bf16_supported())
EOF
  tee -a "$LOG" <"$RESULTS/torch.log"
  if [ "$TORCH_OK" != 0 ]; then
    [ "$MODE" = cpu ] && die "$PYTHON has no PyTorch (see torch.log)"
    die "$PYTHON has no CUDA PyTorch that sees a GPU (see torch.log)"
  fi
  TORCH_PREFIX=$("$PYTHON" -c 'import torch; print(torch.utils.cmake_prefix_path)')
  TORCH_ROOT=$("$PYTHON" -c 'import os, torch; print(os.path.dirname(torch.__file__))')

  command -v cmake >/dev/null || die "cmake not found (pip's cmake package or the distribution's)"
  CXX_FOUND=${CXX:-$(command -v c++ || command -v g++ || command -v clang++ || true)}
  [ -n "$CXX_FOUND" ] || die "no C++ compiler (c++, g++ or clang++) on PATH"
  GENERATOR=()
  command -v ninja >/dev/null && GENERATOR=(-G Ninja)

  # The CUDA LibTorch's CMake files (Caffe2's cuda.cmake) look for the CUDA
  # toolkit: point them at the nvcc found here.
  CUDA_ARGS=()
  NVCC=$(command -v nvcc || true)
  for candidate in /usr/local/cuda/bin/nvcc "$TORCH_ROOT"/../nvidia/cuda_nvcc/bin/nvcc \
                   "$TORCH_ROOT"/../nvidia/cu*/bin/nvcc; do
    [ -z "$NVCC" ] && [ -x "$candidate" ] && NVCC=$candidate
  done
  if [ -n "$NVCC" ]; then
    CUDA_HOME_FOUND=$(cd "$(dirname "$NVCC")/.." && pwd)
    CUDA_ARGS=(-DCMAKE_CUDA_COMPILER="$NVCC" -DCUDAToolkit_ROOT="$CUDA_HOME_FOUND"
               -DCUDA_TOOLKIT_ROOT_DIR="$CUDA_HOME_FOUND")
    log "nvcc: $NVCC ($("$NVCC" --version | tail -n 1))"
  else
    log "warning: no nvcc found; a CUDA LibTorch's CMake files may refuse to configure"
  fi
  # Only host code is compiled; naming the architecture (H100/H200: 9.0)
  # spares the arch detection of Torch's CMake files.
  export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0}

  # Facts the configure step depends on, so that a failure is easy to read.
  {
    echo "torch prefix: $TORCH_PREFIX"
    echo "gloo headers: $(ls "${TANDEM_GLOO_INCLUDE_DIR:-/usr/include}"/gloo/config.h 2>/dev/null ||
                          echo "missing (no CPU process group; set TANDEM_GLOO_INCLUDE_DIR)")"
    echo "nccl.h: $(ls "$TORCH_ROOT"/../nvidia/nccl/include/nccl.h \
                       "$TORCH_ROOT"/../nvidia/*/include/nccl.h \
                       "${CUDA_HOME_FOUND:-/usr/local/cuda}"/include/nccl.h \
                       /usr/include/nccl.h 2>/dev/null | head -n 1)"
    echo "compiler: $CXX_FOUND ($("$CXX_FOUND" --version | head -n 1))"
    echo "cmake: $(cmake --version | head -n 1)"
  } | tee "$RESULTS/preflight.log" | tee -a "$LOG"

  CONFIGURE=(cmake -S "$SRC" -B "$BUILD" "${GENERATOR[@]}" -DCMAKE_BUILD_TYPE=Release
             -DTANDEM_CORE_ONLY=ON -DTorch_DIR="$TORCH_PREFIX/Torch"
             -DTANDEM_PYTHON="$(command -v "$PYTHON")"
             -DCMAKE_CXX_COMPILER="$CXX_FOUND" "${CUDA_ARGS[@]}")
  # A GPU host has no Debian -dev packages, so no Gloo headers: a copy of
  # /usr/include/gloo carried along (bench/gpu/README.md) gives the Gloo group.
  [ -n "${TANDEM_GLOO_INCLUDE_DIR:-}" ] && CONFIGURE+=(-DTANDEM_GLOO_INCLUDE_DIR="$TANDEM_GLOO_INCLUDE_DIR")
  [ "$TESTS" = 0 ] && CONFIGURE+=(-DTANDEM_BUILD_TESTS=OFF)
  step configure 600 "${CONFIGURE[@]}" || die "configure (see $RESULTS/configure.log)"
  if [ "$MODE" = gpu ]; then
    grep -q "cuda=ON" "$RESULTS/configure.log" ||
      die "CMake did not find a CUDA LibTorch (TANDEM_WITH_CUDA is off): see configure.log"
  fi
  # bench/ is configured only where Google Benchmark is found; the plain
  # programs do not use it, so a bare machine gets an empty stand-in package.
  if [ ! -d "$BUILD/bench/CMakeFiles/bench_mmt_step.dir" ]; then
    log "Google Benchmark not found: configuring bench/ with an empty stand-in for it"
    mkdir -p "$BUILD/stand-in-benchmark"
    cat >"$BUILD/stand-in-benchmark/benchmarkConfig.cmake" <<'EOF'
# Stand-in written by bench/gpu/run.sh: lets bench/ configure without Google
# Benchmark; only the plain programs (bench_mmt_step, bench_mmt_job_check,
# bench_data, ...) are built.
if(NOT TARGET benchmark::benchmark)
  add_library(benchmark::benchmark INTERFACE IMPORTED)
endif()
EOF
    step configure-stand-in 600 "${CONFIGURE[@]}" -Dbenchmark_DIR="$BUILD/stand-in-benchmark" ||
      die "configure with the stand-in (see $RESULTS/configure-stand-in.log)"
  fi
fi
for t in bench_mmt_step bench_mmt_job_check; do
  [ -d "$BUILD/bench/CMakeFiles/$t.dir" ] || die "$t is not a target of $BUILD"
done

# --- 2. Build what this mode runs, in one call (one parallel build graph) -----
TARGETS=(bench_mmt_step bench_mmt_job_check)
TEST_BINARIES=()
if [ "$MODE" = gpu ] && [ "$TESTS" != 0 ]; then
  for t in methods_test worker_test clustering_test; do
    [ -d "$BUILD/tests/CMakeFiles/$t.dir" ] && TEST_BINARIES+=("$t")
  done
  if [ "${#TEST_BINARIES[@]}" = 0 ]; then
    [ "$TESTS" = 1 ] && die "TESTS=1 but GoogleTest was not found (no test targets)"
    log "GoogleTest not found: no test binaries, no ctest -L cuda"
  fi
  TARGETS+=("${TEST_BINARIES[@]}")
fi
step build 1200 cmake --build "$BUILD" --target "${TARGETS[@]}" -j "$JOBS" ||
  die "building ${TARGETS[*]} (see $RESULTS/build.log)"
BENCH=$BUILD/bench/bench_mmt_step
JOB_CHECK=$BUILD/bench/bench_mmt_job_check
: >"$RESULTS/results.jsonl"

# --- CPU smoke mode: both programs, tiny, on the CPU; then done -----------------
if [ "$MODE" = cpu ]; then
  FAILED=0
  step mmt-step-cpu 120 "$BENCH" --backbone small --height 32 --width 32 --batch 8 \
    --ids-per-batch 4 --classes 8 --iters 2 --warmup 1 --device cpu || FAILED=1
  grep '^{"side"' "$RESULTS/mmt-step-cpu.log" | tail -n 1 >>"$RESULTS/results.jsonl"
  step mmt-job-check-cpu 180 "$JOB_CHECK" --devices cpu || FAILED=1
  grep '^{"check"' "$RESULTS/mmt-job-check-cpu.log" | tail -n 1 >>"$RESULTS/results.jsonl"
  [ "$(grep -c . "$RESULTS/results.jsonl")" = 2 ] || FAILED=1
  [ "$FAILED" = 0 ] || die "cpu smoke: a program failed or printed no result line (see $RESULTS)"
  log "cpu smoke: passed in $((SECONDS - START)) s (bench_mmt_step and bench_mmt_job_check on the CPU)"
  exit 0
fi

# --- 3. The MMT job on the CPU and on the GPU: do the losses agree? -------------
JOB_CHECK_STATUS=failed
step mmt-job-check 300 "$JOB_CHECK" --devices cpu,cuda && JOB_CHECK_STATUS=passed
grep '^{"check"' "$RESULTS/mmt-job-check.log" | tail -n 1 >>"$RESULTS/results.jsonl"

# --- 4. The MMT iteration: fp32, then bf16 + channels_last ----------------------
SIZES=(--backbone resnet50 --height 256 --width 128 --batch 64 --ids-per-batch 16 --classes 500
       --iters "$ITERS" --warmup "$WARMUP" --device cuda)
run_bench() {  # NAME SIDE-COMMAND...
  local name=$1
  shift
  if step "$name" 300 "$@"; then
    grep '^{"side"' "$RESULTS/$name.log" | tail -n 1 >>"$RESULTS/results.jsonl"
  else
    log "$name failed; see $RESULTS/$name.log"
  fi
}
run_bench cpp-fp32 "$BENCH" "${SIZES[@]}"
run_bench cpp-bf16-channels-last "$BENCH" "${SIZES[@]}" --bf16 --channels-last
if [ "$PYTHON_TWIN" != 0 ]; then
  run_bench python-fp32 "$PYTHON" "$SRC/bench/mmt_step_reference.py" "${SIZES[@]}"
  run_bench python-bf16-channels-last "$PYTHON" "$SRC/bench/mmt_step_reference.py" "${SIZES[@]}" \
    --bf16 --channels-last
fi

# --- 5. The CUDA tests (ctest -L cuda); the whole binaries when asked -----------
CTEST_STATUS="not run (no test binaries)"
if [ "${#TEST_BINARIES[@]}" -gt 0 ]; then
  if step ctest-cuda 300 ctest --test-dir "$BUILD" -L cuda --output-on-failure; then
    CTEST_STATUS=passed
  else
    CTEST_STATUS="failed (see ctest-cuda.log)"
  fi
  CTEST_STATUS="$CTEST_STATUS; $(grep -E 'tests passed|tests failed' "$RESULTS/ctest-cuda.log" | tail -n 1)"
  if [ "$SUITES" = 1 ]; then
    for t in "${TEST_BINARIES[@]}"; do
      step "$t" 900 "$BUILD/tests/$t" || log "$t: failures, see $RESULTS/$t.log"
    done
  fi
fi

# --- 6. Summary -------------------------------------------------------------------
"$PYTHON" - "$RESULTS/results.jsonl" "$RESULTS/torch.log" "$JOB_CHECK_STATUS" "$CTEST_STATUS" \
  >"$RESULTS/summary.md" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip().startswith("{")]
check = next((r for r in rows if r.get("check") == "mmt_job"), None)
rows = [r for r in rows if "side" in r]
print("MMT iteration, ResNet-50, 256 x 128, batch 64 = 16 x 4, 500 classes, one GPU")
print("(" + " ".join(open(sys.argv[2]).read().split()) + ")\n")
print("| side | precision | images/s | s/iter (mean) | s/iter (median) | first loss "
      "| peak GPU memory per rank, GiB (allocated / reserved) | torch |")
print("| --- | --- | --- | --- | --- | --- | --- | --- |")
for r in rows:
    mode = "bf16 autocast" if r["bf16"] else "fp32"
    mode += " + channels_last" if r["channels_last"] else ""
    memory = "n/a"
    if "peak_gpu_memory_bytes" in r:
        memory = (f"{r['peak_gpu_memory_bytes'] / 2**30:.2f} / "
                  f"{r.get('peak_gpu_reserved_bytes', 0) / 2**30:.2f}")
    print(f"| {r['side']} | {mode} | {r['images_per_second']:.0f} | {r['seconds_per_iter']:.4f} | "
          f"{r['median_seconds_per_iter']:.4f} | {r['first_loss']:.5f} | {memory} | {r['torch']} |")
by = {(r["side"], r["bf16"]): r for r in rows}
for bf16 in (False, True):
    c, p = by.get(("cpp", bf16)), by.get(("python", bf16))
    if c and p:
        print(f"\n{'bf16' if bf16 else 'fp32'}: C++ / Python = "
              f"{c['images_per_second'] / p['images_per_second']:.2f}")
c, p = by.get(("cpp", True)), by.get(("python", True))
if c:
    # Issue 18's target: in bf16, >= 1,500 images of the global batch per
    # second and >= 1.2x the Python step on the same GPU.
    ratio = c["images_per_second"] / p["images_per_second"] if p else None
    met = c["images_per_second"] >= 1500 and ratio is not None and ratio >= 1.2
    print("\nTarget bf16 >= 1,500 images/s and >= 1.2x the Python step: "
          f"{c['images_per_second']:.0f} images/s, "
          + (f"{ratio:.2f}x the Python step" if ratio is not None else "Python step not measured")
          + (", met" if met else ", not met"))
print("\nMMT job check (2 epochs, synthetic target, Jaccard + DBSCAN pseudo labels, "
      f"CPU vs GPU in fp32): {sys.argv[3]}")
if check:
    for device, d in check.get("per_device", {}).items():
        memory = (f", peak GPU memory {d['peak_gpu_memory_bytes'] / 2**20:.0f} MiB"
                  if "peak_gpu_memory_bytes" in d else "")
        print(f"- {device}: {d['images_per_second']:.0f} images/s, clusters per epoch "
              f"{d['clusters']}{memory}")
    if "max_relative_loss_difference" in check:
        print(f"- largest relative loss difference over {check['compared_iterations']} "
              f"iterations: {check['max_relative_loss_difference']:.2e} "
              f"(tolerance {check['tolerance']:g}); pass: {check['pass']}")
print(f"\nctest -L cuda: {sys.argv[4]}")
EOF
tee -a "$LOG" <"$RESULTS/summary.md"
log "done in $((SECONDS - START)) s; results in $RESULTS"
