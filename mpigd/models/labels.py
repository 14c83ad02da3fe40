"""Class labels as the data holds them, and the class numbers ``0 .. k-1`` the kernels train on.

A classifier's ``label_values`` are the data's labels in class order (sorted): class ``c`` is
``label_values[c]``. Where they are ``0 .. k-1`` every function here hands its input back unchanged.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def is_identity(values: Sequence[int]) -> bool:
    """Whether the labels are the class numbers themselves."""
    if isinstance(values, range):  # --classes K: K may be too many to list before the memory check
        return values.start == 0 and values.step == 1
    return tuple(values) == tuple(range(len(values)))


def unknown_label(y: np.ndarray, values: Sequence[int]) -> float | None:
    """The first label of ``y`` that is not one of ``values``, or ``None``."""
    known = np.asarray(values, dtype=np.float64)
    position = np.minimum(np.searchsorted(known, y), known.size - 1)
    bad = known[position] != y
    return float(y[bad][0]) if bad.any() else None


def encode(y: np.ndarray, values: Sequence[int]) -> np.ndarray:
    """``y`` (every one of them in ``values``) as class numbers, in ``y``'s dtype."""
    if is_identity(values):
        return y
    return np.searchsorted(np.asarray(values, dtype=np.float64), y).astype(y.dtype)


def decode(classes: np.ndarray, values: Sequence[int]) -> np.ndarray:
    """Class numbers as the data's labels (int64)."""
    if is_identity(values):
        return classes.astype(np.int64, copy=False)
    return np.asarray(values, dtype=np.int64)[classes]


def describe(values: Sequence[int]) -> str:
    """``values`` for a message: all of them, or the ends of a long list."""
    shown = [str(v) for v in values]
    return ", ".join(shown) if len(shown) <= 8 else ", ".join(shown[:3] + ["..."] + shown[-3:])


def problem(y: np.ndarray, values: Sequence[int], trained: bool) -> str | None:
    """Why ``y`` are not labels of the classes ``values``, or ``None``; ``trained``: the values are a
    trained model's, not found in the data."""
    fractional = y != np.round(y)
    if fractional.any():
        return f"class labels must be integers; found label {y[fractional][0]:g}"
    if is_identity(values) and not trained:
        bad = (y < 0) | (y >= len(values))
        return f"labels must be the class numbers 0 to {len(values) - 1}; found label {y[bad][0]:g}" if bad.any() else None
    bad = unknown_label(y, values)
    if bad is None:
        return None
    return f"labels must be those of the {len(values)} classes{' of training' if trained else ''} " \
           f"({describe(values)}); found label {bad:g}"


class ClassLabels:
    """A classifier's labels: class ``c`` is the data's label ``label_values[c]`` (``c`` itself
    unless set: LIBSVM's 1 .. k, say). Training sees classes (:meth:`encode_labels`); predictions
    are turned back into labels (:meth:`labels_of`)."""

    def start_labels(self, n_classes: int) -> None:
        # A range, not a tuple: a model of 10^9 classes is built, for its memory check, in no time.
        self.label_values = range(n_classes)
        self.trained = False  # label_values are those of a trained model, not the data's

    def check_labels(self, y: np.ndarray) -> str | None:
        return problem(y, self.label_values, self.trained)

    def encode_labels(self, y: np.ndarray) -> np.ndarray:
        return encode(y, self.label_values)

    def labels_of(self, classes: np.ndarray) -> np.ndarray:
        return decode(classes, self.label_values)
