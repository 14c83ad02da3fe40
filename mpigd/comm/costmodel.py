"""The alpha-beta-gamma cost model of an allreduce, and the crossover table ``auto`` looks up.

A message of ``n`` bytes costs ``alpha + n beta`` to send (latency, inverse bandwidth) and
``n gamma`` to add locally. Each strategy's time on ``p`` ranks follows from how many messages
it sends and how many bytes it moves and adds. This is a model: fitted on our own
microbenchmarks (``mpigd tune``), used to choose between strategies and to project to machines
we have not measured, never reported as a measurement.

Pure arithmetic, no MPI: tested without mpiexec.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import asdict, dataclass
from typing import Mapping, Sequence

# Used when no calibration has been made: a shared-memory MPI on one node, roughly (2 us per
# message, 5 GB/s per link, 10 GB/s for the add). `mpigd tune` replaces them with measurements.
DEFAULT_ALPHA = 2e-6
DEFAULT_BETA = 1 / 5e9
DEFAULT_GAMMA = 1 / 10e9

MODELLED = ("ring", "tree")

# A measured winner that differs from both neighbouring sizes' winners is overruled when one of
# them is within this factor of it: on a shared machine such lone switches are mostly noise (tree
# won 16 MiB by 0.3% between ring at 8 and direct at 32 MiB once, and is 1.3-1.6x slower there in
# every benchmark), and every switch is one more place where the table can be wrong.
SMOOTHING = 1.05


@dataclass(frozen=True)
class CostModel:
    """Latency ``alpha`` (s), inverse bandwidth ``beta`` (s/byte), reduction cost ``gamma`` (s/byte)."""

    alpha: float = DEFAULT_ALPHA
    beta: float = DEFAULT_BETA
    gamma: float = DEFAULT_GAMMA

    def ring(self, nbytes: float, p: int) -> float:
        """Ring: ``2(p-1) alpha + 2(p-1)/p n beta + (p-1)/p n gamma``."""
        if p == 1:
            return 0.0
        share = (p - 1) / p * nbytes
        return 2 * (p - 1) * self.alpha + 2 * share * self.beta + share * self.gamma

    def tree(self, nbytes: float, p: int) -> float:
        """Recursive doubling: ``log2(q) (alpha + n beta + n gamma)`` plus the fold if ``p != q``."""
        if p == 1:
            return 0.0
        q = 1 << (p.bit_length() - 1)
        cost = math.log2(q) * (self.alpha + nbytes * self.beta + nbytes * self.gamma)
        if q != p:
            cost += 2 * (self.alpha + nbytes * self.beta) + nbytes * self.gamma
        return cost

    def native(self, nbytes: float, p: int) -> float:
        """The library's own: modelled as the better of ring and recursive doubling."""
        return min(self.ring(nbytes, p), self.tree(nbytes, p))

    def time(self, strategy: str, nbytes: float, p: int) -> float:
        """Predicted seconds for ``strategy`` (``ring``, ``tree`` or ``native``)."""
        return getattr(self, strategy)(nbytes, p)

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def fit_alpha_beta(sizes: Sequence[float], seconds: Sequence[float]) -> tuple[float, float]:
    """Least-squares ``seconds = alpha + size * beta``, weighted by relative error, both >= 0.

    Relative weighting keeps the small messages (which fix ``alpha``) from being drowned by the
    large ones (which fix ``beta``).
    """
    if len(sizes) != len(seconds) or len(sizes) < 2:
        raise ValueError("need at least two (size, seconds) points of equal count")
    # Minimise sum(((alpha + beta x - t) / t)^2): linear least squares in alpha, beta.
    saa = sab = sbb = sa = sb = 0.0
    for x, t in zip(sizes, seconds):
        w = 1.0 / (t * t)
        saa += w
        sab += w * x
        sbb += w * x * x
        sa += w * t
        sb += w * x * t
    det = saa * sbb - sab * sab
    if det <= 0:
        raise ValueError("sizes must not all be equal")
    alpha = (sa * sbb - sb * sab) / det
    beta = (saa * sb - sab * sa) / det
    if alpha < 0:  # fall back to a line through the origin
        alpha, beta = 0.0, sb / sbb
    return alpha, max(beta, 0.0)


