"""Read arrays stored in the IDX format of the MNIST files, plain or gzipped."""

from __future__ import annotations

import gzip
import math
import os
import struct

import numpy as np

#: IDX type code (third magic byte) -> big-endian numpy dtype.
_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_GZIP_MAGIC = b"\x1f\x8b"


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read one IDX file (gzipped or not, detected from its first bytes).

    The format: two zero bytes, a type code byte, a byte with the number of dimensions ``D``,
    ``D`` big-endian uint32 sizes, then the values in C order, big-endian.

    Args:
        path: the file, e.g. ``train-images-idx3-ubyte`` or ``train-images-idx3-ubyte.gz``.

    Returns:
        An array of the stored shape (``(N, 28, 28)`` uint8 for MNIST images, ``(N,)`` uint8
        for labels) in native byte order.

    Raises:
        ValueError: when the magic number is wrong or the size does not match the header.
    """
    with open(path, "rb") as file:
        data = file.read()
    if data[:2] == _GZIP_MAGIC:
        data = gzip.decompress(data)
    if len(data) < 4 or data[:2] != b"\x00\x00" or data[2] not in _DTYPES:
        raise ValueError(f"{path}: not an IDX file (magic number {data[:4].hex()})")
    num_dims = data[3]
    offset = 4 + 4 * num_dims
    if len(data) < offset:
        raise ValueError(f"{path}: IDX header cut short ({len(data)} bytes)")
    shape = struct.unpack(f">{num_dims}I", data[4:offset])
    dtype = np.dtype(_DTYPES[data[2]])
    expected = math.prod(shape) * dtype.itemsize
    if len(data) - offset != expected:
        raise ValueError(
            f"{path}: IDX header gives shape {shape} ({expected} bytes) "
            f"but {len(data) - offset} bytes follow"
        )
    array = np.frombuffer(data, dtype=dtype, count=math.prod(shape), offset=offset)
    return array.reshape(shape).astype(dtype.newbyteorder("="))
