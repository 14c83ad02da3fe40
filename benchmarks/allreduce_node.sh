#!/usr/bin/env bash
# The allreduce figures of benchmarks/RESULTS.md on one node, in one go: per rank count a tune, then
# a bench run per occurrence of that count, the ring with and without blocks (ring_blocks.py, 3+ ranks),
# then issue 3's targets (allreduce_targets.py) of every run.
#   benchmarks/allreduce_node.sh OUTDIR ["4 4 4 2 8"]
# Runs the mpiexec and python3 on PATH (in a checkout, 'source run/_env.sh' first). PYTHON picks the
# interpreter, REPEATS the bench's repeats (15), BENCH_ARGS more bench options ("--max-bytes 1M").
set -euo pipefail
out=${1:?usage: benchmarks/allreduce_node.sh OUTDIR [rank counts, default "4 4 4 2 8"]}
counts=${2:-4 4 4 2 8}
for ranks in $counts; do
  # mpiexec -n x (or 0) ran one process: a one-rank tune and bench filed as allreduce-xranks-run1.
  case "$ranks" in
    *[!0-9]*|0*) echo "allreduce_node.sh: rank counts are integers >= 1, such as \"4 4 2 8\"; got '$ranks'" >&2; exit 2 ;;
  esac
done
python=${PYTHON:-python3}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$out"
{ date -u; getconf _NPROCESSORS_ONLN; lscpu 2>/dev/null | grep -E 'Model name|Thread|Core|Socket|cache|NUMA' || true
  "$python" -m mpigd info 2>/dev/null || true; } > "$out/machine.txt"

declare -A runs=()
for ranks in $counts; do
  runs[$ranks]=$(( ${runs[$ranks]:-0} + 1 ))
  tune="$out/tune-${ranks}ranks.json"
  if [ ! -f "$tune" ]; then
    mpiexec -n "$ranks" "$python" -m mpigd tune --output "$tune" > "$out/tune-${ranks}ranks.txt"
  fi
  run="$out/allreduce-${ranks}ranks-run${runs[$ranks]}"
  cat /proc/loadavg > "$run.load" 2>/dev/null || true
  # shellcheck disable=SC2086  # BENCH_ARGS is a list of options
  mpiexec -n "$ranks" "$python" -m mpigd bench allreduce --repeats "${REPEATS:-15}" --tune-file "$tune" \
    --json "$run.json" --csv "$run.csv" ${BENCH_ARGS:-} > "$run.txt"
done
# The ring with and without blocks, once per rank count of 3 or more (blocks are tried from 3 ranks).
for ranks in "${!runs[@]}"; do
  if [ "$ranks" -ge 3 ]; then
    mpiexec -n "$ranks" "$python" "$here/ring_blocks.py" >> "$out/ring-blocks.txt"
  fi
done
"$python" "$here/allreduce_targets.py" "$out"/allreduce-*ranks-run*.json | tee "$out/targets.txt"
