"""Pure Numba kernels (installed as ``mpigd.kernels``): arrays in, arrays out.

No MPI, no I/O, no state. Every kernel writes into output arrays the caller preallocated and
allocates nothing in its loop; each has a NumPy twin in the tests as its oracle.
"""

from mpigd.kernels.glm import LOGISTIC, SQUARED, glm_loss_grad, glm_loss_grad_rows, logistic_eval, squared_eval
from mpigd.kernels.gram import DEFAULT as gram_default, gram_blas, gram_numba
from mpigd.kernels.jit import kernel
from mpigd.kernels.stream import stream_sum

__all__ = [
    "LOGISTIC",
    "SQUARED",
    "glm_loss_grad",
    "glm_loss_grad_rows",
    "gram_blas",
    "gram_default",
    "gram_numba",
    "kernel",
    "logistic_eval",
    "squared_eval",
    "stream_sum",
]
