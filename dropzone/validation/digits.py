"""Identifier patterns of the form ``^<literal prefix>[0-9]{a,b}$``, checked and keyed without a regex engine.

Contracts describe ids like ``^O[0-9]{6,12}$``. For such a pattern, RE2's full match is equivalent to a byte test:
the UTF-8 value starts with the (ASCII) prefix, its byte length is within ``[len(prefix) + a, len(prefix) + b]`` and
every byte after the prefix is an ASCII digit (a non-ASCII character has no byte in ``0x30..0x39``, and RE2's
``[0-9]`` and ``\\d`` are ASCII only). That test is a few numpy passes over the Arrow buffers instead of a regex
per value, and a matching value packs exactly into an integer key (see :meth:`DigitPattern.keys`) that
:mod:`dropzone.validation.uniqueness` stores instead of a hash.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

# A literal prefix of plain ASCII characters (no regex metacharacters), digits as [0-9] or \d, bounded repeat.
_SHAPE = re.compile(r"^\^([A-Za-z0-9_:/-]*)(?:\[0-9\]|\\d)\{([0-9]+)(?:,([0-9]+))?\}\$$")
MAX_DIGITS = 18  # 10**18 + ... < 2**63: the key of any length fits a signed 64-bit integer


def bools(mask: pa.Array) -> np.ndarray:
    """An Arrow boolean array (nulls read as False) as a numpy bool array, unpacked from its bitmaps by numpy:
    ``np.asarray``/``to_numpy`` on Arrow arrays make pyarrow import pandas (when installed), ~0.17 CPU-s."""
    n = len(mask)
    validity, values = mask.buffers()[:2]
    out = np.unpackbits(np.frombuffer(values, dtype=np.uint8), bitorder="little", count=mask.offset + n)[mask.offset :]
    out = out.astype(bool)
    if validity is not None and mask.null_count:
        out &= valid(mask)
    return out


def offsets(values: pa.Array) -> np.ndarray | None:
    """The value offsets (int32, ``len + 1`` of them, nulls included) of a non-empty string array, else None."""
    if not pa.types.is_string(values.type) or len(values) == 0:
        return None
    return np.frombuffer(values.buffers()[1], dtype=np.int32, count=len(values) + 1, offset=values.offset * 4)


def valid(values: pa.Array) -> np.ndarray:
    """Per value of any Arrow array: True where it is not null (from the validity bitmap, by numpy)."""
    n = len(values)
    validity = values.buffers()[0]
    if validity is None or values.null_count == 0:
        return np.ones(n, dtype=bool)
    bits = np.unpackbits(np.frombuffer(validity, dtype=np.uint8), bitorder="little", count=values.offset + n)
    return bits[values.offset :].astype(bool)


@dataclass(frozen=True)
class DigitPattern:
    prefix: bytes
    min_digits: int
    max_digits: int

    def _layout(self, values: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(data bytes, value start offsets, value byte lengths) of a string array, nulls included."""
        if not pa.types.is_string(values.type):
            raise TypeError(f"expected a string array, got {values.type}")
        data_buf = values.buffers()[2]
        found = offsets(values)
        bounds = found.astype(np.intp) if found is not None else np.zeros(1, np.intp)
        data = np.frombuffer(data_buf, dtype=np.uint8) if data_buf is not None else np.zeros(0, np.uint8)
        return data, bounds[:-1], np.diff(bounds)

    def matches(self, values: pa.Array) -> np.ndarray:
        """Boolean per value: True where the pattern matches (False for nulls)."""
        data, starts, lengths = self._layout(values)
        p = len(self.prefix)
        n = len(values)
        width = int(lengths[0]) if n else 0
        if n and not values.null_count and width > 0 and (lengths == width).all():
            # one length (ids usually): the values lie back to back, so test them as an (n, width) byte matrix
            if not p + self.min_digits <= width <= p + self.max_digits:
                return np.zeros(n, dtype=bool)
            block = data[int(starts[0]) : int(starts[0]) + n * width].reshape(n, width)
            # column by column (a reduction along the short rows is ~3x slower): the largest byte - '0', wrapped
            # as uint8 so bytes below '0' count as large too; all digits <=> it is at most 9
            high = np.zeros(n, dtype=np.uint8)
            for j in range(p, width):
                np.maximum(high, block[:, j] - np.uint8(48), out=high)
            ok = high <= 9
            for i, byte in enumerate(self.prefix):
                ok &= block[:, i] == byte
            return ok
        ok = (lengths >= p + self.min_digits) & (lengths <= p + self.max_digits)
        if values.null_count:
            ok &= valid(values)
        if not ok.any():
            return ok
        for i, byte in enumerate(self.prefix):
            ok[ok] = data[starts[ok] + i] == byte
        # non-digit bytes counted by a prefix sum: a value's digits run from starts + p to starts + length
        not_digit = (data - np.uint8(48)) > 9  # uint8 wrap-around: one compare for both bounds
        before = np.concatenate(([0], np.cumsum(not_digit, dtype=np.int64)))
        rows = np.flatnonzero(ok)
        first, end = starts[rows] + p, starts[rows] + lengths[rows]
        ok[rows] = before[end] - before[first] == 0
        return ok

    def keys(self, values: pa.Array) -> np.ndarray:
        """Exact int64 keys of values that all match (no nulls): equal keys ⇔ equal values, and the order of keys is
        (digit count, number), so ascending ids give ascending keys. The key is the number plus the count of
        shorter digit strings allowed (``10**a + ... + 10**(d-1)`` for ``d`` digits): distinct for every value."""
        data, starts, lengths = self._layout(values)
        p = len(self.prefix)
        digits = lengths - p
        n = len(values)
        if n == 0:
            return np.zeros(0, dtype=np.int64)
        number = self._parsed(values, data, starts, lengths)
        if number is None:
            number = self._by_digit(data, starts, digits)
        return number + _LENGTH_OFFSETS[self.min_digits][digits]

    def _parsed(self, values: pa.Array, data: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray | None:
        """The numbers by Arrow's string → int64 cast of a copy of the text with each prefix byte set to ``0``
        (leading zeros leave a number as it is): ~4x faster than a numpy pass per digit. None if it refuses."""
        p = len(self.prefix)
        if self.min_digits == 0 and p == 0:
            return None  # an empty value would be an empty string: not a number for the cast
        end = int(starts[-1] + lengths[-1])
        text = data[:end].copy()
        for i in range(p):
            text[starts + i] = 48
        zeroed = pa.Array.from_buffers(
            pa.string(), len(values), [None, values.buffers()[1], pa.py_buffer(text)], offset=values.offset
        )
        try:
            parsed = pc.cast(zeroed, pa.int64())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return None
        # the values buffer as it is (no nulls here): ``to_numpy`` would make pyarrow import pandas, ~0.17 CPU-s
        return np.frombuffer(parsed.buffers()[1], dtype=np.int64, count=len(parsed), offset=parsed.offset * 8)

    def _by_digit(self, data: np.ndarray, starts: np.ndarray, digits: np.ndarray) -> np.ndarray:
        """The numbers, one numpy pass per digit position."""
        p = len(self.prefix)
        n = len(digits)
        key = np.zeros(n, dtype=np.int64)
        width = int(digits.max())
        if width == int(digits.min()):
            stride = p + width
            block = data[int(starts[0]) : int(starts[0]) + n * stride].reshape(n, stride)[:, p:]
            for j in range(width):
                key = key * 10 + (block[:, j] - np.uint8(48)).astype(np.int64)
        else:
            for j in range(width):
                inside = digits > j
                byte = data[np.where(inside, starts + p + j, 0)]
                key = np.where(inside, key * 10 + (byte.astype(np.int64) - 48), key)
        return key


# _LENGTH_OFFSETS[a][d] = 10**a + ... + 10**(d-1): how many digit strings of a..d-1 digits there are.
_LENGTH_OFFSETS = [
    np.array([sum(10**k for k in range(a, d)) for d in range(MAX_DIGITS + 1)], dtype=np.int64)
    for a in range(MAX_DIGITS + 1)
]


@functools.lru_cache(maxsize=64)
def digit_pattern(regex: str | None) -> DigitPattern | None:
    """The :class:`DigitPattern` a contract regex is exactly equivalent to, or None if it has another shape."""
    if regex is None:
        return None
    m = _SHAPE.match(regex)
    if m is None:
        return None
    low = int(m.group(2))
    high = int(m.group(3)) if m.group(3) is not None else low
    if not 0 <= low <= high <= MAX_DIGITS:
        return None
    return DigitPattern(m.group(1).encode("ascii"), low, high)
