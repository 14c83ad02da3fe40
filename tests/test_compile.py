"""`mpigd compile`: the kernels of every training path compiled into Numba's cache ahead of a job,
so that the job's ranks load them instead of compiling them, each, on their first step."""

import json
import re

import pytest

from mpigd.config import DTYPES, MODELS, Config
from mpigd.errors import UsageError
from mpigd.warmup import workloads
from mpirun import mpigd, refused_in_one_line


def _misses(out, *args: str, ranks: int, env: dict) -> int:
    job = mpigd(ranks, "train", "--rows", "3000", "--features", "12", "--epochs", "2", "--lr", "0.05", "--quiet",
                "--out", str(out), *args, env=env, timeout=180)
    assert job.returncode == 0, job.stderr
    jit = json.loads((out / "summary.json").read_text())["jit"]
    assert jit["cache_hits"] + jit["cache_misses"] >= 1
    return jit["cache_misses"]


def test_compile_on_two_ranks_fills_the_cache_that_later_runs_only_load(tmp_path):
    env = {"NUMBA_CACHE_DIR": str(tmp_path / "cache")}
    first = mpigd(2, "compile", "--models", "linear", "--dtype", "float64", env=env, timeout=400)
    assert first.returncode == 0, first.stderr
    compiled = re.search(r"compiled (\d+) kernels and loaded (\d+) from the cache", first.stdout)
    assert compiled and int(compiled.group(1)) > 0, first.stdout
    again = mpigd(2, "compile", "--models", "linear", "--dtype", "float64", env=env, timeout=120)
    assert again.returncode == 0 and "compiled 0 kernels" in again.stdout, again.stdout + again.stderr

    # Sizes, rank counts and options other than the warm-up's own: the same kernels serve them.
    runs = [(1, "--algo", "sgd", "--batch-size", "8", "--optimizer", "nesterov"),
            (2, "--algo", "sgd", "--batch-size", "8", "--optimizer", "adam", "--strategy", "ring"),
            (2, "--algo", "gd", "--l1", "1e-3"),
            (1, "--algo", "lbfgs"),
            (2, "--algo", "local-sgd", "--batch-size", "4", "--density", "0.005", "--features", "900"),
            (2, "--algo", "sgd", "--batch-size", "6", "--density", "0.005", "--features", "900")]  # gathered
    for number, (ranks, *args) in enumerate(runs):
        assert _misses(tmp_path / f"run{number}", "--model", "linear", *args, ranks=ranks, env=env) == 0, args
    assert json.loads((tmp_path / "run5" / "summary.json").read_text())["gradient_exchange"] == "allgather"
    # A model left out (linear and logistic share their kernels) compiles on its first run: the
    # counts above could have failed.
    assert _misses(tmp_path / "softmax", "--model", "softmax", ranks=1, env=env) > 0


def test_compile_refuses_an_unknown_model_in_one_line():
    refused_in_one_line(mpigd(2, "compile", "--models", "linear,svm"), "--models")


def test_every_warm_up_training_is_a_configuration_training_accepts():
    plan = workloads()
    assert {settings["model"] for settings in plan} == set(MODELS)
    assert {settings["dtype"] for settings in plan} == set(DTYPES)
    for settings in plan:
        Config(**settings)  # raises UsageError on a combination training refuses


@pytest.mark.parametrize("models, dtypes", [(("linear", "svm"), DTYPES), (("linear",), ("float16",)), ((), DTYPES)])
def test_the_python_api_refuses_unknown_models_and_dtypes(models, dtypes):
    with pytest.raises(UsageError):
        workloads(models, dtypes)
