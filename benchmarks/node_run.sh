#!/usr/bin/env bash
# Issue 3's targets on a machine with a core per rank, in one call of the device tool, which lends
# such a machine (16 cores) to some sessions for a few minutes; its 'run' copies this checkout there:
#   here, once:  benchmarks/node_wheels.sh
#   then:        run(command="bash benchmarks/node_run.sh", carry=[".whl"], timeout_s=480)
# Installs the wheels of WHEELS (.whl/; if there are none, as in a checkout with run/_env.sh
# sourced, what is installed runs) and puts this checkout's package on PYTHONPATH, runs benchmarks/allreduce_node.sh for the
# rank counts COUNTS ("4 4 4 2") with REPEATS (11), and packs its folder into $OUT/node.tar.gz (the
# tool brings back 8 files at most); prints the targets of every run. Works in WORK (/tmp/mpigd-node).
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
out=${OUT:-/tmp/node-out}
work=${WORK:-/tmp/mpigd-node}
rm -rf "$work" && mkdir -p "$out" "$work/pkg" "$work/node"
wheels=${WHEELS:-.whl}
if compgen -G "$wheels/*.whl" > /dev/null; then
  # --prefix, not --target: --target leaves out the MPICH wheel's lib/ (libmpi.so), which mpi4py loads.
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --prefix "$work/site" "$wheels"/*.whl || exit 1
  export PYTHONPATH=$(echo "$work"/site/lib/python3*/site-packages) PATH=$work/site/bin:$PATH \
    LD_LIBRARY_PATH=$work/site/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
fi
# The package as pyproject.toml installs it (kernels/ is mpigd.kernels), without a build step.
cp -r mpigd "$work/pkg/" && cp -r kernels "$work/pkg/mpigd/kernels"
export PYTHONPATH=$work/pkg${PYTHONPATH:+:$PYTHONPATH} OMP_NUM_THREADS=1 PYTHONUNBUFFERED=1
git log -1 --format='commit %H %cI' > "$work/node/commit.txt" 2>/dev/null
# Away from the checkout: Python puts the working directory first on sys.path, and the checkout's
# mpigd/ has no kernels/ in it.
cd "$work"
python3 -c 'import mpi4py, mpigd.kernels; print(mpigd.kernels.__file__, mpi4py.__file__)' >> node/commit.txt
REPEATS=${REPEATS:-11} bash "$root/benchmarks/allreduce_node.sh" node "${COUNTS:-4 4 4 2}" > node/node.log 2>&1
status=$?
tar czf "$out/node.tar.gz" -C "$work" node
cat "$work/node/node.log"
exit $status
