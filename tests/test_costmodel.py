"""The alpha-beta-gamma cost model and auto's crossover table: pure arithmetic, no mpiexec."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from mpigd.comm.costmodel import CostModel, Crossover, fit_alpha_beta
from mpigd.comm.tuning import Tuning, _eligible, find_tune_file, load, save

MODEL = CostModel(alpha=2e-6, beta=1e-10, gamma=5e-11)


def test_ring_formula():
    n, p = 1 << 20, 4
    expected = 2 * 3 * MODEL.alpha + 2 * 3 / 4 * n * MODEL.beta + 3 / 4 * n * MODEL.gamma
    assert MODEL.ring(n, p) == pytest.approx(expected)


@pytest.mark.parametrize("p, steps, folded", [(2, 1, False), (4, 2, False), (8, 3, False),
                                               (3, 1, True), (5, 2, True), (7, 2, True)])
def test_tree_formula_with_fold(p: int, steps: int, folded: bool):
    n = 4096
    step = MODEL.alpha + n * MODEL.beta + n * MODEL.gamma
    fold = 2 * (MODEL.alpha + n * MODEL.beta) + n * MODEL.gamma if folded else 0.0
    assert MODEL.tree(n, p) == pytest.approx(steps * step + fold)


def test_one_rank_costs_nothing_and_native_is_the_better_of_two():
    assert MODEL.ring(1e6, 1) == MODEL.tree(1e6, 1) == 0.0
    for n in (8, 1 << 12, 1 << 26):
        assert MODEL.native(n, 4) == min(MODEL.ring(n, 4), MODEL.tree(n, 4))


def test_tree_wins_small_and_ring_wins_large():
    table = Crossover.from_model(MODEL, 8)
    assert table.choose(8) == "tree"
    assert table.choose(1 << 26) == "ring"
    assert table.choices == ("tree", "ring")
    # At the switch the two models cross, to within the factor-of-two grid.
    bound = table.bounds[0]
    assert MODEL.tree(bound / 2, 8) <= MODEL.ring(bound / 2, 8)
    assert MODEL.ring(bound * 2, 8) <= MODEL.tree(bound * 2, 8)


def test_fit_recovers_alpha_beta():
    sizes = [8, 1024, 65536, 1 << 20, 1 << 23]
    alpha, beta = fit_alpha_beta(sizes, [3e-6 + s * 2e-10 for s in sizes])
    assert alpha == pytest.approx(3e-6, rel=1e-6)
    assert beta == pytest.approx(2e-10, rel=1e-6)
    with pytest.raises(ValueError):
        fit_alpha_beta([8], [1e-6])


def test_fit_never_returns_negative_latency():
    alpha, beta = fit_alpha_beta([8, 16, 32], [1e-9, 1e-6, 2e-6])
    assert alpha >= 0 and beta >= 0


def test_fit_minimises_the_relative_error_of_noisy_timings():
    """The weighted least squares in closed form: rows ``[1/t, x/t]`` against ones (relative error)."""
    sizes = [8.0, 1024.0, 65536.0, float(1 << 20), float(1 << 23)]
    seconds = [3.1e-6, 2.7e-6, 1.9e-5, 2.3e-4, 1.6e-3]  # noisy: no line goes through all of them
    alpha, beta = fit_alpha_beta(sizes, seconds)
    x, t = np.array(sizes), np.array(seconds)
    expected, *_ = np.linalg.lstsq(np.column_stack([1 / t, x / t]), np.ones_like(t), rcond=None)
    assert expected[0] > 0 and (alpha, beta) == pytest.approx(tuple(expected), rel=1e-9)
    # A negative intercept falls back to the line through the origin of least relative error.
    x, t = np.array([8.0, 16.0, 32.0]), np.array([1e-7, 1e-6, 2e-6])
    alpha, beta = fit_alpha_beta(x, t)
    assert alpha == 0.0 and beta == pytest.approx(np.sum(x / t) / np.sum((x / t) ** 2), rel=1e-12)


def test_crossover_from_measurements_switches_at_geometric_midpoints():
    sizes = [8, 64, 512, 4096]
    seconds = {"native": [2, 2, 2, 2], "tree": [1, 1, 3, 9], "ring": [5, 4, 3, 1]}
    table = Crossover.from_measurements(sizes, seconds)
    assert table.choices == ("tree", "native", "ring")
    assert table.bounds == (int(math.sqrt(64 * 512)), int(math.sqrt(512 * 4096)))
    assert [table.choose(s) for s in sizes] == ["tree", "tree", "native", "ring"]
    assert table.choose(0) == "tree" and table.choose(1 << 40) == "ring"


def test_a_message_of_exactly_a_bound_runs_the_choice_below_it():
    """``bounds[i]`` is the largest message that runs ``choices[i]`` ("up to bounds[0] bytes")."""
    table = Crossover((100, 10_000), ("tree", "native", "ring"))
    assert [table.choose(n) for n in (99, 100, 101, 10_000, 10_001)] == ["tree", "tree", "native", "native", "ring"]
    assert Crossover.from_list(table.as_list()).choose(100) == "tree"


def test_a_lone_near_tie_is_smoothed_away_but_a_clear_win_is_kept():
    sizes = [8, 16, 32]
    near = {"native": [1.0, 1.0, 1.0], "tree": [2.0, 0.98, 2.0], "ring": [3.0, 3.0, 3.0]}
    assert Crossover.from_measurements(sizes, near).choices == ("native",)
    clear = {"native": [1.0, 1.0, 1.0], "tree": [2.0, 0.5, 2.0], "ring": [3.0, 3.0, 3.0]}
    assert Crossover.from_measurements(sizes, clear).choices == ("native", "tree", "native")


def test_a_lone_near_tie_between_two_others_goes_to_the_faster_neighbour():
    # As measured once at 8, 16 and 32 MiB on 2 ranks: tree won 16 MiB by 0.3%.
    sizes = [8 << 20, 16 << 20, 32 << 20]
    seconds = {"ring": [2.17, 3.878, 3.90], "direct": [2.46, 4.019, 3.60], "tree": [3.66, 3.868, 6.94],
               "native": [2.31, 4.092, 13.3]}
    assert Crossover.from_measurements(sizes, seconds).choices == ("ring", "direct")
    seconds["tree"][1] = 3.0  # a clear win stays
    assert Crossover.from_measurements(sizes, seconds).choices == ("ring", "tree", "direct")


def test_auto_leaves_tree_out_of_large_messages_and_native_unless_clearly_faster():
    sizes = [1 << 20, 2 << 20, 4 << 20, 16 << 20, 32 << 20]
    seconds = {"native": [1.0, 1.0, 1.0, 1.0, 1.0], "ring": [1.2, 1.08, 1.15, 1.2, 0.5],
               "direct": [1.3, 1.3, 1.2, 1.05, 0.6], "tree": [0.9, 0.5, 0.5, 0.5, 0.5]}
    table = Crossover.from_measurements(sizes, _eligible(sizes, seconds))
    # tree up to 1 MiB only; native where ring and direct are over 10% slower (4 MiB), else the faster of them
    assert [table.choose(n) for n in sizes] == ["tree", "ring", "native", "direct", "ring"]
    assert seconds["tree"][1] == 0.5 and seconds["native"][3] == 1.0  # the measurements are kept as they were


def test_crossover_round_trips_and_rejects_nonsense():
    table = Crossover((100, 10_000), ("tree", "native", "ring"))
    assert Crossover.from_list(table.as_list()) == table
    with pytest.raises(ValueError):
        Crossover((100,), ("tree",))
    with pytest.raises(ValueError):
        Crossover((100, 10), ("tree", "native", "ring"))


def test_tune_file_round_trip(tmp_path):
    tuning = Tuning(4, MODEL, Crossover((4096,), ("tree", "ring")), "MPICH", "host", "float32",
                    {"sizes_bytes": [8, 1 << 20]}, ring_segment_bytes=2 << 20)
    path = tmp_path / "sub" / "tune.json"
    save(tuning, path)
    again = load(path)
    assert again.model == MODEL and again.crossover == tuning.crossover and again.ranks == 4
    assert again.crossover_for(4) == tuning.crossover and again.ring_segment_for(4) == 2 << 20
    # On another rank count neither measurement applies: the model decides, the ring its default.
    assert again.crossover_for(16) == Crossover.from_model(MODEL, 16) and again.ring_segment_for(16) is None


def test_tune_file_without_a_ring_segment_still_loads(tmp_path):
    path = tmp_path / "old.json"
    save(Tuning(2, MODEL, None), path)
    data = json.loads(path.read_text())
    del data["ring_segment_bytes"]  # as written before the ring's segment was calibrated
    path.write_text(json.dumps(data))
    assert load(path).ring_segment_for(2) is None


@pytest.mark.parametrize("segment", [0, -4, 1.5, "512K", True])
def test_a_bad_ring_segment_is_refused(tmp_path, segment):
    path = tmp_path / "bad.json"
    save(Tuning(2, MODEL, None), path)
    data = json.loads(path.read_text())
    data["ring_segment_bytes"] = segment
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="ring_segment_bytes must be a positive integer"):
        load(path)


@pytest.mark.parametrize("name, value", [("alpha_s", float("nan")), ("beta_s_per_byte", -1e-9),
                                         ("gamma_s_per_byte", float("inf"))])
def test_a_cost_that_is_no_time_is_refused(tmp_path, name, value):
    # Accepted before: auto builds its table from the model on a rank count the file did not measure.
    path = tmp_path / "bad.json"
    save(Tuning(2, MODEL, None), path)
    data = json.loads(path.read_text())
    data["model"][name] = value
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=f"{name} must be a finite number >= 0, got {value}"):
        load(path)


@pytest.mark.parametrize("text", ['{"format": 1}', "[1]", "null", '"tune"', '{"format": 1, "ranks": 2, "model": [1]}'])
def test_bad_tune_file_is_a_value_error(tmp_path, text):
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(ValueError, match="not a tune file"):
        load(path)


@pytest.mark.parametrize("field, value", [("ranks", 0), ("ranks", True), ("ranks", 2.9), ("max_bytes", float("inf"))])
def test_a_rank_count_or_bound_that_is_no_whole_number_is_refused_naming_the_file(tmp_path, field, value):
    # ranks: int() took 2.9 for 2, and 0 or true were reported as "made on 1 rank"; an Infinity
    # bound raised int()'s OverflowError, which named no file.
    path = tmp_path / "bad.json"
    save(Tuning(2, MODEL, Crossover((100, 10_000), ("tree", "native", "ring"))), path)
    data = json.loads(path.read_text())
    if field == "ranks":
        data["ranks"] = value
    else:
        data["crossover"][0]["max_bytes"] = value
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=f"^{path}: not a tune file"):
        load(path)


def test_a_value_of_the_wrong_kind_names_the_tune_file(tmp_path):
    # int("two") raised its own ValueError, which said nothing of the file it came from.
    path = tmp_path / "bad.json"
    save(Tuning(2, MODEL, None), path)
    data = json.loads(path.read_text())
    data["ranks"] = "two"
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=f"^{path}: not a tune file .*'two'"):
        load(path)


def test_tune_file_resolution(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("MPIGD_TUNE_FILE", raising=False)
    assert find_tune_file(None, 2) == (None, False)
    monkeypatch.setenv("MPIGD_TUNE_FILE", str(tmp_path / "env.json"))
    assert find_tune_file(None, 2) == (tmp_path / "env.json", True)
    assert find_tune_file(str(tmp_path / "cli.json"), 2) == (tmp_path / "cli.json", True)


def test_a_named_tune_file_that_is_a_directory_is_not_called_missing(tmp_path):
    from mpigd.comm.strategies.calibration import _read

    with pytest.raises(ValueError, match=f"^not a file: {tmp_path}$"):
        _read(str(tmp_path), 2)
    with pytest.raises(ValueError, match="^no such file: "):
        _read(str(tmp_path / "missing.json"), 2)
