"""The one frozen, validated configuration of a training run; the CLI and the Python API both build it."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from mpigd.errors import UsageError

MODELS = ("linear", "logistic")
ALGORITHMS = ("gd", "sgd", "lbfgs", "owlqn", "normal")
QUASI_NEWTON = ("lbfgs", "owlqn")
DEFAULT_QN_TOL = 1e-10  # what tol=0 means for lbfgs and owlqn
STRATEGIES = ("native",)
DTYPES = ("float32", "float64")


@dataclass(frozen=True)
class Config:
    """Everything a training run depends on. Invalid values raise :class:`~mpigd.errors.UsageError`.

    ``data`` is ``"synthetic"`` (generated from ``seed``, ``rows`` and ``features``, the same data
    whatever the rank count) or the path of an ``.npz`` file holding arrays ``X`` and ``y``.
    ``batch_size`` is the *global* mini-batch size of SGD, shared out among the ranks.
    ``eval_every`` is in epochs; 0 picks about 20 evaluations per run.
    ``l1`` adds l1·‖w‖₁ to the objective (``owlqn`` only); ``memory`` is the L-BFGS/OWL-QN history
    length; ``tol`` stops lbfgs/owlqn on the relative gradient norm or objective change (0 means
    :data:`DEFAULT_QN_TOL` for them, and off for gd/sgd). For lbfgs/owlqn an epoch is one iteration.
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
    out: str | None = None
    quiet: bool = False
    eval_every: int = 0
    tol: float = 0.0
    memory: int = 10

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
        if not (self.l1 >= 0 and self.l1 < float("inf")):
            raise UsageError(f"l1 must be a non-negative finite number, got {self.l1}")
        if not (self.tol >= 0 and self.tol < 1):
            raise UsageError(f"tol must be a number in [0, 1), got {self.tol}")
        _at_least("memory", self.memory, 1)
        if self.l1 > 0 and self.algo != "owlqn":
            raise UsageError(f"l1 > 0 needs --algo owlqn (the L1 term is not differentiable); got {self.algo}")
        if self.algo == "normal" and self.model != "linear":
            raise UsageError(f"algo normal solves linear regression only; got model {self.model}")
        if not self.data:
            raise UsageError("data must be 'synthetic' or the path of a data file")

    @property
    def synthetic(self) -> bool:
        return self.data == "synthetic"

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
    if value not in allowed:
        raise UsageError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")


def _at_least(name: str, value: int, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise UsageError(f"{name} must be an integer >= {low}, got {value!r}")
