"""The one frozen, validated configuration of a training run; the CLI and the Python API both build it."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from mpigd.errors import UsageError

MODELS = ("linear", "logistic")
ALGORITHMS = ("gd", "sgd")
STRATEGIES = ("native", "ring", "tree", "auto")
DTYPES = ("float32", "float64")


@dataclass(frozen=True)
class Config:
    """Everything a training run depends on. Invalid values raise :class:`~mpigd.errors.UsageError`.

    ``data`` is ``"synthetic"`` (generated from ``seed``, ``rows`` and ``features``, the same data
    whatever the rank count) or the path of an ``.npz`` file holding arrays ``X`` and ``y``.
    ``batch_size`` is the *global* mini-batch size of SGD, shared out among the ranks.
    ``eval_every`` is in epochs; 0 picks about 20 evaluations per run.
    ``tune_file`` is the calibration ``strategy="auto"`` reads (``mpigd tune``); ``None`` falls
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
    dtype: str = "float64"
    seed: int = 0
    strategy: str = "native"
    tune_file: str | None = None
    out: str | None = None
    quiet: bool = False
    eval_every: int = 0

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

    @property
    def synthetic(self) -> bool:
        return self.data == "synthetic"

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
