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
    """Compile ``function`` with the house options: no Python objects, cached on disk
    (:class:`_KeyedCacheFile`: processes that compile it at once keep every entry), no GIL."""
    settings = dict(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy", boundscheck=False)
    settings.update(options)
    if function is None:
        return lambda f: _cached(numba.njit(**settings)(f))
    return _cached(numba.njit(**settings)(function))


def _cached(dispatcher):
    """``dispatcher`` with its cache entries in :class:`_KeyedCacheFile` files (where Numba's
    internals are those of the releases this was written against; else Numba's own files)."""
    cache = getattr(dispatcher, "_cache", None)
    locator = getattr(getattr(cache, "_impl", None), "locator", None)
    if isinstance(locator, _WholePackageStamp) and isinstance(getattr(cache, "_cache_file", None),
                                                              caching.IndexDataCacheFile):
        cache._cache_file = _KeyedCacheFile(cache.cache_path, cache._impl.filename_base, locator.get_source_stamp())
    return dispatcher


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


class _KeyedCacheFile(caching.IndexDataCacheFile):
    """A kernel's cache entries each in a file named by a digest of its key (signature, CPU,
    bytecode), of the kernels' sources and of Numba's version; no index.

    Numba keeps one index a kernel, from each signature to a data file numbered in order, and
    updates it by reading and rewriting it. Two processes that compile a kernel for different
    signatures at once (``mpigd compile`` deals its trainings across ranks) can both read it before
    either writes: one entry is lost, and a later run compiles again (5 processes at once lost one
    in 2 of 12 tries, ``tests/test_kernels.py``), or both take data file 1 and one signature's
    entry names the other's machine code. Named by their keys, two writers share a file only when
    they write the same entry, each through a temporary name and a rename, and a load needs
    nothing else. Saving an entry removes this kernel's entries of other sources or Numba
    versions (and Numba's own index and numbered files), which would otherwise pile up, one set a
    change of the sources."""

    def __init__(self, cache_path: str, filename_base: str, source_stamp) -> None:
        super().__init__(cache_path, filename_base, source_stamp)
        self._base = filename_base
        stamp = hashlib.sha256(repr((source_stamp, numba.__version__)).encode()).hexdigest()[:16]
        self._current = f"{filename_base}.{stamp}-"

    def _entry_name(self, key) -> str:
        return self._current + hashlib.sha256(repr(key).encode()).hexdigest()[:24] + ".nbc"

    def save(self, key, data) -> None:
        self._save_data(self._entry_name(key), data)
        self._remove(lambda name: not name.startswith(self._current))

    def load(self, key):
        try:
            return self._load_data(self._entry_name(key))
        except OSError:  # not compiled yet, or removed since
            return None

    def flush(self) -> None:
        self._remove(lambda name: True)

    def _remove(self, stale) -> None:
        """Remove this kernel's entries (and Numba's index) for which ``stale(name)`` holds."""
        try:
            names = os.listdir(self._cache_path)
        except OSError:
            return
        for name in names:
            ours = name.startswith(self._base + ".") and name.endswith(".nbc") or name == self._base + ".nbi"
            if ours and stale(name):
                try:
                    os.unlink(os.path.join(self._cache_path, name))
                except OSError:  # removed meanwhile by another process
                    pass


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
