# Sourced by the run/ scripts: find the checkout, make sure .venv holds mpigd, put it first on PATH.
# Set MPIGD_VENV to use another virtual environment, MPIGD_PYTHON to pick the interpreter that makes it.
set -euo pipefail
MPIGD_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MPIGD_VENV=${MPIGD_VENV:-$MPIGD_ROOT/.venv}

mpigd_system_mpi() {
  # A system MPI is one whose mpiexec and mpicc are on PATH outside our venv.
  local exe cc
  exe=$(PATH=$(printf '%s' "$PATH" | tr ':' '\n' | grep -vxF "$MPIGD_VENV/bin" | paste -sd:) command -v mpiexec || true)
  cc=$(PATH=$(printf '%s' "$PATH" | tr ':' '\n' | grep -vxF "$MPIGD_VENV/bin" | paste -sd:) command -v mpicc || true)
  [ -n "$exe" ] && [ -n "$cc" ]
}

mpigd_setup() {
  local python=${MPIGD_PYTHON:-python3} stamp="$MPIGD_VENV/.mpigd-installed" want
  want=$(cat "$MPIGD_ROOT/pyproject.toml" | cksum)
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    return 0
  fi
  "$python" -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
    || { echo "mpigd needs Python >= 3.10 (set MPIGD_PYTHON)" >&2; exit 1; }
  [ -x "$MPIGD_VENV/bin/python" ] || "$python" -m venv "$MPIGD_VENV"
  local log="$MPIGD_VENV/install.log" pip=("$MPIGD_VENV/bin/python" -m pip install --upgrade)
  if mpigd_system_mpi; then
    echo "mpigd: installing into $MPIGD_VENV, mpi4py built against the system MPI ($(command -v mpicc))" >&2
    pip+=(--no-binary mpi4py -e "$MPIGD_ROOT[test]")
  else
    echo "mpigd: installing into $MPIGD_VENV with the MPICH wheel (no system MPI found)" >&2
    pip+=(-e "$MPIGD_ROOT[test,mpich]")
  fi
  if ! "${pip[@]}" > "$log" 2>&1; then
    tail -n 30 "$log" >&2
    echo "mpigd: installation failed; the whole log is $log" >&2
    exit 1
  fi
  printf '%s\n' "$want" > "$stamp"
}

mpigd_setup
export PATH="$MPIGD_VENV/bin:$PATH"
# One thread per rank: the ranks are the parallelism.
export NUMBA_NUM_THREADS=${NUMBA_NUM_THREADS:-1} OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

# The mpiexec command line, with the flags this MPI needs to run more ranks than cores.
MPIEXEC=(mpiexec)
if mpiexec --version 2>/dev/null | grep -q 'Open MPI'; then
  MPIEXEC+=(--oversubscribe)
  if [ "$(id -u)" = 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
fi
