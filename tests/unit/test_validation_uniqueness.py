"""Uniqueness within a file: 8-byte hashes in sorted runs behind a Bloom filter, checked against a Python set."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from dropzone.validation import uniqueness
from dropzone.validation.uniqueness import UniqueTracker, hash_values


def repeats_after_first(values: list[str | None]) -> tuple[list[bool], set[str]]:
    """The oracle, by plain Python: True for each value seen before (nulls never), and the distinct values."""
    seen: set[str] = set()
    expected = []
    for v in values:
        expected.append(v is not None and v in seen)
        if v is not None:
            seen.add(v)
    return expected, seen


def test_a_value_hashes_the_same_whatever_its_neighbours() -> None:
    alone = hash_values(pa.array(["O1", "ab", "", "x" * 9]))
    with_long = hash_values(pa.array(["a" * 40, "O1", "ab", "", "x" * 9, None]))
    assert alone.tolist() == with_long[1:5].tolist()
    assert len(with_long) == 5  # nulls are dropped
    assert len(set(with_long.tolist())) == 5


def test_integers_hash_by_their_text() -> None:
    assert hash_values(pa.array([42, None, 7])).tolist() == hash_values(pa.array(["42", "7"])).tolist()


@pytest.mark.parametrize("max_run", [500, 40_000, 4 << 20])
def test_tracker_agrees_with_a_set(monkeypatch: pytest.MonkeyPatch, max_run: int) -> None:
    # GIVEN 40,000 values drawn from 25,000, with long ones and nulls, in batches of 900 (large runs get a
    # prefix directory: DIRECTORY_MIN lowered so this small test uses it too)
    monkeypatch.setattr(uniqueness, "MAX_RUN", max_run)
    monkeypatch.setattr(uniqueness, "DIRECTORY_MIN", 2_000)
    rng = np.random.default_rng(5)
    draws = rng.integers(0, 25_000, size=40_000)
    values: list[str | None] = [("L" * 40 + str(d)) if d % 7 == 0 else f"O{d}" for d in draws]
    for i in range(0, len(values), 997):
        values[i] = None
    tracker = UniqueTracker()
    got: list[bool] = []
    for start in range(0, len(values), 900):
        got.extend(tracker.add(pa.array(values[start : start + 900])).tolist())
    # THEN exactly the repeats after the first occurrence are flagged, and each value is stored once
    expected, seen = repeats_after_first(values)
    assert got == expected
    assert sum(len(run) for run in tracker._runs) == len(seen)


@pytest.mark.parametrize("chunk", [7, 1 << 18])
def test_merge_in_place_equals_a_sorted_union(monkeypatch: pytest.MonkeyPatch, chunk: int) -> None:
    # GIVEN a large sorted run and disjoint sorted incoming hashes, some below, between and above all old ones
    monkeypatch.setattr(uniqueness, "MERGE_CHUNK", chunk)
    rng = np.random.default_rng(9)
    values = rng.choice(np.arange(1, 10**6, dtype=np.uint64), size=3_000, replace=False)
    old, incoming = np.sort(values[:2_000]), np.sort(values[2_000:])
    incoming = np.concatenate(([np.uint64(0)], incoming, [np.uint64(10**7)]))
    room = uniqueness._reserve(len(old) + len(incoming) + 5, old)
    # WHEN merged in place (moved from the back, `chunk` values at a time)
    merged = uniqueness._merge_in_place(room[: len(old) + len(incoming)], incoming)
    # THEN the result is every value once, in order, in the reserved room itself
    assert merged.tolist() == sorted(old.tolist() + incoming.tolist())
    assert np.shares_memory(merged, room)
