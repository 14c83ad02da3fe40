"""The one frozen, validated configuration of a training run; the CLI and the Python API both build it."""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from typing import Any

from mpigd.checks import check_choice
from mpigd.errors import UsageError

MODELS = ("linear", "logistic", "softmax", "mlp")
ALGORITHMS = ("gd", "sgd", "local-sgd", "lbfgs", "owlqn", "normal")
OPTIMIZERS = ("sgd", "momentum", "nesterov", "adam")
SCHEDULES = ("constant", "step", "cosine", "invscaling")
ACTIVATIONS = ("relu", "tanh")
TASKS = ("classification", "regression")
QUASI_NEWTON = ("lbfgs", "owlqn")
SOLVERS = QUASI_NEWTON + ("normal",)  # full-batch solvers with their own steps and stopping rules
DEFAULT_QN_TOL = 1e-10  # what tol=0 means for lbfgs and owlqn
MAX_SEED = 2**64 - 1  # a uint64: the holdout's hash takes the seed as one
STRATEGIES = ("native", "ring", "direct", "tree", "auto")
TUNED_STRATEGIES = ("auto", "ring")  # the strategies that read a tune file
# The algorithms that read each of these settings (Config.unread_settings).
_READ_BY = {"batch_size": ("sgd", "local-sgd"), "local_steps": ("local-sgd",), "memory": QUASI_NEWTON}
# The optimizers or schedules (gd, sgd, local-sgd) that read each of these settings.
_READ_BY_STEP_RULE = {"momentum": ("optimizer", ("momentum", "nesterov")), "step_size": ("schedule", ("step",)),
                      "gamma": ("schedule", ("step",)), "power": ("schedule", ("invscaling",))}
DTYPES = ("float32", "float64")
DATA_FORMATS = ("npz", "npy", "csv", "libsvm", "hdf5")
HEADER_CHOICES = ("auto", "yes", "no")


