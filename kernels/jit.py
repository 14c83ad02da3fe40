"""The one JIT policy every kernel goes through."""

from __future__ import annotations

import functools
import hashlib
import os

import numba
from numba.core import caching

# reassoc lets reductions (dot products) vectorise and contract allows fused multiply-add; neither
# lets the compiler assume away NaN or Inf, so finiteness checks elsewhere stay meaningful.
FASTMATH = {"reassoc", "contract"}

KERNELS_DIRECTORY = os.path.dirname(os.path.abspath(__file__))


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


@functools.lru_cache(maxsize=None)
def sources_digest() -> bytes:
    """SHA-256 of every module's source in this directory, by name: the stamp of every kernel's cache."""
    digest = hashlib.sha256()
    for name in sorted(os.listdir(KERNELS_DIRECTORY)):
        if name.endswith(".py"):
            with open(os.path.join(KERNELS_DIRECTORY, name), "rb") as source:
                digest.update(name.encode() + b"\0" + source.read() + b"\0")
    return digest.digest()


class _WholePackageStamp:
    """Numba stamps a cached kernel with its own file's source alone, so a kernel whose callee
    (in another file here: softmax_delta in mlp.py and sparse.py) changed would load its old
    machine code, after a ``git pull`` into an editable install for one. Stamped with every
    source here, any change recompiles every kernel once."""

    def get_source_stamp(self):
        return sources_digest()

    @classmethod
    def from_function(cls, py_func, py_file):
        if os.path.dirname(os.path.abspath(py_file)) != KERNELS_DIRECTORY:
            return None  # not ours: Numba's own locators take it
        return super().from_function(py_func, py_file)


def _numba_caching(name: str):
    """Numba's caching class ``name`` (public in Numba 0.68, spelt with a leading underscore in older releases)."""
    return getattr(caching, name, None) or getattr(caching, "_" + name)


class _UserDirectoryLocator(_WholePackageStamp, _numba_caching("UserProvidedCacheLocator")):
    """``NUMBA_CACHE_DIR``, when set."""


class _InTreeLocator(_WholePackageStamp, _numba_caching("InTreeCacheLocator")):
    """``__pycache__`` beside the kernels."""


class _UserWideLocator(_WholePackageStamp, _numba_caching("UserWideCacheLocator")):
    """The user's cache directory, for an installation that cannot be written to."""


# Tried before Numba's own, in Numba's order.
_numba_caching("CacheImpl")._locator_classes[:0] = [_UserDirectoryLocator, _InTreeLocator, _UserWideLocator]
