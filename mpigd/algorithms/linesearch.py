"""Line searches for the quasi-Newton methods: strong Wolfe (Nocedal & Wright, algorithms 3.5 and
3.6, with safeguarded cubic interpolation) and projected backtracking (Armijo) for OWL-QN.

Each trial point costs one full pass over the data and one allreduce, so the searches are written
to need few trials: the first trial step of a quasi-Newton direction is accepted almost always.
They use only the values ``phi`` returns, which are allreduced and so the same on every rank:
every rank takes the same branches and evaluates the same trial points.
"""

from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple

C1 = 1e-4  # sufficient decrease (Armijo)
C2 = 0.9  # curvature: 0.9 is the usual choice for quasi-Newton directions


class Trial(NamedTuple):
    """One evaluated point along the search line: step, objective, slope, caller's payload."""

    step: float
    value: float
    slope: float
    payload: Any


Phi = Callable[[float], Trial]


def _cubic_minimizer(a: Trial, b: Trial) -> float | None:
    """The minimiser of the cubic through two points with their slopes, or ``None``."""
    if a.step == b.step:
        return None
    d1 = a.slope + b.slope - 3.0 * (a.value - b.value) / (a.step - b.step)
    radicand = d1 * d1 - a.slope * b.slope
    if not (radicand >= 0.0 and math.isfinite(radicand)):
        return None
    d2 = math.copysign(math.sqrt(radicand), b.step - a.step)
    denominator = b.slope - a.slope + 2.0 * d2
    if denominator == 0.0:
        return None
    return b.step - (b.step - a.step) * (b.slope + d2 - d1) / denominator


def _zoom(phi: Phi, start: Trial, lo: Trial, hi: Trial, budget: int) -> Trial | None:
    """Shrink the bracket [lo, hi] (in either order) until a point meets the strong Wolfe
    conditions; ``lo`` always holds the lowest sufficient-decrease point seen."""
    for _ in range(budget):
        left, right = min(lo.step, hi.step), max(lo.step, hi.step)
        width = right - left
        guess = _cubic_minimizer(lo, hi)
        # Safeguard: stay 10 % inside the bracket, else bisect, so the bracket keeps shrinking.
        if guess is None or not (left + 0.1 * width <= guess <= right - 0.1 * width):
            guess = 0.5 * (left + right)
        trial = phi(guess)
        if trial.value > start.value + C1 * trial.step * start.slope or trial.value >= lo.value:
            hi = trial
        else:
            if abs(trial.slope) <= -C2 * start.slope:
                return trial
            if trial.slope * (hi.step - lo.step) >= 0.0:
                hi = lo
            lo = trial
        if width <= 1e-14 * right:
            break
    return lo if lo.step > 0 and lo.value < start.value else None


def strong_wolfe(phi: Phi, start: Trial, first_step: float, max_trials: int = 25) -> Trial | None:
    """A step meeting the strong Wolfe conditions along a descent direction, or ``None``.

    ``start`` is the point at step 0 (``start.slope`` < 0). Steps grow by doubling until the
    minimum is bracketed, then :func:`_zoom` closes in. When the budget runs out, the best point
    with sufficient decrease is returned if there is one.
    """
    previous, step = start, first_step
    for used in range(1, max_trials + 1):
        trial = phi(step)
        if trial.value > start.value + C1 * step * start.slope or (used > 1 and trial.value >= previous.value):
            return _zoom(phi, start, previous, trial, max_trials - used)
        if abs(trial.slope) <= -C2 * start.slope:
            return trial
        if trial.slope >= 0.0:
            return _zoom(phi, start, trial, previous, max_trials - used)
        previous, step = trial, 2.0 * step
    return previous if previous.step > 0 else None


def backtracking(phi: Callable[[float], tuple[float, float, Any]], value0: float, first_step: float,
                 max_trials: int = 30) -> tuple[float, float, Any] | None:
    """The first of ``first_step``, half of it, ... whose point passes the Armijo test.

    ``phi(step)`` returns ``(value, decrease_bound, payload)`` where ``decrease_bound`` is the
    directional term of the Armijo test (for OWL-QN: the pseudo-gradient times the projected
    step, negative); the test is ``value <= value0 + C1 * decrease_bound``.
    """
    step = first_step
    for _ in range(max_trials):
        value, bound, payload = phi(step)
        if value <= value0 + C1 * bound:
            return step, value, payload
        step *= 0.5
    return None
