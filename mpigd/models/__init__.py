"""Models: parameter shapes, which kernel computes their loss and gradient, metrics. No MPI."""

from __future__ import annotations

from typing import Sequence

from mpigd.kernels.mlp import BLOCK as MLP_BLOCK
from mpigd.models.base import Model
from mpigd.models.glm import LinearRegression, LogisticRegression
from mpigd.models.mlp import ACTIVATIONS, MLP
from mpigd.models.softmax import SoftmaxRegression

REGISTRY = {cls.name: cls for cls in (LinearRegression, LogisticRegression, SoftmaxRegression, MLP)}
# Parameters, gradient and the kernel's accumulator: three buffers of the model's size per rank to
# call the kernel, a fourth for the update's state in training.
KERNEL_BUFFERS = 3
# The evaluation's float64 sums (a k x k confusion matrix for k classes) while they are counted and
# allreduced: the sums, NumPy's int64 counts, the allreduce's scratch and the metrics' copy.
EVAL_COPIES = 4

__all__ = ["Model", "REGISTRY", "from_description", "make_model", "memory_bytes"]


def make_model(name: str, n_features: int, n_classes: int = 2, hidden: Sequence[int] = (64,),
               activation: str = "relu", task: str = "classification") -> Model:
    """The model called ``name`` over ``n_features`` inputs (the other arguments apply where they fit:
    ``n_classes`` to softmax and the MLP, ``hidden``, ``activation`` and ``task`` to the MLP)."""
    if name == "softmax":
        return SoftmaxRegression(n_features, n_classes)
    if name == "mlp":
        return MLP(n_features, tuple(hidden), activation, task, n_classes)
    return REGISTRY[name](n_features)


def memory_bytes(model: Model, itemsize: int, training: bool = True) -> int:
    """About the bytes one rank allocates for ``model`` besides its rows, in ``itemsize``-byte
    parameters, to call its ``loss_grad``: the parameter-sized buffers and, for the dense softmax
    and MLP kernel, its two blocks of activations and the gradient of its largest weight matrix;
    ``training`` adds the update's state and the evaluation's sums. The checks made before anything
    is allocated compare it with the node's memory (a huge ``--classes`` or ``--hidden`` is refused
    in one line, not ended by Linux's OOM killer)."""
    need = KERNEL_BUFFERS * model.n_params * itemsize
    if training:
        need += model.n_params * itemsize + EVAL_COPIES * model.n_eval_stats * 8
    if isinstance(model, (MLP, SoftmaxRegression)):
        widths = [model.n_features, *getattr(model, "hidden", ()), model.n_outputs]
        largest = max(a * b for a, b in zip(widths, widths[1:]))
        need += (2 * MLP_BLOCK * sum(widths) + largest) * itemsize
    return need


def from_description(description: dict) -> Model:
    """The model a ``model.json`` description (:meth:`describe`) names.

    A ``ValueError`` says what does not fit: the file may be damaged or edited by hand, and a wrong
    type or value would otherwise fail later, or not at all (labels listed in another order would
    flip every prediction).
    """
    if not isinstance(description, dict):
        raise ValueError("model.json does not hold an object")
    name = description.get("model")
    if name not in REGISTRY:
        raise ValueError(f"model.json names model {name!r}, not one of {', '.join(sorted(REGISTRY))}")
    n_features = _count(description, "n_features", 1)
    classes = _count(description, "classes", 2) if description.get("classes") else 2  # 0: a regression MLP
    hidden = description.get("hidden", [64])
    if not (isinstance(hidden, list) and hidden and all(_is_int(h) and h >= 1 for h in hidden)):
        raise ValueError(f"model.json: hidden is {hidden!r}, not a list of positive integers")
    activation = description.get("activation", "relu")
    if activation not in ACTIVATIONS:
        raise ValueError(f"model.json: activation is {activation!r}, not one of {', '.join(ACTIVATIONS)}")
    own_task = getattr(REGISTRY[name], "task", "")  # none for the MLP, which takes either
    task = description.get("task", own_task or "classification")
    if task not in ("classification", "regression") or own_task not in ("", task):
        raise ValueError(f"model.json: task {task!r} does not fit model {name!r}")
    model = make_model(name, n_features, classes, tuple(hidden), activation, task)
    if model.task == "classification":
        labels = description.get("labels", [0, 1] if name == "logistic" else list(range(model.n_classes)))
        if not (isinstance(labels, list) and all(_is_int(v) for v in labels)
                and all(a < b for a, b in zip(labels, labels[1:]))):
            raise ValueError(f"model.json: labels {labels!r} are not integers in increasing order")
        if len(labels) != model.n_classes:
            raise ValueError(f"model.json lists {len(labels)} labels for {model.n_classes} classes")
        model.label_values, model.trained = tuple(labels), True
    return model


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _count(description: dict, key: str, least: int) -> int:
    value = description.get(key)
    if not (_is_int(value) and value >= least):
        raise ValueError(f"model.json: {key} is {value!r}, not an integer of at least {least}")
    return value
