"""Models: parameter shapes, which kernel computes their loss and gradient, metrics. No MPI."""

from __future__ import annotations

from typing import Sequence

from mpigd.models.base import Model
from mpigd.models.glm import LinearRegression, LogisticRegression
from mpigd.models.mlp import MLP
from mpigd.models.softmax import SoftmaxRegression

REGISTRY = {cls.name: cls for cls in (LinearRegression, LogisticRegression, SoftmaxRegression, MLP)}

__all__ = ["Model", "REGISTRY", "from_description", "make_model"]


def make_model(name: str, n_features: int, n_classes: int = 2, hidden: Sequence[int] = (64,),
               activation: str = "relu", task: str = "classification") -> Model:
    """The model called ``name`` over ``n_features`` inputs (the other arguments apply where they fit:
    ``n_classes`` to softmax and the MLP, ``hidden``, ``activation`` and ``task`` to the MLP)."""
    if name == "softmax":
        return SoftmaxRegression(n_features, n_classes)
    if name == "mlp":
        return MLP(n_features, tuple(hidden), activation, task, n_classes)
    return REGISTRY[name](n_features)


def from_description(description: dict) -> Model:
    """The model a ``model.json`` description (:meth:`describe`) names."""
    model = make_model(description["model"], int(description["n_features"]), int(description.get("classes") or 2),
                       tuple(description.get("hidden", (64,))), description.get("activation", "relu"),
                       description.get("task", "classification"))
    if model.name == "logistic":
        low, high = (int(value) for value in description.get("labels", (0, 1)))
        model.label_values, model.trained = (low, high), True
    elif model.task == "classification":
        values = tuple(int(value) for value in description.get("labels", range(model.n_classes)))
        if len(values) != model.n_classes:
            raise ValueError(f"model.json lists {len(values)} labels for {model.n_classes} classes")
        model.label_values, model.trained = values, True
    return model
