"""Read throughput of mpigd's CSV and LIBSVM readers against numpy.loadtxt and scikit-learn.

    python benchmarks/read_bench.py --rows 200000 --features 20 --ranks 1 2 --repeats 5

The script writes the two files (``mpigd gen`` rows), times the baselines in this process (one
core, the whole file), then launches ``mpiexec -n P`` jobs in which every rank reads its own part
with :func:`mpigd.data.load_shard`; a job's time is the slowest rank's, after a barrier. Every
figure is the median of ``--repeats`` runs after one warm-up, with the file in the page cache.
Results go to stdout as a Markdown table and, with ``--json``, to a file.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))


def _median_time(call, repeats: int) -> tuple[float, float, float]:
    call()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples), min(samples), max(samples)


def worker(path: str, repeats: int) -> None:
    """Under mpiexec: time load_shard on every rank; rank 0 prints the slowest rank's times."""
    import numpy as np

    from mpigd import Config
    from mpigd.comm import world
    from mpigd.data import load_shard

    comm = world()
    config = Config(data=path, model="linear")
    samples = []
    for attempt in range(repeats + 1):
        comm.barrier()
        start = comm.wtime()
        load_shard(config, comm)
        elapsed = np.array([comm.wtime() - start])
        comm.allreduce_max(elapsed)
        if attempt:  # the first read is the warm-up (JIT cache load, page cache)
            samples.append(float(elapsed[0]))
    if comm.rank == 0:
        print(json.dumps({"median_s": statistics.median(samples), "min_s": min(samples), "max_s": max(samples)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--features", type=int, default=20)
    parser.add_argument("--density", type=float, default=0.3, help="LIBSVM non-zero fraction")
    parser.add_argument("--ranks", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dir", default=None, help="where to write the files (default: a temporary directory)")
    parser.add_argument("--json", default=None)
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.repeats)
        return

    import numpy as np
    from sklearn.datasets import load_svmlight_file

    from mpigd.comm import self_comm
    from mpigd.data import generate
    from mpirun import run_mpi

    directory = args.dir or tempfile.mkdtemp(prefix="mpigd-read-")
    files = {"csv": os.path.join(directory, "bench.csv"), "libsvm": os.path.join(directory, "bench.libsvm")}
    for fmt, path in files.items():
        density = args.density if fmt == "libsvm" else 1.0
        generate.write(generate.Spec(args.rows, args.features, "regression", 0, fmt, path, density), self_comm())
    baselines = {
        "csv": ("numpy.loadtxt", lambda: np.loadtxt(files["csv"], delimiter=",", skiprows=1)),
        "libsvm": ("sklearn load_svmlight_file", lambda: load_svmlight_file(files["libsvm"])),
    }
    version = [self_comm().library()]
    results = []
    for fmt, path in files.items():
        megabytes = os.path.getsize(path) / 1e6
        name, call = baselines[fmt]
        base, low, high = _median_time(call, args.repeats)
        results.append({"format": fmt, "reader": name, "ranks": 1, "mb": megabytes, "median_s": base,
                        "min_s": low, "max_s": high, "mb_per_s_per_rank": megabytes / base, "speedup": 1.0})
        for ranks in args.ranks:
            done = run_mpi(ranks, [os.path.abspath(__file__), "--worker", path, "--repeats", str(args.repeats)],
                           timeout=600)
            if done.returncode != 0:
                raise SystemExit(done.stderr)
            timing = json.loads(done.stdout.strip().splitlines()[-1])
            results.append({"format": fmt, "reader": "mpigd", "ranks": ranks, "mb": megabytes, **timing,
                            "mb_per_s_per_rank": megabytes / ranks / timing["median_s"],
                            "speedup": base / timing["median_s"]})
    meta = {"rows": args.rows, "features": args.features, "libsvm_density": args.density, "dtype": "float64",
            "repeats": args.repeats, "mpi": version[0] if version else "?", "python": platform.python_version(),
            "cpus": os.cpu_count()}
    print(f"rows {args.rows}, features {args.features}, LIBSVM density {args.density}, {meta['mpi']}")
    print("| format | reader | ranks | file MB | median s (min-max) | MB/s per rank | speed-up vs baseline |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['format']} | {r['reader']} | {r['ranks']} | {r['mb']:.1f} | {r['median_s']:.3f} "
              f"({r['min_s']:.3f}-{r['max_s']:.3f}) | {r['mb_per_s_per_rank']:.1f} | {r['speedup']:.2f}x |")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump({"meta": meta, "results": results}, handle, indent=2)


if __name__ == "__main__":
    main()
