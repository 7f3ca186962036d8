import gzip

import numpy as np
import pytest

from lsuite.data.idx import read_idx

CASES = [
    pytest.param(
        np.arange(5 * 28 * 28, dtype=np.int64).reshape(5, 28, 28) % 256, np.uint8, id="images"
    ),
    pytest.param(np.arange(7) % 10, np.uint8, id="labels"),
    pytest.param(np.arange(-6, 6).reshape(3, 4), np.int16, id="int16"),
    pytest.param(np.arange(-3, 3) * 100_000, np.int32, id="int32"),
    pytest.param(np.linspace(-1, 1, 8).reshape(2, 2, 2), np.float32, id="float32"),
]


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gzip"])
@pytest.mark.parametrize(("values", "dtype"), CASES)
def test_read_idx_round_trips(tmp_path, idx_writer, values, dtype, compress):
    array = values.astype(dtype)
    path = idx_writer(tmp_path / "file-idx", array, compress=compress)
    result = read_idx(path)
    assert result.dtype == np.dtype(dtype)  # native byte order
    assert result.shape == array.shape
    np.testing.assert_array_equal(result, array)
    result[...] = 0  # writable copy, not a view of the file's bytes


def test_gzip_detected_from_content_not_name(tmp_path, idx_writer):
    array = np.arange(12, dtype=np.uint8).reshape(3, 4)
    path = idx_writer(tmp_path / "x", array)
    gzipped = tmp_path / "no-suffix"
    gzipped.write_bytes(gzip.compress(path.read_bytes()))
    np.testing.assert_array_equal(read_idx(gzipped), array)


def test_bad_magic_names_the_file(tmp_path):
    path = tmp_path / "bad"
    path.write_bytes(b"\x01\x02\x08\x01" + bytes(8))
    with pytest.raises(ValueError, match="bad: not an IDX file"):
        read_idx(path)


def test_truncated_file_is_rejected(tmp_path, idx_writer):
    path = idx_writer(tmp_path / "cut", np.zeros((4, 28, 28), dtype=np.uint8))
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(ValueError, match=r"shape \(4, 28, 28\) \(3136 bytes\) but 3126 bytes"):
        read_idx(path)