@dataclass(frozen=True)
class Crossover:
    """Which strategy to run for a message of ``n`` bytes: ``choices[bisect(bounds, n)]``.

    ``bounds`` rise; a message of up to ``bounds[0]`` bytes runs ``choices[0]``, and so on; beyond
    the last bound runs ``choices[-1]``. Built once; :meth:`pick` is a binary search.
    """

    bounds: tuple[int, ...]
    choices: tuple[str, ...]

    def __post_init__(self) -> None:
        if len(self.choices) != len(self.bounds) + 1 or list(self.bounds) != sorted(self.bounds):
            raise ValueError("a crossover needs rising bounds and one more choice than bounds")

    def pick(self, nbytes: int) -> int:
        """Index into :attr:`choices` for a message of ``nbytes``."""
        return bisect.bisect_left(self.bounds, nbytes)

    def choose(self, nbytes: int) -> str:
        """The strategy name for a message of ``nbytes``."""
        return self.choices[self.pick(nbytes)]

    @classmethod
    def from_best(cls, sizes: Sequence[int], best: Sequence[str]) -> "Crossover":
        """From the best strategy at each measured size (rising); switch at geometric midpoints."""
        if not sizes or len(sizes) != len(best):
            raise ValueError("need one best strategy per measured size")
        bounds: list[int] = []
        choices = [best[0]]
        for (low, high), name in zip(zip(sizes, sizes[1:]), best[1:]):
            if name != choices[-1]:
                bounds.append(int(math.sqrt(max(low, 1) * high)))
                choices.append(name)
        return cls(tuple(bounds), tuple(choices))

    @classmethod
    def from_measurements(cls, sizes: Sequence[int],
                          seconds: Mapping[str, Sequence[float]]) -> "Crossover":
        """The fastest strategy at each size, from measured ``seconds[strategy][i]``.

        A winner at one size that won neither neighbouring size gives way to the faster of the
        neighbours' winners when that one is within :data:`SMOOTHING` of its time.
        """
        names = sorted(seconds)
        best = [min(names, key=lambda s: seconds[s][i]) for i in range(len(sizes))]
        for i in range(1, len(sizes) - 1):
            if best[i] in (best[i - 1], best[i + 1]):
                continue
            around = min((best[i - 1], best[i + 1]), key=lambda s: seconds[s][i])
            if seconds[around][i] <= SMOOTHING * seconds[best[i]][i]:
                best[i] = around
        return cls.from_best(sizes, best)

    @classmethod
    def from_model(cls, model: CostModel, p: int, strategies: Sequence[str] = MODELLED,
                   max_bytes: int = 1 << 30) -> "Crossover":
        """The fastest modelled strategy at every power of two up to ``max_bytes``."""
        sizes = [1 << k for k in range(max_bytes.bit_length())]
        best = [min(strategies, key=lambda s: model.time(s, n, p)) for n in sizes]
        return cls.from_best(sizes, best)

    def as_list(self) -> list[dict[str, object]]:
        """JSON-ready: ``[{"max_bytes": b, "strategy": s}, ..., {"max_bytes": None, ...}]``."""
        rows: list[dict[str, object]] = [{"max_bytes": b, "strategy": s}
                                         for b, s in zip(self.bounds, self.choices)]
        rows.append({"max_bytes": None, "strategy": self.choices[-1]})
        return rows

    @classmethod
    def from_list(cls, rows: Sequence[Mapping[str, object]]) -> "Crossover":
        """The inverse of :meth:`as_list`."""
        if not rows:
            raise ValueError("empty crossover table")
        bounds = tuple(int(row["max_bytes"]) for row in rows[:-1])  # type: ignore[arg-type]
        return cls(bounds, tuple(str(row["strategy"]) for row in rows))
