"""The one frozen, validated configuration of a training run; the CLI and the Python API both build it."""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from typing import Any

from mpigd.errors import UsageError

MODELS = ("linear", "logistic")
ALGORITHMS = ("gd", "sgd")
STRATEGIES = ("native",)
DTYPES = ("float32", "float64")
DATA_FORMATS = ("npz", "npy", "csv", "libsvm", "hdf5")
HEADER_CHOICES = ("auto", "yes", "no")


@dataclass(frozen=True)
class Config:
    """Everything a training run depends on. Invalid values raise :class:`~mpigd.errors.UsageError`.

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
    dtype: str = "float64"
    seed: int = 0
    strategy: str = "native"
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
    clip_grad_norm: float = 0.0

    def __post_init__(self) -> None:
        _choice("model", self.model, MODELS)
        _choice("algo", self.algo, ALGORITHMS)
        _choice("strategy", self.strategy, STRATEGIES)
        _choice("dtype", self.dtype, DTYPES)
        _at_least("rows", self.rows, 1)
        _at_least("features", self.features, 1)
        _at_least("epochs", self.epochs, 1)
        _at_least("batch_size", self.batch_size, 1)
        _at_least("eval_every", self.eval_every, 0)
        _at_least("seed", self.seed, 0)
        if not (self.lr > 0 and self.lr < float("inf")):
            raise UsageError(f"lr must be a positive finite number, got {self.lr}")
        if not (self.l2 >= 0 and self.l2 < float("inf")):
            raise UsageError(f"l2 must be a non-negative finite number, got {self.l2}")
        if not self.data:
            raise UsageError("data must be 'synthetic' or the path of a data file")
        _choice("format", self.format, ("auto",) + DATA_FORMATS)
        _choice("header", self.header, HEADER_CHOICES)
        if self.test_data is not None and self.test_data in ("", "synthetic"):
            raise UsageError("test_data must be the path of a data file")
        if self.labels is not None and self.synthetic:
            raise UsageError("labels names the labels file of .npy data, not of synthetic data")
        if self.label_column is not None and not isinstance(self.label_column, (str, int)):
            raise UsageError(f"label_column must be a column index or name, got {self.label_column!r}")
        if not (self.x_key and self.y_key):
            raise UsageError("x_key and y_key must name HDF5 datasets")
        _check_fault_tolerance(self)

    @property
    def synthetic(self) -> bool:
        return self.data == "synthetic"

    @property
    def checkpoint_directory(self) -> str | None:
        """Where checkpoints go: ``checkpoint_dir``, else ``OUT/checkpoints``, else nowhere."""
        if self.checkpoint_dir:
            return self.checkpoint_dir
        return os.path.join(self.out, "checkpoints") if self.out else None

    def evaluation_interval(self) -> int:
        """Epochs between evaluations: ``eval_every``, or about 20 evaluations per run."""
        return self.eval_every or max(1, self.epochs // 20)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> "Config":
        """A copy with ``changes`` applied, validated again."""
        return dataclasses.replace(self, **changes)


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise UsageError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")


def _at_least(name: str, value: int, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise UsageError(f"{name} must be an integer >= {low}, got {value!r}")


def _check_fault_tolerance(config: Config) -> None:
    _at_least("checkpoint_every", config.checkpoint_every, 0)
    _at_least("keep", config.keep, 1)
    for name in ("checkpoint_seconds", "step_timeout", "clip_grad_norm"):
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0 <= value < math.inf):
            raise UsageError(f"{name} must be a non-negative finite number (0: off), got {value!r}")
    wanted = config.checkpoint_every or config.checkpoint_seconds or config.resume
    if wanted and config.checkpoint_directory is None:
        raise UsageError("checkpoints need a directory: give --out or --checkpoint-dir")
