"""Element-wise sums for the allreduce strategies: the local add between two messages.

Each kernel reads its operands once and writes the result in place; ``out`` may be the same
array as ``a`` or ``b`` (each element is read before it is written), so a strategy can add a
received message into its own buffer without a temporary.
"""

from __future__ import annotations

from mpigd.kernels.jit import kernel


@kernel
def add(a, b, out):
    """``out[i] = a[i] + b[i]`` for every ``i``; ``out`` may alias ``a`` or ``b``.

    One rounding per element, so the result does not depend on the order of the two operands
    (IEEE 754 addition is commutative): two ranks adding the same pair get the same bits.
    """
    for i in range(out.shape[0]):
        out[i] = a[i] + b[i]

