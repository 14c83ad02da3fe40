#!/usr/bin/env bash
# The wheels benchmarks/node_run.sh installs on a lent machine that cannot reach PyPI: MPICH 5.0.2
# and mpi4py 4.1.2 (the versions of every allreduce figure in RESULTS.md) for its CPython 3.12,
# into .whl/ at the checkout's root, which git is told to ignore (.git/info/exclude). About 15 MB.
#   benchmarks/node_wheels.sh
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  --platform manylinux1_x86_64 -d .whl mpich==5.0.2 mpi4py==4.1.2
ls -l .whl
