#!/usr/bin/env bash
# Builds Tandem's training core against the LibTorch inside a CUDA PyTorch
# and measures one MMT iteration (bench_mmt_step: two students forward +
# backward, two EMA teachers forward, Adam, EMA) for ResNet-50 at 256 x 128,
# batch 64 = 16 x 4, in fp32 and in bf16 (CUDA autocast) with channels_last;
# then the Python twin (bench/mmt_step_reference.py) on the same GPU, and the
# methods/worker GoogleTest suites when GoogleTest is installed.
#
#   bench/gpu/run.sh            # from anywhere; results in $OUT or build-gpu/results
#
# Needs: a CUDA PyTorch in python3, the CUDA toolkit (nvcc) that its CMake
# files ask for, CMake >= 3.22, a C++17 compiler; ninja if present. Nothing is
# downloaded. Environment (all optional):
#   PYTHON=python3         interpreter holding the CUDA PyTorch
#   BUILD_DIR=build-gpu    build folder (relative to the repository root)
#   OUT=...                results folder (default BUILD_DIR/results)
#   JOBS=$(nproc)          build parallelism
#   ITERS=20 WARMUP=5      timed and warm-up iterations per run
#   TESTS=auto|0|1         build and run methods_test/worker_test (auto: if GoogleTest is found)
#   PYTHON_TWIN=1          also time the Python reference on the GPU (0: skip)
# Every step writes its log under the results folder; summary.md and
# results.jsonl hold the figures. See bench/gpu/README.md.
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SRC=$(cd "$HERE/../.." && pwd)
PYTHON=${PYTHON:-python3}
BUILD_DIR=${BUILD_DIR:-build-gpu}
case "$BUILD_DIR" in /*) BUILD=$BUILD_DIR ;; *) BUILD=$SRC/$BUILD_DIR ;; esac
RESULTS=${OUT:-$BUILD/results}
JOBS=${JOBS:-$(nproc 2>/dev/null || echo 8)}
ITERS=${ITERS:-20}
WARMUP=${WARMUP:-5}
TESTS=${TESTS:-auto}
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
log "repository $SRC, build $BUILD, results $RESULTS"

# --- 1. What this machine has -------------------------------------------------
command -v nvidia-smi >/dev/null && nvidia-smi >"$RESULTS/nvidia-smi.log" 2>&1
TORCH_OK=0
"$PYTHON" - >"$RESULTS/torch.log" 2>&1 <<'EOF' || TORCH_OK=$?
import torch, sys
print("torch", torch.__version__, "cuda", torch.version.cuda,
      "cudnn", torch.backends.cudnn.version())
print("cmake_prefix_path", torch.utils.cmake_prefix_path)
if not torch.cuda.is_available():
    sys.exit("torch.cuda.is_available() is False")
print("device", torch.cuda.get_device_name(0), "capability", torch.cuda.get_device_capability(0))
print("bf16", torch.cuda.is_bf16_supported())
EOF
tee -a "$LOG" <"$RESULTS/torch.log"
[ "$TORCH_OK" = 0 ] || die "$PYTHON has no CUDA PyTorch that sees a GPU (see torch.log)"
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
  log "warning: no nvcc found; the CUDA LibTorch's CMake files may refuse to configure"
fi
# Only host code is compiled; naming the architecture (H100/H200: 9.0) spares
# the arch detection of Torch's CMake files.
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

# --- 2. Configure and build ---------------------------------------------------
CONFIGURE=(cmake -S "$SRC" -B "$BUILD" "${GENERATOR[@]}" -DCMAKE_BUILD_TYPE=Release
           -DTANDEM_CORE_ONLY=ON -DTorch_DIR="$TORCH_PREFIX/Torch"
           -DTANDEM_PYTHON="$(command -v "$PYTHON")"
           -DCMAKE_CXX_COMPILER="$CXX_FOUND" "${CUDA_ARGS[@]}")
# A GPU host has no Debian -dev packages, so no Gloo headers: a copy of
# /usr/include/gloo carried along (bench/gpu/README.md) gives the Gloo group.
[ -n "${TANDEM_GLOO_INCLUDE_DIR:-}" ] && CONFIGURE+=(-DTANDEM_GLOO_INCLUDE_DIR="$TANDEM_GLOO_INCLUDE_DIR")
[ "$TESTS" = 0 ] && CONFIGURE+=(-DTANDEM_BUILD_TESTS=OFF)
step configure 600 "${CONFIGURE[@]}" || die "configure (see $RESULTS/configure.log)"
grep -q "cuda=ON" "$RESULTS/configure.log" ||
  die "CMake did not find a CUDA LibTorch (TANDEM_WITH_CUDA is off): see configure.log"
# bench/ is configured only where Google Benchmark is found; bench_mmt_step
# does not use it, so a bare machine gets an empty stand-in package.
if [ ! -d "$BUILD/bench/CMakeFiles/bench_mmt_step.dir" ]; then
  log "Google Benchmark not found: configuring bench/ with an empty stand-in for it"
  mkdir -p "$BUILD/stand-in-benchmark"
  cat >"$BUILD/stand-in-benchmark/benchmarkConfig.cmake" <<'EOF'
# Stand-in written by bench/gpu/run.sh: lets bench/ configure without Google
# Benchmark; only the plain programs (bench_mmt_step, bench_data) are built.
if(NOT TARGET benchmark::benchmark)
  add_library(benchmark::benchmark INTERFACE IMPORTED)
endif()
EOF
  step configure-stand-in 600 "${CONFIGURE[@]}" -Dbenchmark_DIR="$BUILD/stand-in-benchmark" ||
    die "configure with the stand-in (see $RESULTS/configure-stand-in.log)"
  [ -d "$BUILD/bench/CMakeFiles/bench_mmt_step.dir" ] ||
    die "bench_mmt_step is not a target of $BUILD"
fi
step build-bench 1200 cmake --build "$BUILD" --target bench_mmt_step -j "$JOBS" ||
  die "building bench_mmt_step (see $RESULTS/build-bench.log)"
BENCH=$BUILD/bench/bench_mmt_step

# --- 3. The MMT iteration: fp32, then bf16 + channels_last ----------------------
SIZES=(--backbone resnet50 --height 256 --width 128 --batch 64 --ids-per-batch 16 --classes 500
       --iters "$ITERS" --warmup "$WARMUP" --device cuda)
: >"$RESULTS/results.jsonl"
run_bench() {  # NAME SIDE-COMMAND...
  local name=$1
  shift
  if step "$name" 600 "$@"; then
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

# --- 4. The methods and worker suites (CUDA tests included) ---------------------
if [ "$TESTS" != 0 ]; then
  if [ -d "$BUILD/tests/CMakeFiles/methods_test.dir" ]; then
    for t in methods_test worker_test; do
      if step "build-$t" 1200 cmake --build "$BUILD" --target "$t" -j "$JOBS"; then
        step "$t" 900 "$BUILD/tests/$t" || log "$t: failures, see $RESULTS/$t.log"
      else
        log "building $t failed; see $RESULTS/build-$t.log"
      fi
    done
  elif [ "$TESTS" = 1 ]; then
    die "TESTS=1 but GoogleTest was not found (no methods_test target)"
  else
    log "GoogleTest not found: methods_test and worker_test not built"
  fi
fi

# --- 5. Summary -----------------------------------------------------------------
"$PYTHON" - "$RESULTS/results.jsonl" "$RESULTS/torch.log" >"$RESULTS/summary.md" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip().startswith("{")]
print("MMT iteration, ResNet-50, 256 x 128, batch 64 = 16 x 4, 500 classes, one GPU")
print("(" + " ".join(open(sys.argv[2]).read().split()) + ")\n")
print("| side | precision | images/s | s/iter (mean) | s/iter (median) | first loss | torch |")
print("| --- | --- | --- | --- | --- | --- | --- |")
for r in rows:
    mode = "bf16 autocast" if r["bf16"] else "fp32"
    mode += " + channels_last" if r["channels_last"] else ""
    print(f"| {r['side']} | {mode} | {r['images_per_second']:.0f} | {r['seconds_per_iter']:.4f} | "
          f"{r['median_seconds_per_iter']:.4f} | {r['first_loss']:.5f} | {r['torch']} |")
by = {(r["side"], r["bf16"]): r for r in rows}
for bf16 in (False, True):
    c, p = by.get(("cpp", bf16)), by.get(("python", bf16))
    if c and p:
        print(f"\n{'bf16' if bf16 else 'fp32'}: C++ / Python = "
              f"{c['images_per_second'] / p['images_per_second']:.2f}")
c = by.get(("cpp", True))
if c:
    verdict = "met" if c["images_per_second"] >= 1000 else "not met"
    print(f"\nTarget >= 1,000 images/s in bf16: {c['images_per_second']:.0f} images/s, {verdict}")
EOF
tee -a "$LOG" <"$RESULTS/summary.md"
log "done; results in $RESULTS"
