"""Uniqueness within one file in bounded memory: one 8-byte key per distinct value, in sorted numpy runs.

Memory is 8 bytes per distinct value (10 M order ids: 80 MB), whatever the value length. For a column whose regex
is an id pattern (see :mod:`dropzone.validation.digits`) the key is the id itself packed into an integer: exact,
and in id order, so ascending ids are appended without a lookup. Otherwise the key is a 64-bit polynomial hash of
the UTF-8 bytes, computed vectorized over the Arrow buffers, then mixed (splitmix64). A false duplicate needs a
64-bit collision: about 3e-6 for 10 M values; it would quarantine a good file, never accept a bad one. Each value
is stored once: new keys in small sorted runs merged like an LSM tree, and every MAX_RUN of them merged in place
into one large sorted run (in its own reserved mapping: it grows without copies), with a prefix directory for
hashes, so a probe looks at one large run and a few small ones, and a merge needs a few MiB of scratch.
This is the one part of validation whose memory grows with the file: 8 bytes per distinct value of a unique column.
"""

from __future__ import annotations

import mmap

import numpy as np
import pyarrow as pa

from dropzone.validation.digits import digit_pattern
from dropzone.validation.digits import valid as valid_mask

_P = np.uint64(0x100000001B3)  # odd, so invertible modulo 2**64
_P_INV = np.uint64(pow(int(_P), -1, 2**64))
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
# Small runs are merged into the large one once they hold this many hashes (4 MiB): the merge's scratch is a few
# times that. Halving it doubles the merges (each one moves the whole large run).
MAX_RUN = 1 << 19
# 4 MiB: 8 MiB saves ~0.8 CPU-s per 13.5 M ids (fewer false positives to look up) but costs the peak RSS margin.
FILTER_BITS = 25


def _mix(h: np.ndarray) -> np.ndarray:
    h = h ^ (h >> np.uint64(30))
    h = h * np.uint64(0xBF58476D1CE4E5B9)
    h = h ^ (h >> np.uint64(27))
    h = h * np.uint64(0x94D049BB133111EB)
    return h ^ (h >> np.uint64(31))


