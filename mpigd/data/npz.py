"""NumPy ``.npz`` archives holding arrays ``X`` and ``y``, memory-mapped: a rank touches only its rows.

``numpy.load`` cannot memory-map an archive member, but a member stored without compression
(what ``numpy.savez`` writes) is a plain ``.npy`` image at a fixed offset inside the zip file,
so we map it there directly. Nothing is unpickled: object arrays are refused.
"""

from __future__ import annotations

import struct
import zipfile

import numpy as np

from mpigd.errors import InputError

_HEADER_READERS = {
    (1, 0): np.lib.format.read_array_header_1_0,
    (2, 0): np.lib.format.read_array_header_2_0,
}
_LOCAL_HEADER = struct.Struct("<4s5H3L2H")  # the zip local file header, 30 bytes


def open_member(path: str, name: str) -> np.ndarray:
    """A read-only memory map of the array ``name`` inside the ``.npz`` file ``path``."""
    try:
        with zipfile.ZipFile(path) as archive:
            try:
                info = archive.getinfo(name + ".npy")
            except KeyError:
                members = ", ".join(n.removesuffix(".npy") for n in archive.namelist())
                raise InputError(f"{path}: no array {name!r} in the archive (it holds: {members})") from None
            if info.compress_type != zipfile.ZIP_STORED:
                raise InputError(
                    f"{path}: array {name!r} is compressed and cannot be memory-mapped; "
                    "save it with numpy.savez, not savez_compressed"
                )
        with open(path, "rb") as raw:
            raw.seek(info.header_offset)
            fields = _LOCAL_HEADER.unpack(raw.read(_LOCAL_HEADER.size))
            if fields[0] != b"PK\x03\x04":
                raise InputError(f"{path}: damaged zip archive (bad local header for {name!r})")
            name_length, extra_length = fields[-2], fields[-1]
            raw.seek(info.header_offset + _LOCAL_HEADER.size + name_length + extra_length)
            version = np.lib.format.read_magic(raw)
            read_header = _HEADER_READERS.get(version)
            if read_header is None:
                raise InputError(f"{path}: array {name!r} uses .npy format {version}, which mpigd does not read")
            shape, fortran_order, dtype = read_header(raw)
            data_offset = raw.tell()
    except (OSError, zipfile.BadZipFile, ValueError) as error:
        raise InputError(f"{path}: cannot read as .npz ({error})") from None
    if dtype.hasobject:
        raise InputError(f"{path}: array {name!r} holds Python objects; only numeric arrays are read")
    if fortran_order:
        raise InputError(f"{path}: array {name!r} is in Fortran order; save a C-ordered array")
    if 0 in shape:
        return np.empty(shape, dtype=dtype)
    return np.memmap(path, dtype=dtype, mode="r", offset=data_offset, shape=shape)
