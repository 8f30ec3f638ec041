"""Id patterns (``^O[0-9]{6,12}$``): the byte test must answer exactly as RE2, and the keys must be exact."""

from __future__ import annotations

import random

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from dropzone.contract import Column
from dropzone.rules import FORMULA_PREFIXES, RowRule
from dropzone.validation.compiler import bool_array, failure_mask
from dropzone.validation.digits import digit_pattern
from dropzone.validation.uniqueness import UniqueTracker

from .test_validation_uniqueness import repeats_after_first

PATTERNS = ["^O[0-9]{6,12}$", "^C[0-9]{6}$", r"^P\d{5}$", "^[0-9]{0,3}$", "^ab-[0-9]{1,18}$"]
# digits, prefix letters, a newline (RE2's $ does not match before it), full-width and Arabic-Indic digits, space
ALPHABET = ["0", "1", "9", "O", "C", "P", "a", "b", "-", "\n", "\uff15", "\u0661", " ", "/", ":"]


def _values(pattern: str, rng: random.Random, n: int, width: int | None = None) -> list[str | None]:
    prefix = digit_pattern(pattern).prefix.decode()  # type: ignore[union-attr]
    out: list[str | None] = []
    for _ in range(n):
        k = width if width is not None else rng.randint(0, 22)
        text = "".join(rng.choice(ALPHABET) if rng.random() < 0.1 else rng.choice("0123456789") for _ in range(k))
        if width is None and rng.random() < 0.7:
            text = prefix + text
        out.append(None if width is None and rng.random() < 0.02 else text)
    return out


@pytest.mark.parametrize("pattern", PATTERNS)
def test_byte_test_answers_as_re2(pattern: str) -> None:
    # GIVEN mixed values (most near the pattern) with nulls, and fixed-width arrays (the reshaped fast path)
    rng = random.Random(pattern)
    digits = digit_pattern(pattern)
    assert digits is not None
    arrays = [pa.array(_values(pattern, rng, 5_000))]
    arrays += [pa.array(_values(pattern, rng, 800, width=w)) for w in range(1, 16)]
    arrays += [a.slice(37, 600) for a in arrays[:3]]
    for values in arrays:
        expected = pc.fill_null(pc.match_substring_regex(values, pattern), False).to_numpy(zero_copy_only=False)
        # WHEN the byte test runs, THEN it agrees with RE2 on every value (nulls: no match)
        assert digits.matches(values).tolist() == expected.tolist()
    # and at least some of each kind were seen
    assert 0 < int(digits.matches(arrays[0]).sum()) < len(arrays[0])


def test_regex_rule_uses_the_byte_test_with_the_same_failures() -> None:
    rule = RowRule(name="order_id.regex", column="order_id", kind="regex", value="^O[0-9]{6,12}$")
    column = Column(name="order_id", type="string")
    values = pa.array(["O123456", "O12345", None, "O1234567890123", "o123456", "O123456\n", "O\uff1123456"])
    mask = failure_mask(rule, column, values, values, pa.array([False] * len(values)))
    assert mask.to_pylist() == [False, True, False, True, True, True, True]


@pytest.mark.parametrize("pattern", ["^O[0-9]{6,12}$", "^[0-9]{0,3}$", "^ab-[0-9]{1,18}$"])
def test_keys_are_exact_and_ordered_by_length_then_number(pattern: str) -> None:
    digits = digit_pattern(pattern)
    assert digits is not None
    rng = random.Random(7)
    p = digits.prefix.decode()
    texts = {
        p + "".join(rng.choice("0123456789") for _ in range(rng.randint(digits.min_digits, digits.max_digits)))
        for _ in range(20_000)
    }
    texts |= {p + "9" * digits.max_digits, p + "0" * digits.min_digits}
    ordered = sorted(texts, key=lambda t: (len(t), t))
    keys = digits.keys(pa.array(ordered))
    assert len(set(keys.tolist())) == len(ordered)  # distinct values, distinct keys
    assert bool((np.diff(keys) > 0).all())  # and in (length, number) order
    assert int(keys.min()) >= 0


def test_formula_rule_flags_text_starting_like_a_formula() -> None:
    rule = RowRule(name="t.formula", column="t", kind="formula", value=FORMULA_PREFIXES, blocking=False)
    column = Column(name="t", type="string")
    values = pa.array(["=SUM(A1)", "+1 for it", None, "", "a=b", "@x", "-", "\u00e9=", " =1", "\n="])
    for array in (values, values.slice(2)):
        mask = failure_mask(rule, column, array, array, pa.array([False] * len(array)))
        assert mask.to_pylist() == [v is not None and v[:1] in ("=", "+", "-", "@") for v in array.to_pylist()]
    assert failure_mask(rule, column, values, values, values.is_null()).to_pylist()[:4] == [True, True, False, False]


def test_other_shapes_are_not_taken_as_id_patterns() -> None:
    for pattern in ["^O[0-9]{6,}$", "O[0-9]{6}$", "^O[0-9]{6}", "^O.[0-9]{3}$", "^O[0-9]{19}$", "^(O)[0-9]{3}$"]:
        assert digit_pattern(pattern) is None, pattern
    assert digit_pattern(None) is None


