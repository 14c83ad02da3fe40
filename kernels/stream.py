"""A plain streaming read: the memory-bandwidth yardstick for the other kernels."""

from mpigd.kernels.jit import kernel


@kernel
def stream_sum(X):
    """Sum of every element of a C-contiguous array, read once in memory order."""
    flat = X.reshape(X.size)
    total = 0.0
    for k in range(flat.shape[0]):
        total += flat[k]
    return total
