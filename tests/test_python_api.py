"""Every command has a Python twin (README, *Python API*): the same result, and the same refusals,
raised as :class:`mpigd.UsageError` with the command's one-line message. Real runs on one rank,
tiny sizes; the command is run in this process through :func:`mpigd.cli.main`."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from mpigd import UsageError
from mpigd.bench import allreduce, kernel, plan, scaling, solvers, sparse
from mpigd.cli import main
from mpigd.comm import self_comm, tuning
from mpigd.data import generate
from mpigd.info import describe
from mpigd.outputs import json_text
from mpirun import mpigd, refused_in_one_line, run_mpi


def cli_error(capsys, *args: str) -> str:
    """The one error line ``mpigd ARGS`` prints, without its ``mpigd: error: `` prefix."""
    capsys.readouterr()
    assert main(list(args)) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mpigd: error: "), lines
    return lines[0].removeprefix("mpigd: error: ")


def python_error(call, *args, **kwargs) -> str:
    with pytest.raises(UsageError) as raised:
        call(*args, **kwargs)
    return str(raised.value)


def cli_json(capsys, path, *args: str):
    assert main([*args, "--json", str(path)]) == 0, capsys.readouterr().err
    return json.loads(path.read_text())


def as_json(data):
    """``data`` as the commands write it (tuples become lists, NaN null)."""
    return json.loads(json_text(data))


# -- gen ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["csv", "libsvm", "npy"])
def test_gen_from_python_writes_the_bytes_of_the_command(tmp_path, fmt):
    ours, theirs = tmp_path / f"py.{fmt}", tmp_path / f"cli.{fmt}"
    spec = generate.Spec(rows=40, features=3, task="regression", seed=5, format=fmt, output=str(ours), density=0.5)
    size = generate.write(spec, None if fmt == "csv" else self_comm())  # None: every rank of the job (here one)
    assert main(["gen", "--rows", "40", "--features", "3", "--task", "regression", "--seed", "5", "--format", fmt,
                 "--density", "0.5", "--output", str(theirs), "--quiet"]) == 0
    files = ["X.npy", "y.npy"] if fmt == "npy" else [""]
    assert size == sum((ours / name).stat().st_size for name in files) > 0
    for name in files:
        assert (ours / name).read_bytes() == (theirs / name).read_bytes()


@pytest.mark.parametrize("fmt", ["csv", "npy"])
def test_gen_from_python_takes_a_path_as_config_does(tmp_path, fmt):
    # A pathlib.Path output failed in the check of the output ('PosixPath' object has no attribute 'endswith').
    spec = generate.Spec(rows=20, features=2, task="classification", seed=0, format=fmt, output=tmp_path / f"g.{fmt}")
    assert spec.output == str(tmp_path / f"g.{fmt}")
    assert generate.write(spec, self_comm()) > 0 and (tmp_path / f"g.{fmt}").exists()


def test_gen_refuses_what_the_command_refuses(tmp_path, capsys):
    (tmp_path / "a_file").write_text("keep me\n")
    below = str(tmp_path / "a_file" / "g.csv")
    message = python_error(generate.write, generate.Spec(10, 2, "classification", 0, "csv", below), self_comm())
    assert message == cli_error(capsys, "gen", "--rows", "10", "--features", "2", "--format", "csv", "--output", below)
    assert "is not a directory" in message and (tmp_path / "a_file").read_text() == "keep me\n"
    message = python_error(generate.Spec, 0, 2, "classification", 0, "csv", str(tmp_path / "g.csv"))
    assert message == cli_error(capsys, "gen", "--rows", "0", "--features", "2", "--format", "csv",
                                "--output", str(tmp_path / "g.csv"))


@pytest.mark.parametrize("option, value, words", [("--rows", "0", "--rows must be an integer >= 1, got 0"),
                                                  ("--features", "0", "--features must be an integer >= 1, got 0"),
                                                  ("--seed", "-1", "--seed must be an integer >= 0, got -1"),
                                                  ("--density", "1.0", "--density must lie in [0, 1), got 1.0")])
def test_gen_names_the_option_it_refuses_as_train_does(tmp_path, capsys, option, value, words):
    # It said "gen needs rows >= 1, features >= 1 and seed >= 0" whichever was wrong, and "density"
    # without its dashes; train words the same refusals as these.
    options = {"--rows": "10", "--features": "2", "--seed": "0", "--density": "0", option: value}
    args = [word for pair in options.items() for word in pair]
    assert cli_error(capsys, "gen", *args, "--format", "csv", "--output", str(tmp_path / "g.csv")) == words
    assert cli_error(capsys, "train", *args, "--epochs", "1") == words
    assert not (tmp_path / "g.csv").exists()


# -- predict and evaluate -------------------------------------------------------------------------------------


def test_predict_and_evaluate_from_python_take_the_communicators_train_takes(tmp_path, capsys):
    # They took a Communicator alone: None and an mpi4py communicator, which train and the other
    # twins take, failed with AttributeError ('NoneType' object has no attribute 'together').
    from mpi4py import MPI

    from mpigd import Config, train
    from mpigd.predict import evaluate_file, predict

    out = tmp_path / "run"
    train(Config(model="linear", rows=300, features=3, epochs=3, out=str(out), quiet=True), comm=self_comm())
    params, data = out / "params.npz", Config(rows=300, features=3)
    assert main(["predict", "--params", str(params), "--rows", "300", "--features", "3",
                 "--output", str(tmp_path / "cli.npy"), "--quiet"]) == 0, capsys.readouterr().err
    for comm in (None, MPI.COMM_SELF, self_comm()):
        ours = tmp_path / "py.npy"
        assert predict(data, str(params), str(ours), comm)["rows"] == 300
        assert ours.read_bytes() == (tmp_path / "cli.npy").read_bytes()
        assert evaluate_file(data, str(params), comm)["rows"] == 300
    assert predict(data, str(params), str(tmp_path / "default.npy"))["rows"] == 300  # comm=None by default
    assert evaluate_file(data, str(params)) == evaluate_file(data, str(params), self_comm())


def test_predict_and_evaluate_from_python_take_paths_as_config_does(tmp_path):
    # A pathlib.Path output failed in the check of the output ('PosixPath' object has no attribute 'endswith').
    from mpigd import Config, train
    from mpigd.predict import evaluate_file, predict

    out = tmp_path / "run"
    train(Config(model="logistic", rows=300, features=3, epochs=3, out=out, quiet=True), comm=self_comm())
    data = Config(rows=300, features=3)
    assert predict(data, out / "params.npz", tmp_path / "p.npy", self_comm())["output"] == str(tmp_path / "p.npy")
    assert np.load(tmp_path / "p.npy").shape == (300,)
    evaluated = evaluate_file(data, out / "params.npz", self_comm(), output=tmp_path / "m.json")
    assert evaluated == evaluate_file(data, str(out / "params.npz"), self_comm())
    with pytest.raises(UsageError, match="writing it would destroy the input"):
        evaluate_file(data, out / "params.npz", self_comm(), output=out / "model.json")


# -- tune -----------------------------------------------------------------------------------------------------


def test_tune_from_python_writes_a_file_the_command_line_accepts(tmp_path, capsys):
    result = tuning.calibrate(self_comm(), allreduce.message_sizes(8, 1024), repeats=1)
    assert result.ranks == 1 and result.model.gamma > 0
    path = tuning.save(result, tmp_path / "tune.json")
    assert tuning.load(path).model == result.model
    assert main(["train", "--rows", "200", "--features", "3", "--epochs", "1", "--strategy", "auto",
                 "--tune-file", str(path), "--quiet"]) == 0, capsys.readouterr().err
    # plan takes alpha and beta from it: on one rank they are not measured (0), and it says so.
    assert "on 1 rank, which sends no message" in cli_error(capsys, "plan", "--nodes", "4", "--rows", "100",
                                                             "--features", "3", "--compute-rate", "1e6",
                                                             "--tune-file", str(path))
    assert tuning.save(result) == tuning.default_path(1)  # no path: where auto and ring look by default


def test_tune_refuses_what_the_command_refuses(capsys):
    message = python_error(allreduce.message_sizes, 2048, 1024)
    assert message == cli_error(capsys, "tune", "--min-bytes", "2K", "--max-bytes", "1K")
    assert message == "--min-bytes (2048) is larger than --max-bytes (1024)"
    message = python_error(tuning.calibrate, self_comm(), allreduce.message_sizes(8, 100000 << 30), repeats=1)
    assert message == cli_error(capsys, "tune", "--max-bytes", "100000G", "--repeats", "1")
    assert message.startswith("--max-bytes 107,374,182,400,000 needs about")
    assert "--dtype" in python_error(tuning.calibrate, self_comm(), [8], dtype="int32")
    assert "--repeats" in python_error(tuning.calibrate, self_comm(), [8], repeats=0)


# -- info -----------------------------------------------------------------------------------------------------


def test_info_from_python_has_what_the_command_prints(capsys):
    facts = describe()
    assert facts == describe(self_comm()) and facts["ranks"] == "1"
    capsys.readouterr()
    assert main(["info"]) == 0
    width = max(map(len, facts))
    assert capsys.readouterr().out.splitlines() == [f"{key:<{width}}  {value}" for key, value in facts.items()]


LAUNCH_OF_TWO = {"MPIGD_EXPECT_RANKS": "2"}  # what slurm/*.sbatch sets; the job below has 1 rank
EXPECTED_TWO = "this job should have 2 ranks but MPI sees 1: the launcher started independent processes"


def test_a_python_caller_without_a_communicator_gets_the_launch_check_of_the_commands():
    # As srun with the wrong --mpi plugin: one-rank worlds where the script asked for two.
    script = """