@dataclass(frozen=True)
class Config:
    """Everything a training run depends on. Invalid values raise :class:`~mpigd.errors.UsageError`,
    whose message names fields in backquotes (`batch_size`; the command line shows its options).

    ``data`` is ``"synthetic"`` (generated from ``seed``, ``rows`` and ``features``, the same data
    whatever the rank count) or the path of a data file: ``.npz`` (arrays ``X`` and ``y``),
    ``.npy`` (features; ``labels`` names the labels file) or a directory holding ``X.npy`` and
    ``y.npy``, CSV, LIBSVM or HDF5. ``format`` overrides the format inferred from the name.
    CSV: ``header`` is auto/yes/no, ``label_column`` an index or header name (default: last).
    LIBSVM: ``zero_based`` is ``None`` to detect the index base. HDF5: ``x_key``, ``y_key``.
    ``standardize`` scales every feature to global mean 0 and variance 1 (the scaler is saved in
    ``params.npz``). ``test_data`` (and ``test_labels`` for ``.npy``) is read with the same
    reader and the final model is evaluated on it.
    ``batch_size`` is the *global* mini-batch size of SGD, shared out among the ranks.
    ``eval_every`` is in epochs; 0 picks about 20 evaluations per run.

    Models: ``classes`` (softmax, mlp; 0: the distinct labels found, K: labels 0 .. K-1), ``hidden``,
    ``activation`` and ``task`` (mlp; the other models imply their task). Objective: mean loss +
    ``l1``·‖w‖₁ + (``l2``/2)·‖w‖².
    Steps: ``optimizer`` (``momentum`` is its coefficient), ``schedule`` with ``warmup``, ``step_size``,
    ``gamma``, ``power``; ``local_steps`` for local-sgd. Stopping: ``epochs`` is the maximum, ``tol``
    the relative change of the objective between epochs below which training stops (lbfgs and owlqn:
    the relative gradient norm or objective change, 0 meaning :data:`DEFAULT_QN_TOL`; ``memory`` is
    their history length; one epoch is one of their iterations), ``patience``
    the evaluations without a better held-out loss after which it stops. Held-out rows: a fraction
    ``holdout`` of the rows (chosen by a hash of seed and row index), or the file ``test_data``.
    ``density`` > 0 makes the synthetic data sparse (CSR) with that fraction of non-zeros.
    ``tune_file`` is the calibration ``"auto"`` and ``"ring"`` read (``mpigd tune``); ``None`` falls
    back to ``$MPIGD_TUNE_FILE``, the default path, then built-in defaults.
    """

    model: str = "logistic"
    data: str = "synthetic"
    rows: int = 200_000
    features: int = 32
    algo: str = "gd"
    epochs: int = 100
    lr: float = 0.5
    batch_size: int = 256
    l2: float = 0.0
    l1: float = 0.0
    dtype: str = "float64"
    seed: int = 0
    strategy: str = "native"
    tune_file: str | None = None
    out: str | None = None
    quiet: bool = False
    eval_every: int = 0
    format: str = "auto"
    labels: str | None = None
    label_column: str | int | None = None
    header: str = "auto"
    zero_based: bool | None = None
    x_key: str = "X"
    y_key: str = "y"
    standardize: bool = False
    test_data: str | None = None
    test_labels: str | None = None
    # Fault tolerance (mpigd/resilience.py): checkpoints, resume, watchdog, gradient clipping.
    checkpoint_every: int = 0
    checkpoint_seconds: float = 0.0
    checkpoint_dir: str | None = None
    keep: int = 3
    resume: bool = False
    step_timeout: float = 0.0
    startup_timeout: float = 0.0
    clip_grad_norm: float = 0.0
    classes: int = 0
    hidden: tuple[int, ...] = (64,)
    activation: str = "relu"
    task: str = ""
    optimizer: str = "sgd"
    momentum: float = 0.9
    schedule: str = "constant"
    warmup: int = 0
    step_size: int = 100
    gamma: float = 0.1
    power: float = 0.25
    local_steps: int = 8
    tol: float = 0.0
    patience: int = 0
    holdout: float = 0.0
    density: float = 0.0
    memory: int = 10

    def __post_init__(self) -> None:
        for name in PATH_FIELDS:  # a pathlib.Path is as good as its text; summary.json needs text
            if isinstance(getattr(self, name), os.PathLike):
                object.__setattr__(self, name, os.fspath(getattr(self, name)))
        _check_types(self)
        _choice("model", self.model, MODELS)
        _choice("algo", self.algo, ALGORITHMS)
        _choice("optimizer", self.optimizer, OPTIMIZERS)
        _choice("schedule", self.schedule, SCHEDULES)
        _choice("activation", self.activation, ACTIVATIONS)
        if self.task:
            _choice("task", self.task, TASKS)
            implied = {"linear": "regression", "logistic": "classification", "softmax": "classification"}
            if implied.get(self.model, self.task) != self.task:
                raise UsageError(f"`task` {self.task!r} does not fit `model` {self.model!r}")
        hidden = self.hidden  # a list or tuple; hidden=64 was a bare TypeError from tuple()
        if (not isinstance(hidden, (tuple, list)) or not hidden
                or any(isinstance(h, bool) or not isinstance(h, int) or h < 1 for h in hidden)):
            raise UsageError(f"`hidden` must list one or more layer widths >= 1, got {hidden!r}")
        object.__setattr__(self, "hidden", tuple(hidden))
        for name in ("classes", "warmup", "patience"):
            _at_least(name, getattr(self, name), 0)
        _at_least("step_size", self.step_size, 1)
        _at_least("local_steps", self.local_steps, 1)
        if self.classes == 1:
            raise UsageError("`classes` must be 0 (infer) or at least 2")
        if self.classes and self.task_of_model == "regression":
            raise UsageError(f"`classes` is for classifiers; `model` {self.model} here fits a regression")
        if self.classes > 2 and self.model == "logistic":
            raise UsageError(f"logistic regression has 2 classes: use `model` softmax for {self.classes}")
        for name in ("l1", "l2", "power"):
            _non_negative(name, getattr(self, name))
        for name, value in (("momentum", self.momentum), ("gamma", self.gamma)):
            if not 0.0 <= value <= 1.0:
                raise UsageError(f"`{name}` must lie in [0, 1], got {value}")
        for name, value in (("holdout", self.holdout), ("density", self.density)):
            if not 0.0 <= value < 1.0:
                raise UsageError(f"`{name}` must lie in [0, 1), got {value}")
        if self.holdout and self.test_data:
            raise UsageError("give either `holdout` or `test_data`, not both")
        # Options that would otherwise be ignored without a word: the run would not do what was asked.
        if self.patience and not (self.holdout or self.test_data):
            raise UsageError("`patience` stops on a held-out loss: give `holdout` or `test_data` too")
        if self.test_labels is not None and self.test_data is None:
            raise UsageError("`test_labels` names the labels file of .npy `test_data`: give `test_data` too")
        if self.density and self.model == "mlp":
            raise UsageError("the mlp model reads dense input only (`density` must be 0)")
        _choice("strategy", self.strategy, STRATEGIES)
        _choice("dtype", self.dtype, DTYPES)
        _at_least("rows", self.rows, 1)
        _at_least("features", self.features, 1)
        _at_least("epochs", self.epochs, 1)
        _at_least("batch_size", self.batch_size, 1)
        _at_least("eval_every", self.eval_every, 0)
        _at_least("seed", self.seed, 0)
        if self.seed > MAX_SEED:  # the holdout hashes it as a uint64 (an OverflowError on every rank)
            raise UsageError(f"`seed` must be at most {MAX_SEED} (2^64 - 1), got {self.seed}")
        if not (self.lr > 0 and self.lr < float("inf")):
            raise UsageError(f"`lr` must be a positive finite number, got {self.lr}")
        if not (self.tol >= 0 and self.tol < 1):
            raise UsageError(f"`tol` must be a number in [0, 1), got {self.tol}")
        _at_least("memory", self.memory, 1)
        if self.l1 > 0 and self.algo in ("lbfgs", "normal"):
            raise UsageError(f"`l1` > 0 needs a proximal `algo` (gd, sgd, local-sgd) or owlqn; got {self.algo}")
        if self.algo in SOLVERS and (self.checkpoint_every or self.checkpoint_seconds or self.resume):
            raise UsageError(f"checkpoints and `resume` are for gd, sgd and local-sgd; {self.algo} runs are "
                             "short full-batch solves: run them again")
        if self.algo in SOLVERS and (self.optimizer != "sgd" or self.schedule != "constant" or self.warmup):
            raise UsageError(f"{self.algo} takes its own steps: `optimizer`, `schedule` and `warmup` are for gd, "
                             "sgd and local-sgd")
        if self.algo == "normal" and self.patience:
            raise UsageError("`patience` stops between epochs: `algo` normal solves in one")
        if self.algo == "normal" and self.model != "linear":
            raise UsageError(f"`algo` normal solves linear regression only; got `model` {self.model}")
        _choice("format", self.format, ("auto",) + DATA_FORMATS)
        _choice("header", self.header, HEADER_CHOICES)
        if self.test_data == "synthetic":
            raise UsageError("`test_data` must be the path of a data file")
        if self.labels is not None and self.synthetic:
            raise UsageError("`labels` names the labels file of .npy data, not of synthetic data")
        if self.label_column is not None and not isinstance(self.label_column, (str, int)):
            raise UsageError(f"`label_column` must be a column index or name, got {self.label_column!r}")
        if not (self.x_key and self.y_key):
            raise UsageError("`x_key` and `y_key` must name HDF5 datasets")
        _check_fault_tolerance(self)

    def unread_settings(self) -> list[str]:
        """One message for each setting changed from its default that ``algo`` (or its optimizer or
        schedule, ``strategy``, or ``model``) never reads: ``batch_size`` with full-batch gd, ``memory``
        with sgd, ``tune_file`` with native, ``hidden`` with a linear model, ``rows`` with a data file,
        ``lr`` with a solver, ``momentum`` with plain SGD, ... Warned about by :func:`train`, not
        refused: a sweep may share its options."""
        unread = [f"`{name}` is for `algo` {' and '.join(readers)}; {self.algo} does not read it"
                  for name, readers in _READ_BY.items()
                  if getattr(self, name) != Config.__dataclass_fields__[name].default and self.algo not in readers]
        if self.algo == "normal":
            unread += [f"`algo` normal solves in one step: `{name}` does not apply"
                       for name in ("tol", "clip_grad_norm") if getattr(self, name)]
        elif self.algo in QUASI_NEWTON and self.clip_grad_norm:
            # Clipped, the gradient no longer matched the objective the line search measures: the
            # same optimum in 26 evaluations instead of 12. The solvers take the true gradient.
            unread.append(f"`clip_grad_norm` is for `algo` gd, sgd and local-sgd; {self.algo} takes the gradient "
                          "unclipped (its line search needs the true one)")
        # The step rule's settings: a solver reads none of them (--lr 0.1 with lbfgs went unread
        # without a word), the first-order algorithms those of their optimizer and schedule.
        changed = [name for name in ("lr", "momentum", "step_size", "gamma", "power")
                   if getattr(self, name) != Config.__dataclass_fields__[name].default]
        if self.algo in SOLVERS:
            unread += [f"`{name}` is for `algo` gd, sgd and local-sgd; {self.algo} does not read it"
                       for name in changed]
        else:
            for name in changed:
                if name in _READ_BY_STEP_RULE:
                    field, readers = _READ_BY_STEP_RULE[name]
                    if getattr(self, field) not in readers:
                        unread.append(f"`{name}` is for `{field}` {' and '.join(readers)}; "
                                      f"{getattr(self, field)} does not read it")
        if self.tune_file is not None and self.strategy not in TUNED_STRATEGIES:
            unread.append(f"`tune_file` is for `strategy` auto and ring; {self.strategy} does not read it")
        if not self.synthetic:  # a --rows meant to take a sample of a file took all of it, silently
            unread += [f"`{name}` is for `data` synthetic; a data file is read as it is" for name in
                       ("rows", "features", "density") if getattr(self, name) != Config.__dataclass_fields__[name].default]
        if self.model != "mlp":  # hidden is a tuple by now, as its default
            unread += [f"`{name}` is for `model` mlp; {self.model} does not read it" for name in ("hidden", "activation")
                       if getattr(self, name) != Config.__dataclass_fields__[name].default]
        return unread

    @property
    def synthetic(self) -> bool:
        return self.data == "synthetic"

    @property
    def checkpoint_directory(self) -> str | None:
        """Where checkpoints go: ``checkpoint_dir``, else ``OUT/checkpoints``, else nowhere."""
        if self.checkpoint_dir:
            return self.checkpoint_dir
        return os.path.join(self.out, "checkpoints") if self.out else None

    @property
    def task_of_model(self) -> str:
        """``regression`` or ``classification``: the task this model is fitted to."""
        if self.model == "mlp":
            return self.task or "classification"
        return "regression" if self.model == "linear" else "classification"

    def evaluation_interval(self) -> int:
        """Epochs between evaluations: ``eval_every``, or about 20 evaluations per run."""
        return self.eval_every or max(1, self.epochs // 20)

    def stopping_tol(self) -> float:
        """The tolerance in force: ``tol``, or :data:`DEFAULT_QN_TOL` for lbfgs/owlqn when 0."""
        if self.tol == 0.0 and self.algo in QUASI_NEWTON:
            return DEFAULT_QN_TOL
        return self.tol

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> "Config":
        """A copy with ``changes`` applied, validated again."""
        return dataclasses.replace(self, **changes)


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    check_choice(f"`{name}`", value, allowed)


def _non_negative(name: str, value: float) -> None:
    if not (value >= 0 and value < float("inf")):
        raise UsageError(f"`{name}` must be a non-negative finite number, got {value}")


def _at_least(name: str, value: int, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise UsageError(f"`{name}` must be an integer >= {low}, got {value!r}")


def _check_types(config: "Config") -> None:
    """Refuse a value of the wrong type (``lr="fast"``) by name, before a comparison with it fails
    as a bare ``TypeError``: numbers where the default is a number (an int where it is an int),
    text where it is text, a flag where it is a flag. Fields whose default is ``None`` take several."""
    for name, spec in config.__dataclass_fields__.items():
        default, value = spec.default, getattr(config, name)
        if name in PATH_FIELDS:
            # Empty text: the command line refuses --out '', and out="" trained and wrote nothing.
            ok = (isinstance(value, str) and value != "") or (value is None and default is None)
        elif isinstance(default, bool):
            ok = isinstance(value, bool)
        elif isinstance(default, int):
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif isinstance(default, float):
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        elif isinstance(default, str):
            ok = isinstance(value, str)
        else:
            continue
        if not ok:
            kind = "a path" if name in PATH_FIELDS else _KIND_NAMES[type(default)]
            raise UsageError(f"`{name}` must be {kind}, got {value!r}")


_KIND_NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "text"}
# Non-empty text or os.PathLike (made text); those whose default is None may also be None.
PATH_FIELDS = ("data", "tune_file", "out", "labels", "test_data", "test_labels", "checkpoint_dir")


MAX_STEP_TIMEOUT = 1e9  # about 31 years


def _check_fault_tolerance(config: Config) -> None:
    _at_least("checkpoint_every", config.checkpoint_every, 0)
    _at_least("keep", config.keep, 1)
    for name in ("checkpoint_seconds", "step_timeout", "startup_timeout", "clip_grad_norm"):
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0 <= value < math.inf):
            raise UsageError(f"`{name}` must be a non-negative finite number (0: off), got {value!r}")
    for name in ("step_timeout", "startup_timeout"):
        if getattr(config, name) > MAX_STEP_TIMEOUT:  # beyond what faulthandler's timer takes (an OverflowError)
            raise UsageError(f"`{name}` must be at most {MAX_STEP_TIMEOUT:g} seconds, got {getattr(config, name):g}")
    wanted = config.checkpoint_every or config.checkpoint_seconds or config.resume
    if wanted and config.checkpoint_directory is None:
        raise UsageError("checkpoints need a directory: give `out` or `checkpoint_dir`")
