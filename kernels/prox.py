"""The proximal operator of the L1 norm: soft-thresholding, which sets small weights exactly to zero."""

from __future__ import annotations

from mpigd.kernels.jit import kernel


@kernel
def soft_threshold(w, threshold):
    """Replace every ``w[j]`` in place by ``sign(w[j]) * max(|w[j]| - threshold, 0)``.

    Weights within ``threshold`` of zero become exactly ``0.0``: that is what gives L1 its
    sparse solutions (a plain subgradient step would leave them oscillating around zero).
    """
    for j in range(w.shape[0]):
        v = w[j]
        if v > threshold:
            w[j] = v - threshold
        elif v < -threshold:
            w[j] = v + threshold
        else:
            w[j] = 0.0

