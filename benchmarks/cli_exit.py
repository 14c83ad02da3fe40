"""How long a short ``mpigd`` command takes as a whole process, with and without the console's exit.

``python -m mpigd`` ends through :func:`mpigd.cli.console`, which leaves Python's shutdown
collections out; ``main(argv)`` then a plain exit is the same work with them. The two run in turns,
so that the machine's noise falls on both alike; the medians and their ratio are printed.

    python benchmarks/cli_exit.py --rounds 12
    python benchmarks/cli_exit.py --rounds 12 --ranks 2     # each under mpiexec -n 2
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time

COMMAND = ["train", "--rows", "1000", "--features", "8", "--epochs", "2", "--quiet", "--model", "logistic"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--ranks", type=int, default=1, help="run each under mpiexec -n RANKS (1: no mpiexec)")
    args = parser.parse_args()
    launcher = []
    if args.ranks > 1:
        beside = os.path.join(os.path.dirname(sys.executable), "mpiexec")
        launcher = [beside if os.path.exists(beside) else shutil.which("mpiexec"), "-n", str(args.ranks)]
    plain = f"import sys; from mpigd.cli import main; sys.exit(main({COMMAND!r}))"
    contenders = {"main(argv), plain exit": [*launcher, sys.executable, "-c", plain],
                  "python -m mpigd (console)": [*launcher, sys.executable, "-m", "mpigd", *COMMAND]}
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for command in contenders.values():  # untimed: the kernels into the cache, the files into memory
        subprocess.run(command, check=True)
    for _ in range(args.rounds):
        for name, command in contenders.items():
            started = time.perf_counter()
            subprocess.run(command, check=True)
            times[name].append(time.perf_counter() - started)
    base = statistics.median(times["main(argv), plain exit"])
    for name, seconds in times.items():
        middle = statistics.median(seconds)
        print(f"{name:28s} median {middle:.3f} s (min {min(seconds):.3f}, max {max(seconds):.3f})  "
              f"x{middle / base:.2f}")


if __name__ == "__main__":
    main()
