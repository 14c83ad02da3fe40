"""Pure Numba kernels (installed as ``mpigd.kernels``): arrays in, arrays out.

No MPI, no I/O, no state. Every kernel writes into output arrays the caller preallocated and
allocates nothing in its loop; each has a NumPy twin in the tests as its oracle.
"""

from mpigd.kernels.finish import all_finite, clip_to_norm, mean_with_l2, sum_of_abs, sum_of_squares
from mpigd.kernels.glm import LOGISTIC, SQUARED, glm_loss_grad, glm_loss_grad_rows, logistic_eval, squared_eval
from mpigd.kernels.gram import DEFAULT as gram_default, gram_blas, gram_csr, gram_numba
from mpigd.kernels.jit import kernel
from mpigd.kernels.lazy_sgd import csr_glm_lazy_local_steps, csr_glm_lazy_sgd_steps
from mpigd.kernels.local_round import csr_glm_local_steps, csr_softmax_local_steps, glm_local_steps, mlp_local_steps
from mpigd.kernels.mlp import RELU, SOFTMAX_HEAD, SQUARED_HEAD, TANH, mlp_loss_grad, mlp_outputs, softmax_loss_grad
from mpigd.kernels.prox import soft_threshold
from mpigd.kernels.reduce import add_into
from mpigd.kernels.softmax import softmax_logits
from mpigd.kernels.sparse_exchange import apply_gathered_pairs, csr_glm_gradient_pairs, csr_softmax_gradient_pairs
from mpigd.kernels.sparse import csr_glm_loss_grad, csr_glm_margins, csr_softmax_logits, csr_softmax_loss_grad
from mpigd.kernels.stream import stream_sum
from mpigd.kernels.sync_round import (ADAM, DONE, LOCAL_NONFINITE, MOMENTUM, NESTEROV, NONFINITE, PLAIN,
                                      csr_glm_sync_steps, csr_softmax_sync_steps, glm_sync_steps, mlp_sync_steps)
from mpigd.kernels.text import CSV_PROBLEMS, LIBSVM_PROBLEMS, csv_scan, libsvm_scan
from mpigd.kernels.update import adam_step, local_sgd_start, local_sgd_step, momentum_step, sgd_step

__all__ = [
    "ADAM",
    "CSV_PROBLEMS",
    "DONE",
    "LIBSVM_PROBLEMS",
    "LOCAL_NONFINITE",
    "LOGISTIC",
    "MOMENTUM",
    "NESTEROV",
    "NONFINITE",
    "PLAIN",
    "RELU",
    "SOFTMAX_HEAD",
    "SQUARED",
    "SQUARED_HEAD",
    "TANH",
    "adam_step",
    "add_into",
    "all_finite",
    "apply_gathered_pairs",
    "clip_to_norm",
    "csr_glm_gradient_pairs",
    "csr_glm_local_steps",
    "csr_glm_lazy_local_steps",
    "csr_glm_lazy_sgd_steps",
    "csr_glm_loss_grad",
    "csr_glm_sync_steps",
    "csr_glm_margins",
    "csr_softmax_local_steps",
    "csr_softmax_gradient_pairs",
    "csr_softmax_logits",
    "csr_softmax_loss_grad",
    "csr_softmax_sync_steps",
    "csv_scan",
    "glm_local_steps",
    "glm_loss_grad",
    "glm_loss_grad_rows",
    "glm_sync_steps",
    "gram_blas",
    "gram_csr",
    "gram_default",
    "gram_numba",
    "kernel",
    "libsvm_scan",
    "local_sgd_start",
    "local_sgd_step",
    "logistic_eval",
    "mean_with_l2",
    "mlp_local_steps",
    "mlp_loss_grad",
    "mlp_outputs",
    "mlp_sync_steps",
    "momentum_step",
    "sgd_step",
    "soft_threshold",
    "softmax_logits",
    "softmax_loss_grad",
    "squared_eval",
    "stream_sum",
    "sum_of_abs",
    "sum_of_squares",
]