import numpy as np
from mpigd import Config, UsageError, train
import mpigd.comm
from mpigd.info import describe
for name, call in [("train", lambda: train(Config(model="linear", rows=50, features=2, epochs=1, quiet=True))),
                   ("allreduce", lambda: mpigd.comm.allreduce(np.ones(3))),
                   ("as_communicator", lambda: mpigd.comm.as_communicator(None))]:
    try:
        call()
        print(name, "ran")
    except UsageError as error:
        print(name, "refused:", error)
print("info sees", mpigd.comm.world(check_launch=False).size, describe()["ranks"])
"""
    job = run_mpi(1, ["-c", script], timeout=120, env=LAUNCH_OF_TWO)
    assert job.returncode == 0, job.stderr
    lines = job.stdout.splitlines()
    assert [line.split(" refused: ")[0] for line in lines[:3]] == ["train", "allreduce", "as_communicator"]
    assert all(EXPECTED_TWO in line for line in lines[:3]), lines
    assert lines[3] == "info sees 1 1"


def test_every_command_that_starts_mpi_refuses_the_wrong_launch_but_info(tmp_path):
    info = mpigd(1, "info", env=LAUNCH_OF_TWO)
    assert info.returncode == 0 and any(line.split() == ["ranks", "1"] for line in info.stdout.splitlines()), info
    # tune took the world without the check before the check moved into mpigd.comm
    refused_in_one_line(mpigd(1, "tune", "--output", str(tmp_path / "t.json"), env=LAUNCH_OF_TWO), EXPECTED_TWO)
    assert not (tmp_path / "t.json").exists()


@pytest.mark.parametrize("value", ["abc", "0", "2x"])
def test_a_launch_check_that_is_not_a_rank_count_is_refused_not_ignored(value):
    # It was read as "not set": the check that catches independent one-rank worlds was off, silently.
    refused_in_one_line(mpigd(1, "train", "--rows", "20", "--features", "2", "--epochs", "1",
                              env={"MPIGD_EXPECT_RANKS": value}),
                        f"MPIGD_EXPECT_RANKS must be the job's rank count, an integer >= 1; got {value!r}")


# -- plan -----------------------------------------------------------------------------------------------------


def test_plan_from_python_returns_the_rows_of_the_command(tmp_path, capsys):
    ours = plan.make_plan("softmax", 1_000_000, 32, 64, rate=1e7, network="ib100")
    theirs = cli_json(capsys, tmp_path / "plan.json", "plan", "--nodes", "64", "--rows", "1000000", "--features",
                      "32", "--model", "softmax", "--compute-rate", "1e7", "--network", "ib100")
    assert as_json(ours["records"]) == theirs["records"] and len(theirs["records"]) == 7
    assert ours["n_params"] == theirs["n_params"] == 33 * 10  # the command's default of 10 classes
    assert as_json(ours["parameters"]) == theirs["parameters"] and ours["sources"] == theirs["sources"]
    assert ours["metadata"].items() <= theirs["metadata"].items()  # the command adds its command line


PLAN = ("plan", "--nodes", "4", "--rows", "100", "--features", "3")


@pytest.mark.parametrize("options, arguments", [
    (("--nodes", "0"), {"max_nodes": 0}),
    (("--classes", "1"), {"classes": 1}),
    (("--beta", "-1"), {"beta": -1.0}),
    (("--alpha", "nan"), {"alpha": math.nan}),
    (("--gamma", "inf"), {"gamma": math.inf}),
    (("--compute-rate", "-1"), {"rate": -1.0}),
    (("--compute-rate", "inf"), {"rate": math.inf}),
    (("--features", "1000000000"), {"features": 1_000_000_000, "rate": None}),
    (("--tune-file", "/nonexistent/tune.json"), {"tune_file": "/nonexistent/tune.json"}),
], ids=["nodes", "classes", "beta", "alpha-nan", "gamma-inf", "rate", "rate-inf", "memory", "tune-file"])
def test_plan_refuses_what_the_command_refuses(capsys, options, arguments):
    given = {"model": "logistic", "rows": 100, "features": 3, "max_nodes": 4, "rate": 1e6, **arguments}
    rate = ("--compute-rate", "1e6") if "rate" not in arguments else ()
    assert python_error(plan.make_plan, **given) == cli_error(capsys, *PLAN, *rate, *options)


def test_plan_refuses_names_the_command_line_would_not_offer():
    assert "--model" in python_error(plan.make_plan, "svm", 100, 3, rate=1e6)
    assert "--network" in python_error(plan.make_plan, "linear", 100, 3, rate=1e6, network="ib1000")
    assert "--hidden" in python_error(plan.make_plan, "mlp", 100, 3, rate=1e6, hidden=(8, 0))


# -- bench kernel, bench sparse -------------------------------------------------------------------------------


def _shape(records, *keys):
    return [{key: record.get(key) for key in keys} for record in records]


def test_bench_kernel_from_python_times_what_the_command_times(tmp_path, capsys):
    ours = kernel.run(64, 4, "float64", 1, models=("linear", "mlp"), layouts=("dense", "sparse"), classes=3,
                      hidden=(3,), density=0.5)
    theirs = cli_json(capsys, tmp_path / "k.json", "bench", "kernel", "--rows", "64", "--features", "4", "--models",
                      "linear,mlp", "--layout", "dense,sparse", "--dtype", "float64", "--classes", "3", "--hidden",
                      "3", "--density", "0.5", "--repeats", "1")["results"]
    keys = ("model", "layout", "variant", "rows", "features", "nnz", "bytes", "skipped")
    assert _shape(ours, *keys) == _shape(theirs, *keys) and len(ours) == 9


@pytest.mark.parametrize("options, arguments", [
    (("--rows", "0"), {"rows": 0}),
    (("--classes", "1"), {"classes": 1}),
    (("--density", "0"), {"density": 0.0}),
    (("--rows", "1000000000", "--features", "1000"), {"rows": 1_000_000_000, "features": 1000}),
], ids=["rows", "classes", "density", "memory"])
def test_bench_kernel_refuses_what_the_command_refuses(capsys, options, arguments):
    given = {"rows": 100, "features": 3, "dtype": "float64", "repeats": 1, **arguments}
    assert python_error(kernel.run, **given) == cli_error(capsys, "bench", "kernel", "--rows", "100", "--features",
                                                          "3", "--repeats", "1", "--dtype", "float64", *options)
    assert "--models" in python_error(kernel.run, 100, 3, "float64", 1, models=("svm",))


def test_bench_sparse_from_python_times_what_the_command_times(tmp_path, capsys):
    ours = sparse.run(200, 20, [0.1, 0.5], classes=3, repeats=1)
    theirs = cli_json(capsys, tmp_path / "s.json", "bench", "sparse", "--rows", "200", "--features", "20",
                      "--densities", "0.1,0.5", "--classes", "3", "--repeats", "1")
    assert theirs["metadata"]["command"].startswith("mpigd bench sparse --rows 200 ")
    assert theirs["metadata"]["git_commit"] and theirs["metadata"]["numba"]
    theirs = theirs["results"]
    keys = ("rows", "features", "density", "nnz", "classes", "kernel")
    assert _shape(ours, *keys) == _shape(theirs, *keys) and ours[0]["nnz"] < ours[1]["nnz"]
    assert "--densities" in python_error(sparse.run, 200, 20, [0.1, 2.0])
    assert "--rows" in python_error(sparse.run, 0, 20, [0.1])


# -- bench allreduce ------------------------------------------------------------------------------------------


def test_bench_allreduce_from_python_times_what_the_command_times(tmp_path, capsys):
    sizes = allreduce.message_sizes(8, 64)
    ours = allreduce.run(self_comm(), sizes, "float32", ["native", "tree"], repeats=1)
    theirs = cli_json(capsys, tmp_path / "a.json", "bench", "allreduce", "--max-bytes", "64", "--dtype", "float32",
                      "--strategies", "native,tree", "--repeats", "1")["results"]
    keys = ("bytes", "count", "dtype", "strategy", "ran", "repeats")
    assert _shape(ours, *keys) == _shape(theirs, *keys) and [r["bytes"] for r in ours[::2]] == [8, 16, 32, 64]
    assert _shape(allreduce.run(None, sizes, "float32", ["native", "tree"], repeats=1), *keys) == _shape(ours, *keys)


def test_bench_allreduce_refuses_what_the_command_refuses(capsys):
    message = python_error(allreduce.run, self_comm(), allreduce.message_sizes(8, 100000 << 30), repeats=1)
    assert message == cli_error(capsys, "bench", "allreduce", "--max-bytes", "100000G", "--repeats", "1")
    message = python_error(allreduce.message_sizes, 8, 4)
    assert message == cli_error(capsys, "bench", "allreduce", "--dtype", "float32", "--max-bytes", "4")
    assert "--strategies" in python_error(allreduce.run, self_comm(), [8], strategies=["svm"])
    assert "--strategies" in python_error(allreduce.run, self_comm(), [8], strategies="native")
    # A tune file that no strategy of the run reads went unread, even one that was no tune file.
    capsys.readouterr()
    allreduce.run(self_comm(), [8], strategies=["native", "tree"], repeats=1, tune_file="t.json")
    assert capsys.readouterr().err == ("mpigd: warning: --tune-file is for auto and ring; --strategies native,tree "
                                       "does not read it\n")


def test_bench_allreduce_and_tune_time_each_message_once_in_whole_elements(tmp_path, capsys):
    # 1 to 12 bytes of float64 are messages of 8 or 16 bytes: five rows said "8 bytes" before.
    sizes = allreduce.message_sizes(1, 12)
    assert sizes == [1, 2, 4, 8, 12]
    rows = allreduce.run(self_comm(), sizes, "float64", ["native"], repeats=1)
    assert [(r["bytes"], r["count"]) for r in rows] == [(8, 1)]
    rows = cli_json(capsys, tmp_path / "a.json", "bench", "allreduce", "--min-bytes", "3", "--max-bytes", "12",
                    "--dtype", "float32", "--strategies", "native", "--repeats", "1")["results"]
    assert [(r["bytes"], r["count"]) for r in rows] == [(4, 1), (12, 3)]
    assert tuning.calibrate(self_comm(), [1, 2, 4, 8, 12, 16], repeats=1).measurements["sizes_bytes"] == [8, 16]


# -- bench scaling, bench scaling-report ----------------------------------------------------------------------


def test_bench_scaling_from_python_measures_what_the_command_measures(tmp_path, capsys):
    ours = scaling.measure(self_comm(), "weak", 500, 4, "linear", "float32", steps=2, warmup=1, strategy="tree")
    records = tmp_path / "records.jsonl"
    assert main(["bench", "scaling", "--mode", "weak", "--rows", "500", "--features", "4", "--model", "linear",
                 "--dtype", "float32", "--steps", "2", "--strategy", "tree", "--output", str(records)]) == 0
    (theirs,) = scaling.read_records(records)
    fixed = ("mode", "ranks", "rows", "rows_per_rank", "features", "model", "dtype", "steps", "bytes_per_allreduce",
             "strategy", "mpi_library")
    assert _shape([ours], *fixed) == _shape([theirs], *fixed) and set(ours) == set(theirs)
    assert ours["strategy"] == "tree"
    assert "--mode" in python_error(scaling.measure, self_comm(), "sideways", 500, 4, "linear", "float32", 2)
    assert "--steps" in python_error(scaling.measure, self_comm(), "strong", 500, 4, "linear", "float32", 0)


def _records(path, *lines: dict) -> str:
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return str(path)


RECORD = {"mode": "strong", "ranks": 1, "rows": 1000, "features": 4, "model": "linear", "dtype": "float64",
          "step_seconds": 0.01, "compute_seconds": 0.008, "communication_seconds": 0.0005, "other_seconds": 0.0015,
          "mpi_library": "MPICH"}


def test_bench_scaling_report_from_python_is_the_command_report(tmp_path, capsys):
    path = _records(tmp_path / "records.jsonl", RECORD, {**RECORD, "ranks": 2, "step_seconds": 0.008})
    ours = scaling.report(path)
    assert ours == scaling.report(scaling.read_records(path)) and ours[1]["speedup"] == pytest.approx(1.25)
    assert as_json(ours) == cli_json(capsys, tmp_path / "r.json", "bench", "scaling-report", path)


@pytest.mark.parametrize("lines, words", [
    (({"a": 1},), "line 1: not a scaling record ('mode' missing"),
    (({**RECORD, "ranks": 2},), "no one-rank run for strong scaling: it is the baseline"),
    ((), "no scaling records"),
], ids=["not-a-record", "no-baseline", "empty"])
def test_bench_scaling_report_refuses_what_the_command_refuses(tmp_path, capsys, lines, words):
    path = _records(tmp_path / "records.jsonl", *lines)
    message = python_error(scaling.report, path)
    assert message == cli_error(capsys, "bench", "scaling-report", path) and message.startswith(f"{path}: {words}")
    assert python_error(scaling.read_records, tmp_path / "missing.jsonl").endswith("No such file or directory")


# -- bench solvers --------------------------------------------------------------------------------------------


def test_bench_solvers_refuses_before_launching_anything(capsys):
    # A real run launches mpiexec per rank count and whole training processes: too slow for this file.
    message = python_error(solvers.run, ["logistic"], 100, 4, 0.0, [1], 1)
    assert message == cli_error(capsys, "bench", "solvers", "--models", "logistic", "--l2", "0", "--rows", "100",
                                "--features", "4", "--ranks", "1", "--repeats", "1")
    assert "--models" in python_error(solvers.run, ["svm"], 100, 4, 1e-4, [1], 1)
    assert "--ranks" in python_error(solvers.run, ["linear"], 100, 4, 1e-4, [], 1)


def test_bench_solvers_refuses_data_that_cannot_fit_memory_in_one_line(capsys):
    # The driver generated the whole data set first: a MemoryError's traceback, exit code 1.
    message = python_error(solvers.run, ["linear"], 10**11, 4, 1e-4, [1], 1)
    assert message == cli_error(capsys, "bench", "solvers", "--models", "linear", "--rows", str(10**11),
                                "--features", "4", "--ranks", "1", "--repeats", "1")
    assert message.startswith("bench solvers' 100,000,000,000 rows x 4 features needs about")
