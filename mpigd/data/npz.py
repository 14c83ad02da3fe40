"""NumPy ``.npz`` archives holding arrays ``X`` and ``y``, memory-mapped: a rank touches only its rows.

``numpy.load`` cannot memory-map an archive member, but a member stored without compression
(what ``numpy.savez`` writes) is a plain ``.npy`` image at a fixed offset inside the zip file,
so we map it there directly. Nothing is unpickled: object arrays are refused.
"""

from __future__ import annotations

import math
import struct
import tokenize
import zipfile
import zlib

import numpy as np

from mpigd.errors import InputError

# What NumPy raises on a damaged .npy header: besides ValueError, its header parser lets the
# tokenizer's and literal_eval's own errors through, and a short read of the magic string is an
# EOFError. Shared with the .npy reader and the model loader, which parse the same headers.
HEADER_ERRORS: tuple[type[Exception], ...] = (ValueError, SyntaxError, TypeError, EOFError, tokenize.TokenError)

# Integer and floating-point kinds only: complex values would lose their imaginary part when cast
# to the training dtype, and timedelta (which NumPy counts as a number) and bool are not features.
REAL_KINDS = "iuf"

# What zipfile raises on a damaged archive: BadZipFile; struct.error when it ends inside a local
# header; zlib.error for a corrupt compressed member; RuntimeError (NotImplementedError among
# them) when damaged flags claim encryption or an unknown compression method or zip version.
ZIP_ERRORS: tuple[type[Exception], ...] = (zipfile.BadZipFile, struct.error, zlib.error, RuntimeError)


def read_error(error: Exception) -> str:
    """``error``, raised reading an array, in words fit for a one-line message (the header
    parser's own errors print as tuples of tokenizer positions)."""
    if isinstance(error, (SyntaxError, tokenize.TokenError)):
        return "damaged array header"
    return " ".join(str(error).split()) or type(error).__name__  # on one line, whatever NumPy quotes


HEADER_READERS = {
    (1, 0): np.lib.format.read_array_header_1_0,
    (2, 0): np.lib.format.read_array_header_2_0,
}
_LOCAL_HEADER = struct.Struct("<4s5H3L2H")  # the zip local file header, 30 bytes


def check_stored_size(what: str, shape: tuple[int, ...], dtype: np.dtype, stored: int) -> None:
    """Refuse an array whose header describes more or fewer bytes than are stored after it.

    A memory map trusts the header: one claiming more rows would read the bytes that follow the
    array (the next member, the zip directory) as data; one claiming fewer would drop rows.
    """
    expected = math.prod(shape) * dtype.itemsize
    if stored != expected:
        raise InputError(f"{what} is truncated or corrupt: its header describes {shape} {dtype} "
                         f"({expected:,} bytes), but {stored:,} bytes are stored")


def no_labels(shape: tuple[int, ...]) -> np.ndarray:
    """What stands for the labels of a data set of features of ``shape`` that has none (``mpigd
    predict`` reads such sets): a zero per row, read-only and without memory, sliced and copied by
    the readers like real labels (of no shape when the features have none, for the shape check)."""
    return np.broadcast_to(np.zeros(()), tuple(shape[:1]))


def has_member(path: str, name: str) -> bool:
    """Whether the ``.npz`` archive at ``path`` holds an array ``name`` (``False`` if it is no archive)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return name + ".npy" in archive.namelist()
    except (OSError, *ZIP_ERRORS):
        return False


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
            member_start = info.header_offset + _LOCAL_HEADER.size + name_length + extra_length
            raw.seek(member_start)
            version = np.lib.format.read_magic(raw)
            read_header = HEADER_READERS.get(version)
            if read_header is None:
                raise InputError(f"{path}: array {name!r} uses .npy format {version}, which mpigd does not read")
            shape, fortran_order, dtype = read_header(raw)
            data_offset = raw.tell()
    except (OSError, *ZIP_ERRORS, *HEADER_ERRORS) as error:
        raise InputError(f"{path}: cannot read as .npz ({read_error(error)})") from None
    if dtype.hasobject:
        raise InputError(f"{path}: array {name!r} holds Python objects; only numeric arrays are read")
    if fortran_order:
        raise InputError(f"{path}: array {name!r} is in Fortran order; save a C-ordered array")
    # The member is stored uncompressed: its size in the zip directory is the header plus the data.
    check_stored_size(f"{path}: array {name!r}", shape, dtype, info.file_size - (data_offset - member_start))
    if 0 in shape:
        return np.empty(shape, dtype=dtype)
    try:
        return np.memmap(path, dtype=dtype, mode="r", offset=data_offset, shape=shape)
    except (OSError, ValueError) as error:  # the header promises more bytes than the file holds
        raise InputError(f"{path}: cannot read as .npz (array {name!r}: {read_error(error)})") from None
