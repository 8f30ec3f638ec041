"""The fast typing path (one cast when every value has the common spelling) must answer as the full path does."""

from __future__ import annotations

import random

import pyarrow as pa
import pytest

from dropzone.validation import compiler

GOOD_TS = "2025-06-06T18:27:59Z"
TS_EDGES = [
    "2025-06-06 18:27:59Z",  # a space for the T: allowed
    "2025-06-06T18:27:59z",  # lower-case zone letter
    "2025-02-29T00:00:00Z",  # not a calendar date
    "2025-06-06T24:00:00Z",
    "2025-06-06T18:27:5éZ",  # 20 bytes, 19 characters
    "2025-06-06T18:27:59+",
    "2025-06-06",
    "2025-06-06T18Z",  # Arrow accepts these two; the rules want seconds
    "2025-06-06T18:27Z",
    "2025-06-06T18:27:591",
    "2025-06-06T18:27:59.1Z",
    "+025-06-06T18:27:59Z",
    " 2025-06-06T18:27:59",
    "2025-06-0\uff16T18:27:59Z",  # a full-width digit
    "\uff12025-06-06T18:27:59",
]
DATE_EDGES = [
    "2024-02-29",
    "2023-02-29",
    "2024-13-01",
    "2024-1-01",
    "2024-01-1é",
    "2024/01/01",
    "+024-01-01",
    "\uff12024-01-01",
]
INT_EDGES = [
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775808",
    "+12",
    "0012",
    "1234567890123456789",
    "12345678901234567890",
    "\uff11\uff12",
    "1é",
    " 1",
    "1.0",
    "",
    "-0",
]


def _full_path(text: pa.Array, ctype: str, monkeypatch: pytest.MonkeyPatch) -> tuple[list[object], list[bool]]:
    with monkeypatch.context() as m:
        m.setattr(compiler, "_fast_parse", lambda text, ctype: None)
        typed, failed = compiler.parse_text(text, ctype)
    return typed.to_pylist(), failed.to_pylist()


@pytest.mark.parametrize(
    ("ctype", "good", "edges"),
    [("timestamp", GOOD_TS, TS_EDGES), ("date", "2024-06-30", DATE_EDGES), ("int", "42", INT_EDGES)],
)
def test_fast_path_answers_as_the_full_path(
    ctype: str, good: str, edges: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = random.Random(ctype)
    batches: list[pa.Array] = []
    for edge in edges:
        # GIVEN one odd value among common ones (alone, with a null, and in a slice of a larger array)
        values: list[str | None] = [good] * 50
        values[rng.randrange(50)] = edge
        batches.append(pa.array(values))
        batches.append(pa.array([*values, None]))
        batches.append(pa.array(["x" * 7, *values, good])[1:51])
    batches.append(pa.array([good] * 40))
    batches.append(pa.array([good] * 40 + [None]))
    batches.append(pa.array(["x", *[good] * 40])[1:])
    taken = 0
    for text in batches:
        # WHEN typed by the shipped path, THEN values and failures are those of the full (regex) path
        typed, failed = compiler.parse_text(text, ctype)
        assert (typed.to_pylist(), failed.to_pylist()) == _full_path(text, ctype, monkeypatch)
        taken += compiler._fast_parse(text, ctype) is not None
    assert taken >= 3  # the fast path was really taken on the plain batches


def test_max_length_counts_characters_in_slices_and_around_null_slots() -> None:
    from dropzone.contract import Column
    from dropzone.rules import RowRule

    rule = RowRule(name="x.max_length", column="x", kind="max_length", value=4)
    column = Column(name="x", type="string")
    rng = random.Random(4)
    alphabet = ["a", "é", "\u20ac", "\U0001f600"]
    texts = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 6))) for _ in range(400)]
    whole = pa.array(texts)
    # a null slot that still spans bytes (Arrow allows it): hides a long value behind a null
    validity = pa.array([i % 7 != 3 for i in range(len(texts))]).buffers()[1]
    masked = pa.Array.from_buffers(pa.string(), len(texts), [validity, *whole.buffers()[1:]])
    short = pa.array([t[:4] for t in texts])
    for values in (whole, whole[13:250], masked, masked[5:300], short, short[1:]):
        mask = compiler.failure_mask(rule, column, values, values, pa.array([False] * len(values)))
        expected = [v is not None and len(v) > 4 for v in values.to_pylist()]
        assert mask.to_pylist() == expected
