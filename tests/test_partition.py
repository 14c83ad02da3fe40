import numpy as np
import pytest

from mpigd.partition import block_counts, block_offsets, block_range


@pytest.mark.parametrize("size", range(1, 65))
def test_blocks_tile_the_rows_and_differ_by_at_most_one(size):
    for n in (0, 1, size - 1, size, size + 1, 1000, 12345):
        if n < 0:
            continue
        ranges = [block_range(n, size, rank) for rank in range(size)]
        assert ranges[0][0] == 0 and ranges[-1][1] == n
        assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
        lengths = [stop - start for start, stop in ranges]
        assert max(lengths) - min(lengths) <= 1
        assert list(block_counts(n, size)) == lengths
        assert list(block_offsets(n, size)) == [r[0] for r in ranges] + [n]


def test_bad_partition_arguments_raise():
    with pytest.raises(ValueError):
        block_range(10, 0, 0)
    with pytest.raises(ValueError):
        block_range(10, 2, 2)