class _Powers:
    """P**k and P**-k for k < n, grown on demand."""

    def __init__(self) -> None:
        self.up: np.ndarray = np.ones(1, dtype=np.uint64)
        self.down: np.ndarray = np.ones(1, dtype=np.uint64)

    def upto(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        if len(self.up) < n:
            size = max(n, 2 * len(self.up))
            with np.errstate(over="ignore"):
                self.up = np.cumprod(np.concatenate(([np.uint64(1)], np.full(size - 1, _P, np.uint64))))
                self.down = np.cumprod(np.concatenate(([np.uint64(1)], np.full(size - 1, _P_INV, np.uint64))))
        return self.up[:n], self.down[:n]


_POWERS = _Powers()


SHORT = 32  # ids are short: hash them as up to four zero-padded 8-byte words


def _mix_words(h: np.ndarray, words: np.ndarray, count: int) -> np.ndarray:
    with np.errstate(over="ignore"):
        for k in range(count):
            h = _mix(h ^ words[:, k]) + np.uint64(k + 1) * _GOLDEN
        return _mix(h)


def _hash_short(data: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    n = len(lengths)
    longest = int(lengths.max())
    width = int(-(-longest // 8) * 8)
    if longest == int(lengths.min()) and longest > 0:
        # Fixed-width values (ids): they lie back to back, so one reshape replaces the gather and the per-word
        # select below; the hash is the same, since every value has all ``width // 8`` words.
        start = int(starts[0])
        padded = np.zeros((n, width), dtype=np.uint8)
        padded[:, :longest] = data[start : start + n * longest].reshape(n, longest)
        with np.errstate(over="ignore"):
            return _mix_words(lengths.astype(np.uint64) * _GOLDEN, padded.view(np.uint64), width // 8)
    cols = np.arange(width)
    idx = starts[:, None] + cols
    inside = cols < lengths[:, None]
    padded = np.where(inside, data[np.minimum(idx, len(data) - 1)], 0).astype(np.uint8)
    words = np.ascontiguousarray(padded).view(np.uint64)
    with np.errstate(over="ignore"):
        h = lengths.astype(np.uint64) * _GOLDEN
        for k in range(words.shape[1]):
            # Only the words a value really has: its hash must not depend on the batch's longest value.
            h = np.where(lengths > 8 * k, _mix(h ^ words[:, k]) + np.uint64(k + 1) * _GOLDEN, h)
        return _mix(h)


def hash_values(values: pa.Array) -> np.ndarray:
    """64-bit hashes of the non-null values (nulls dropped), in order."""
    values = values.drop_null()
    if pa.types.is_integer(values.type) or pa.types.is_floating(values.type) or pa.types.is_temporal(values.type):
        values = values.cast(pa.string())
    if pa.types.is_boolean(values.type):
        values = values.cast(pa.string())
    if not pa.types.is_large_string(values.type):
        values = values.cast(pa.string())  # a no-op for text: its 32-bit offsets are read as they are
    n = len(values)
    if n == 0:
        return np.empty(0, dtype=np.uint64)
    _, offsets_buf, data_buf = values.buffers()
    wide = pa.types.is_large_string(values.type)
    offset_type = np.int64 if wide else np.int32
    offsets = np.frombuffer(
        offsets_buf, dtype=offset_type, count=n + 1, offset=values.offset * (8 if wide else 4)
    ).astype(np.int64)
    lo, hi = int(offsets[0]), int(offsets[-1])
    lengths = np.diff(offsets)
    if hi == lo:
        return _hash_short(np.zeros(1, dtype=np.uint8), offsets[:-1] - lo, lengths)
    short = lengths <= SHORT
    if short.all():
        return _hash_short(np.frombuffer(data_buf, dtype=np.uint8), offsets[:-1], lengths)
    if short.any():  # each value is hashed by its own length class, so a hash never depends on its neighbours
        out = np.empty(n, dtype=np.uint64)
        out[short] = hash_values(values.filter(pa.array(short)))
        out[~short] = hash_values(values.filter(pa.array(~short)))
        return out
    data = np.frombuffer(data_buf, dtype=np.uint8, count=hi - lo, offset=lo).astype(np.uint64) if hi > lo else None
    starts = offsets[:-1] - lo
    ends = offsets[1:] - lo
    with np.errstate(over="ignore"):
        if data is None:
            h = np.zeros(n, dtype=np.uint64)
        else:
            up, down = _POWERS.upto(len(data))
            prefix = np.concatenate(([np.uint64(0)], np.cumsum(data * up, dtype=np.uint64)))
            h = (prefix[ends] - prefix[starts]) * down[np.minimum(starts, len(down) - 1)]
        h = h ^ ((ends - starts).astype(np.uint64) * _GOLDEN)
        return _mix(h)


MAX_SMALL_RUNS = 64  # ascending batches are kept as runs of their own, up to this many
MERGE_CHUNK = 1 << 18  # hashes moved per step of an in-place merge into the large run (2 MiB per temporary)
PER_PREFIX = 8  # hashes per directory entry on average: 0.5 byte per hash, windows of ~25
DIRECTORY_MIN = 1 << 15  # a smaller large run stays in cache: a plain binary search is fine


class _Directory:
    """Where each top-bits prefix starts in a large sorted run: a probe reads one entry and a few adjacent cache
    lines instead of ~20 scattered ones of a binary search (the hashes are uniform, ~PER_PREFIX per prefix)."""

    def __init__(self, run: np.ndarray) -> None:
        self.bits = max(min((len(run) // PER_PREFIX).bit_length() - 1, 24), 1)
        self.shift = np.uint64(64 - self.bits)
        self.starts = np.zeros((1 << self.bits) + 1, dtype=np.int32)
        # Chunk by chunk: a chunk of a sorted run spans few prefixes, so every temporary stays small.
        for lo in range(0, len(run), MERGE_CHUNK):
            prefix = (run[lo : lo + MERGE_CHUNK] >> self.shift).astype(np.intp)
            first = int(prefix[0])
            counts = np.bincount(prefix - first)
            self.starts[first + 1 : first + 1 + len(counts)] += counts.astype(np.int32)
        np.cumsum(self.starts, out=self.starts)
        self.width = max(
            int(np.diff(self.starts[lo : lo + MERGE_CHUNK + 1]).max()) for lo in range(0, 1 << self.bits, MERGE_CHUNK)
        )

    def contains(self, run: np.ndarray, probes: np.ndarray) -> np.ndarray:
        prefix = (probes >> self.shift).astype(np.intp)
        lo, hi = self.starts[prefix].astype(np.intp), self.starts[prefix + 1]
        idx = lo[:, None] + np.arange(self.width)
        window = run[np.minimum(idx, len(run) - 1)]
        return ((window == probes[:, None]) & (idx < hi[:, None])).any(axis=1)


def _reserve(count: int, keep: np.ndarray) -> np.ndarray:
    """Room for ``count`` hashes in an anonymous mapping, starting with ``keep``: pages become resident only when
    written, and outside the malloc heap, so a large run grows without copies or heap fragmentation."""
    flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | getattr(mmap, "MAP_NORESERVE", 0)
    room = np.frombuffer(mmap.mmap(-1, max(count, 1) * 8, flags=flags), dtype=np.uint64)
    room[: len(keep)] = keep
    return room


def _merge_in_place(big: np.ndarray, incoming: np.ndarray) -> np.ndarray:
    """Merge the sorted ``incoming`` into ``big``, whose first ``len(big) - len(incoming)`` values are sorted and
    disjoint from it, in place.

    The old values move to their final places from the back, one chunk at a time, so the merge needs a chunk of
    scratch, not a second copy of the run.
    """
    k = len(incoming)
    n = len(big) - k
    if k and (n == 0 or big[n - 1] < incoming[0]):
        big[n:] = incoming  # all after the old values (ascending ids): an append
        return big
    pos = np.searchsorted(big[:n], incoming)  # how many old values precede each incoming one
    hi = n
    while hi > 0:
        lo = max(0, hi - MERGE_CHUNK)
        first, last = np.searchsorted(pos, [lo, hi])
        # an old value at i moves up by the number of incoming values with pos <= i
        shift = np.cumsum(np.bincount(pos[first:last] - lo, minlength=hi - lo)) + first
        moved = big[lo:hi].copy()
        big[np.arange(lo, hi) + shift] = moved  # destinations are >= lo and below what earlier steps placed
        hi = lo
    for lo in range(0, k, MERGE_CHUNK):
        pos[lo : lo + MERGE_CHUNK] += np.arange(lo, min(lo + MERGE_CHUNK, k))  # incoming j lands at pos[j] + j
    big[pos] = incoming
    return big


class UniqueTracker:
    """Tracks one column's values across batches; :meth:`add` returns where a value repeats an earlier one.

    Each value is stored as one 8-byte key: for a column whose regex is an id pattern (``^O[0-9]{6,12}$``, see
    :mod:`dropzone.validation.digits`) the exact integer the id packs into, else a 64-bit hash. Exact keys keep the
    ids' order, so a batch of ids all above every stored one (ids written in ascending order, as generated ids
    usually are) needs no lookup and is appended; values that do not fit the pattern (already failing its regex)
    are hashed into a second, separate set, since they can never equal a fitting one.

    New keys go to small sorted runs merged like an LSM tree; once they hold MAX_RUN keys they are merged, in
    place, into one large sorted run (hashes: with a prefix directory). A probe thus looks at one large run and a
    few small ones, however large the file (with capped runs alone, a 13 M-row file had 16 runs of 1 M to probe).
    """

    def __init__(self, capacity: int = 1 << 24, pattern: str | None = None) -> None:
        """``capacity``: distinct values to reserve address space for (not memory); more still work, with a copy.
        ``pattern``: the column's regex; an id pattern makes the keys exact."""
        self._capacity = capacity
        self._digits = digit_pattern(pattern)
        self._other: UniqueTracker | None = None  # exact mode: the hashes of values that do not fit the pattern
        self._room = np.empty(0, dtype=np.uint64)  # the large run is its prefix
        self._large = self._room
        self._large_directory: _Directory | None = None
        self._small: list[np.ndarray] = []
        self._max: int | None = None  # the largest key stored
        # A one-hash Bloom filter over FILTER_BITS bits of each (hashed) key: most new values miss it, and only
        # the rest are looked up in the runs. 4 MiB, built on the first batch that needs a lookup.
        self._filter: np.ndarray | None = None

    @property
    def exact(self) -> bool:
        return self._digits is not None

    @property
    def _runs(self) -> list[np.ndarray]:
        """Every stored key, once: the large run (when started) and the small runs."""
        return ([self._large] if len(self._large) else []) + self._small

    @property
    def nbytes(self) -> int:
        directory = self._large_directory.starts.nbytes if self._large_directory is not None else 0
        bloom = self._filter.nbytes if self._filter is not None else 0
        other = self._other.nbytes if self._other is not None else 0
        return sum(r.nbytes for r in self._runs) + bloom + directory + other

    def _hashed(self, keys: np.ndarray) -> np.ndarray:
        """Uniform 64-bit values of the keys, for the filter: hashes as they are, exact keys mixed."""
        return _mix(keys) if self.exact else keys

    @staticmethod
    def _slots(hashed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        top = hashed >> np.uint64(64 - FILTER_BITS)
        return (top >> np.uint64(3)).astype(np.intp), (np.uint8(1) << (top & np.uint64(7)).astype(np.uint8))

    def _seen(self, keys: np.ndarray) -> np.ndarray:
        """``keys`` sorted: which of them are stored."""
        found = np.zeros(len(keys), dtype=bool)
        if self._max is None or int(keys[0]) > self._max:
            return found  # all above every stored key (ascending ids): nothing to look up
        if self._filter is None:
            self._filter = np.zeros(1 << (FILTER_BITS - 3), dtype=np.uint8)
            for run in self._runs:
                for lo in range(0, len(run), MERGE_CHUNK):
                    self._remember(run[lo : lo + MERGE_CHUNK])
        byte, bit = self._slots(self._hashed(keys))
        maybe = np.flatnonzero(self._filter[byte] & bit)
        if maybe.size == 0:
            return found
        probes = keys[maybe]
        hit = np.zeros(len(probes), dtype=bool)
        for run in self._runs:
            if run is self._large and self._large_directory is not None:
                hit |= self._large_directory.contains(run, probes)
                continue
            # the small runs are young and few (at most ~log2(MAX_RUN / batch)): a binary search is enough
            idx = np.searchsorted(run, probes)
            idx[idx == len(run)] = len(run) - 1
            hit |= run[idx] == probes
        found[maybe] = hit
        return found

    def _remember(self, fresh: np.ndarray) -> None:
        if self._filter is None:
            return  # built from the runs when first needed
        hashed = np.sort(_mix(fresh)) if self.exact else fresh  # hashes come sorted; mixed keys are sorted here
        byte, bit = self._slots(hashed)  # sorted, so equal bytes are adjacent: OR each group once
        starts = np.concatenate(([0], np.flatnonzero(byte[1:] != byte[:-1]) + 1))
        self._filter[byte[starts]] |= np.bitwise_or.reduceat(bit, starts)

    def _store(self, fresh: np.ndarray) -> None:
        above = self._max is not None and int(fresh[0]) > self._max
        top = int(fresh[-1])
        self._max = top if self._max is None else max(self._max, top)
        runs = self._small
        runs.append(fresh)
        if len(runs) > MAX_SMALL_RUNS:
            merged = np.concatenate(runs)
            merged.sort(kind="stable")  # disjoint sorted runs: timsort finds and merges them
            runs[:] = [merged]
        # A run above every stored key (ascending ids) stays as it is: merging it would only copy it.
        while not above and len(runs) >= 2 and len(runs[-2]) <= 2 * len(runs[-1]):
            last = runs.pop()
            # Disjoint sorted runs: timsort (numpy's stable sort of 64-bit ints) finds the two runs and merges them
            # linearly, ~4x faster than np.insert at a searchsorted position.
            merged = np.concatenate((runs[-1], last))
            merged.sort(kind="stable")
            runs[-1] = merged
        if sum(len(r) for r in runs) < MAX_RUN:
            return
        incoming = np.concatenate(runs) if len(runs) > 1 else runs[0]
        runs.clear()  # the small runs are in ``incoming`` now: free them before the merge needs its scratch
        incoming.sort(kind="stable")  # in place; timsort merges the concatenated sorted runs
        need = len(self._large) + len(incoming)
        if need > len(self._room):
            self._room = _reserve(max(self._capacity, 2 * need), self._large)
        self._large = _merge_in_place(self._room[:need], incoming)
        self._large_directory = None  # dropped before its successor is built
        # exact keys are not uniform: a directory of their top bits would be lopsided; a binary search it is
        if len(self._large) >= DIRECTORY_MIN and not self.exact:
            self._large_directory = _Directory(self._large)

    def _add_keys(self, keys: np.ndarray) -> np.ndarray:
        """Boolean mask over ``keys``: True for every key stored before or earlier in ``keys``; stores the rest."""
        if len(keys) == 0:
            return np.zeros(0, dtype=bool)
        ascending = len(keys) < 2 or bool((keys[1:] > keys[:-1]).all())
        ordered = keys if ascending else np.sort(keys)
        seen_sorted = self._seen(ordered)  # sorted probes walk the runs in order: far fewer cache misses
        same_as_previous = ordered[1:] == ordered[:-1]
        if not seen_sorted.any() and not same_as_previous.any():
            repeated = np.zeros(len(keys), dtype=bool)  # the usual case: nothing to map back to row positions
            fresh = ordered
        else:
            order = np.argsort(keys, kind="stable")
            repeated = np.zeros(len(keys), dtype=bool)
            repeated[order] = seen_sorted
            repeated[order[1:][same_as_previous]] = True
            fresh = ordered[~(seen_sorted | np.concatenate(([False], same_as_previous)))]
        if len(fresh):
            self._remember(fresh)
            self._store(fresh)
        return repeated

    def add(self, values: pa.Array, fits: np.ndarray | None = None) -> np.ndarray:
        """Boolean mask over ``values``: True for every non-null value already seen in this file (or earlier in it).

        ``fits``: the id pattern's :meth:`~dropzone.validation.digits.DigitPattern.matches` of ``values`` when the
        caller has it already (the regex rule needs it too), so the byte test runs once."""
        if self._digits is None or not pa.types.is_string(values.type):
            repeated = self._add_keys(hash_values(values))
            valid = None if values.null_count == 0 else np.flatnonzero(valid_mask(values))
        else:
            if fits is None:
                fits = self._digits.matches(values)  # False for nulls
            if fits.all():
                return self._add_keys(self._digits.keys(values).view(np.uint64))
            mask = np.zeros(len(values), dtype=bool)
            if fits.any():
                rows = np.flatnonzero(fits)
                mask[rows] = self._add_keys(self._digits.keys(values.take(pa.array(rows))).view(np.uint64))
            others = np.flatnonzero(~fits & valid_mask(values))
            if len(others):
                if self._other is None:
                    self._other = UniqueTracker(self._capacity)
                mask[others] = self._other.add(values.take(pa.array(others)))
            return mask
        if valid is None:
            return repeated
        mask = np.zeros(len(values), dtype=bool)
        mask[valid] = repeated
        return mask
