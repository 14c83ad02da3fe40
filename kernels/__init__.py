"""Pure Numba kernels (installed as ``mpigd.kernels``): arrays in, arrays out.

No MPI, no I/O, no state. Every kernel writes into output arrays the caller preallocated and
allocates nothing in its loop; each has a NumPy twin in the tests as its oracle.
"""

from mpigd.kernels.glm import (
    logistic_eval,
    logistic_loss_grad,
    logistic_loss_grad_rows,
    squared_eval,
    squared_loss_grad,
    squared_loss_grad_rows,
)
from mpigd.kernels.jit import kernel
from mpigd.kernels.reduce import add
from mpigd.kernels.stream import stream_sum

__all__ = [
    "add",
    "kernel",
    "logistic_eval",
    "logistic_loss_grad",
    "logistic_loss_grad_rows",
    "squared_eval",
    "squared_loss_grad",
    "squared_loss_grad_rows",
    "stream_sum",
]
