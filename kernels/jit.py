"""The one JIT policy every kernel goes through."""

from __future__ import annotations

import numba

# reassoc lets reductions (dot products) vectorise and contract allows fused multiply-add; neither
# lets the compiler assume away NaN or Inf, so finiteness checks elsewhere stay meaningful.
FASTMATH = {"reassoc", "contract"}


def kernel(function=None, **options):
    """Compile ``function`` with the house options: no Python objects, cached on disk, no GIL.

    Numba writes its cache files through a temporary name and a rename, so ranks that compile
    the same kernel at once do not corrupt each other's cache.
    """
    settings = dict(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy", boundscheck=False)
    settings.update(options)
    if function is None:
        return lambda f: numba.njit(**settings)(f)
    return numba.njit(**settings)(function)
