"""Local SGD against synchronous SGD: bytes allreduced and final objective, same data, same ranks.

Run from the repository root with the environment of run/_env.sh:

    python benchmarks/local_sgd.py [--ranks 2] [--local-steps 1,2,4,8,16]

Each configuration is one `mpigd train` job under mpiexec (with a timeout); the figures are read
from its summary.json. Prints a Markdown table and writes benchmarks/local_sgd.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from mpirun import mpigd  # noqa: E402 - the test helper knows how to launch mpiexec here

COMMON = ["--model", "logistic", "--rows", "200000", "--features", "32", "--epochs", "5", "--batch-size", "512",
          "--lr", "0.5", "--l2", "1e-4", "--quiet"]


def run(ranks: int, steps: list[int]) -> list[dict]:
    results = []
    with tempfile.TemporaryDirectory() as scratch:
        for h in [0] + steps:
            out = Path(scratch) / f"h{h}"
            algo = ["--algo", "sgd"] if h == 0 else ["--algo", "local-sgd", "--local-steps", str(h)]
            job = mpigd(ranks, "train", *COMMON, *algo, "--out", str(out), timeout=300)
            if job.returncode:
                raise SystemExit(job.stderr)
            summary = json.loads((out / "summary.json").read_text())
            results.append({"algo": "sgd" if h == 0 else f"local-sgd H={h}", "ranks": ranks,
                            "final_loss": summary["final_loss"],
                            "bytes_training": summary["bytes_allreduced_training"],
                            "allreduce_calls": summary["allreduce_calls"],
                            "wall_s": summary["time"]["wall_seconds"],
                            "comm_s": summary["time"]["communication_seconds"]})
    base = results[0]
    for r in results:
        r["bytes_ratio"] = base["bytes_training"] / r["bytes_training"]
        r["loss_vs_sgd"] = r["final_loss"] / base["final_loss"] - 1.0
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--local-steps", default="1,2,4,8,16")
    args = parser.parse_args()
    results = run(args.ranks, [int(h) for h in args.local_steps.split(",")])
    (ROOT / "benchmarks" / "local_sgd.json").write_text(json.dumps(results, indent=2) + "\n")
    print("| algorithm | final objective | vs sgd | bytes allreduced (training) | fewer bytes | wall s |")
    print("|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['algo']} | {r['final_loss']:.6f} | {r['loss_vs_sgd']:+.3%} | {r['bytes_training']:,} | "
              f"{r['bytes_ratio']:.1f}x | {r['wall_s']:.2f} |")


if __name__ == "__main__":
    main()
