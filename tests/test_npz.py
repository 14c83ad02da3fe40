import numpy as np
import pytest

from mpigd.data.npz import open_member
from mpigd.errors import InputError


def test_members_are_memory_mapped_with_the_saved_values(tmp_path):
    X = np.arange(60, dtype=np.float32).reshape(20, 3)
    y = np.linspace(0, 1, 20)
    path = tmp_path / "d.npz"
    np.savez(path, X=X, y=y)
    mapped = open_member(str(path), "X")
    assert isinstance(mapped, np.memmap)
    assert mapped.dtype == np.float32 and np.array_equal(mapped, X)
    assert np.array_equal(open_member(str(path), "y"), y)


def test_compressed_missing_and_object_members_are_refused(tmp_path):
    compressed = tmp_path / "c.npz"
    np.savez_compressed(compressed, X=np.ones((2, 2)), y=np.ones(2))
    with pytest.raises(InputError, match="compressed"):
        open_member(str(compressed), "X")
    with pytest.raises(InputError, match="no array 'z'"):
        open_member(str(compressed), "z")
    objects = tmp_path / "o.npz"
    np.savez(objects, X=np.array([{"a": 1}], dtype=object), y=np.ones(1))
    with pytest.raises(InputError, match="Python objects"):
        open_member(str(objects), "X")
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip file")
    with pytest.raises(InputError, match="cannot read"):
        open_member(str(junk), "X")
