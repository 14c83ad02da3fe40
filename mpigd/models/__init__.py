"""Models: parameter shapes, which kernel computes their loss and gradient, metrics. No MPI."""

from __future__ import annotations

from mpigd.models.base import Model
from mpigd.models.glm import LinearRegression, LogisticRegression

REGISTRY = {cls.name: cls for cls in (LinearRegression, LogisticRegression)}

__all__ = ["Model", "REGISTRY", "make_model"]


def make_model(name: str, n_features: int) -> Model:
    """The model called ``name`` over ``n_features`` inputs."""
    return REGISTRY[name](n_features)
