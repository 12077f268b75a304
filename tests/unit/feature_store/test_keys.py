"""Key layout: versioned prefix, one cluster slot per version, packed rows."""

from __future__ import annotations

import fnmatch

import numpy as np
from redis.crc import key_slot

from feature_store import keys


def test_all_keys_of_a_version_share_one_cluster_slot() -> None:
    version = "3c7436ca52047454"
    names = [keys.user_key(version, 1), keys.item_key(version, 1682), keys.meta_key(version)]
    names += [keys.item_key(version, i) for i in range(2, 200)]
    assert len({key_slot(name.encode()) for name in names}) == 1
    assert all(name.startswith("rs:v1:{3c7436ca52047454}:") for name in names)


def test_version_pattern_matches_only_that_version() -> None:
    pattern = keys.version_pattern("aaa")
    assert fnmatch.fnmatchcase(keys.user_key("aaa", 7), pattern)
    assert not fnmatch.fnmatchcase(keys.user_key("aab", 7), pattern)
    assert not fnmatch.fnmatchcase(keys.ACTIVE_KEY, pattern)


def test_packed_rows_round_trip_as_float32() -> None:
    matrix = np.arange(12, dtype=np.float64).reshape(3, 4) / 3
    packed = keys.pack_rows(matrix)
    assert [len(p) for p in packed] == [16, 16, 16]
    assert packed[1] == keys.pack_row(matrix[1])
    back = np.frombuffer(b"".join(packed), keys.ROW_DTYPE).reshape(3, 4)
    np.testing.assert_array_equal(back, matrix.astype(np.float32))
