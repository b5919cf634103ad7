#!/usr/bin/env bash
# The service path's overhead: the same job run by `tandem train` directly
# and through a local deployment (tandem server + one tandem worker;
# `tandem submit SPEC --watch`), alternating, RUNS times each, on one
# machine, the order alternating. Prints each wall time and ratio, the
# medians and the overhead (median ratio - 1; issue 8's target: under 5%).
#   bench/service_overhead.sh [BUILD_DIR] [RUNS] [EPOCHS]
# THREADS=N: N intra-op threads for both runs (OMP_NUM_THREADS, and the
# worker's --threads); default: every core.
set -euo pipefail
build=${1:-build}
runs=${2:-3}
epochs=${3:-5}
tandem=$(cd "$build" && pwd)/cli/tandem
work=$(mktemp -d "${TMPDIR:-/tmp}/tandem-service-overhead-XXXXXX")
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [ -n "${KEEP:-}" ] || rm -rf "$work"
}
trap cleanup EXIT

"$tandem" synth --out "$work/market" --domain market --ids 100 --seed 1 \
  --height 64 --width 32 --quiet
"$tandem" synth --out "$work/duke" --domain duke --ids 100 --seed 1 \
  --height 64 --width 32 --quiet
spec() {  # spec OUTPUT_DIR
  cat <<YAML
kind: pretrain
output_dir: $1
source: {kind: market1501, root: $work/market}
target: {kind: market1501, root: $work/duke}
backbone: small
backbone_width: 16
backbone_depth: 2
height: 64
width: 32
identities: 8
instances: 4
iters: 30
epochs: $epochs
warmup_epochs: 1
lr: 0.003
eval_every: 0
loader_threads: 2
YAML
}

port=$(shuf -i 20000-60000 -n 1)
"$tandem" server --listen "127.0.0.1:$port" --db "$work/tandem.db" --jobs-dir "$work/jobs" \
  > "$work/server.log" 2>&1 &
pids+=($!)
for _ in $(seq 300); do "$tandem" health --target "127.0.0.1:$port" > /dev/null 2>&1 && break; sleep 0.1; done
threads=${THREADS:-0}
"$tandem" worker --server "127.0.0.1:$port" --threads "$threads" > "$work/worker.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do grep -q registered "$work/server.log" && break; sleep 0.1; done

now() { date +%s.%N; }
minus() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a - b}'; }
direct=()
service=()
run_direct() {
  spec "$work/direct-$1" > "$work/direct-$1.yaml"
  local start
  start=$(now)
  if ((threads > 0)); then
    OMP_NUM_THREADS=$threads "$tandem" train "$work/direct-$1.yaml" --quiet > "$work/direct-$1.log" 2>&1
  else
    "$tandem" train "$work/direct-$1.yaml" --quiet > "$work/direct-$1.log" 2>&1
  fi
  direct+=("$(minus "$(now)" "$start")")
}
run_service() {
  spec "$work/service-$1" > "$work/service-$1.yaml"
  local start
  start=$(now)
  "$tandem" submit "$work/service-$1.yaml" --watch --server "127.0.0.1:$port" \
    > "$work/service-$1.log" 2>&1
  service+=("$(minus "$(now)" "$start")")
}
ratios=()
for run in $(seq "$runs"); do
  # Alternate which goes first: the machine's load drifts.
  if ((run % 2)); then run_direct "$run"; run_service "$run"; else run_service "$run"; run_direct "$run"; fi
  ratios+=("$(awk -v s="${service[-1]}" -v d="${direct[-1]}" 'BEGIN {printf "%.4f", s / d}')")
  echo "run $run: tandem train ${direct[-1]} s, through the service ${service[-1]} s (x${ratios[-1]})"
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
d=$(median "${direct[@]}")
s=$(median "${service[@]}")
r=$(median "${ratios[@]}")
# The ratios' range, and their mean with two standard errors (~95%).
spread=$(printf '%s\n' "${ratios[@]}" | sort -g | awk '{a[NR]=$1; s+=$1; q+=$1*$1}
  END {m=s/NR; v=(NR>1 ? (q-NR*m*m)/(NR-1) : 0); if (v<0) v=0;
       printf "ratios %.3f .. %.3f, mean %.3f +- %.3f", a[1], a[NR], m, 2*sqrt(v/NR)}')
echo "median: tandem train $d s, service $s s; median ratio $r: overhead $(awk -v r="$r" 'BEGIN {printf "%.1f", 100 * (r - 1)}') % ($spread)"
