"""A plain streaming read: the memory-bandwidth yardstick for the other kernels."""

from mpigd.kernels.jit import kernel


@kernel
def stream_sum(X):
    """Sum of every element of a 2-D array, read once in memory order."""
    total = 0.0
    n, d = X.shape
    for i in range(n):
        for j in range(d):
            total += X[i, j]
    return total