@pytest.mark.parametrize(("order", "max_small_runs"), [("ascending", 64), ("ascending", 3), ("shuffled", 64)])
def test_exact_tracker_agrees_with_a_set(monkeypatch: pytest.MonkeyPatch, order: str, max_small_runs: int) -> None:
    # GIVEN ids (ascending or shuffled) with repeats, nulls and values that do not fit the pattern, in batches
    from dropzone.validation import uniqueness

    monkeypatch.setattr(uniqueness, "MAX_RUN", 3_000)
    monkeypatch.setattr(uniqueness, "MAX_SMALL_RUNS", max_small_runs)
    rng = np.random.default_rng(3)
    numbers = np.arange(60_000)
    if order == "shuffled":
        rng.shuffle(numbers)
    values: list[str | None] = [f"O{n:08d}" for n in numbers]
    for i in rng.choice(len(values), 400, replace=False):
        values[i] = values[int(rng.integers(0, len(values)))]  # a repeat (earlier or later)
    for i in range(0, len(values), 301):
        values[i] = None
    for i in range(5, len(values), 997):
        values[i] = f"bad-{i % 3}"  # fails the regex; repeats too
    values[50_000] = "O0000000000001"  # fits, other length
    values[50_001] = "O000000000001"
    tracker = UniqueTracker(pattern="^O[0-9]{6,12}$")
    got: list[bool] = []
    for start in range(0, len(values), 700):
        got.extend(tracker.add(pa.array(values[start : start + 700])).tolist())
    # THEN exactly the repeats after the first occurrence are flagged
    expected, _ = repeats_after_first(values)
    assert got == expected
    assert sum(expected) > 300
    assert tracker.exact


@pytest.mark.parametrize(
    "pattern", ["^O[0-9]{6,12}$", "^C[0-9]{6}$", "^[0-9]{0,3}$", "^[0-9]{1,18}$", "^ab-[0-9]{1,18}$"]
)
def test_keys_equal_the_number_plus_the_shorter_lengths_by_either_parser(pattern: str) -> None:
    # GIVEN matching ids, fixed and mixed widths, leading zeros, whole and sliced arrays
    digits = digit_pattern(pattern)
    assert digits is not None
    rng = random.Random(pattern)
    p = digits.prefix.decode()
    low, high = digits.min_digits, digits.max_digits
    mixed = [p + "".join(rng.choice("0123456789") for _ in range(rng.randint(low, high))) for _ in range(3_000)]
    mixed += [p + "0" * high, p + "9" * high, p + "0" * low]
    fixed = [p + "".join(rng.choice("0123456789") for _ in range(high)) for _ in range(2_000)]
    for texts, values in (
        (mixed, pa.array(mixed)),
        (fixed, pa.array(fixed)),
        (mixed[11:1_500], pa.array(mixed)[11:1_500]),
    ):
        # THEN each key is the number plus how many shorter digit strings the pattern allows (a Python oracle)
        expected = [int(t[len(p) :] or "0") + sum(10**k for k in range(low, len(t) - len(p))) for t in texts]
        assert digits.keys(values).tolist() == expected
        # and Arrow's parse (when it applies) and the per-digit numpy pass give the same numbers
        data, starts, lengths = digits._layout(values)
        parsed = digits._parsed(values, data, starts, lengths)
        assert parsed is not None or (low == 0 and not p)
        if parsed is not None:
            assert parsed.tolist() == digits._by_digit(data, starts, lengths - len(p)).tolist()


@pytest.mark.parametrize("n", [0, 1, 7, 8, 9, 63, 1_000, 20_001])
def test_bool_array_packs_the_mask_bit_for_bit(n: int) -> None:
    mask = np.random.default_rng(n).random(n) < 0.3
    packed = bool_array(mask)
    packed.validate(full=True)
    assert packed.null_count == 0
    assert packed.to_pylist() == mask.tolist()
    assert bool_array(mask[1:]).to_pylist() == mask[1:].tolist()  # a numpy view that starts mid-byte


def test_bools_and_valid_read_the_bitmaps_of_slices() -> None:
    from dropzone.validation.digits import bools, valid

    rng = random.Random(5)
    flags = [None if rng.random() < 0.2 else rng.random() < 0.5 for _ in range(1_000)]
    whole = pa.array(flags, type=pa.bool_())
    for start, stop in ((0, 1_000), (3, 997), (8, 16), (13, 14), (500, 500)):
        part = whole[start:stop]
        assert bools(part).tolist() == [bool(f) for f in flags[start:stop]]  # nulls read as False
        assert valid(part).tolist() == [f is not None for f in flags[start:stop]]
    no_nulls = pa.array([True, False, True])
    assert bools(no_nulls).tolist() == [True, False, True]
    assert valid(pa.array(["a", None, "b"])[1:]).tolist() == [False, True]


@pytest.mark.parametrize(
    "pattern", ["^O[0-9]{6,12}$", "^C[0-9]{6}$", "^X1[0-9]{3}$", "^[0-9]{0,3}$", "^ab-[0-9]{1,18}$"]
)
def test_byte_test_of_fixed_width_ids_with_one_odd_byte(pattern: str) -> None:
    # GIVEN fixed-width arrays where every value matches but one, whose one byte is changed anywhere
    digits = digit_pattern(pattern)
    assert digits is not None
    rng = random.Random(pattern + "odd")
    prefix = digits.prefix.decode()
    width = max(digits.max_digits, 1)
    good = [prefix + "".join(rng.choice("0123456789") for _ in range(width)) for _ in range(300)]
    arrays = [pa.array(good), pa.array(["x" * len(good[0]), *good])[1:]]
    for odd in ["/", ":", "a", "O", "\n", " ", "1"]:
        for position in range(len(good[0])):
            values = list(good)
            row = rng.randrange(len(values))
            values[row] = values[row][:position] + odd + values[row][position + 1 :]
            arrays.append(pa.array(values))
    for values in arrays:
        expected = pc.fill_null(pc.match_substring_regex(values, pattern), False).to_numpy(zero_copy_only=False)
        # THEN the byte test agrees with RE2 on every value
        assert digits.matches(values).tolist() == expected.tolist()
    assert digits.matches(arrays[0]).all()
