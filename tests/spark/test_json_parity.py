"""JSON Lines: the validator and the Spark job drop the same rows for the same rules (docs/validation.md, "JSON Lines").

One file holds, for every column type, one line per kind of JSON value in that column (the rest of the line good),
plus lines that are not one JSON object. The expected rules of each line are written here by hand from the table
in the docs, not computed by either implementation; both must match them row for row.
"""

from __future__ import annotations

import gzip
import json
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pyspark.sql import SparkSession

from dropzone.contract import MAX_NESTING_DEPTH, Contract, parse_contract
from dropzone.validation import validate_stream
from spark_app.io import Batch, BatchFile, read_batch
from spark_app.rules import BAD, compile_rules, failure_count_columns, failure_counts
from tests.spark.conftest import plan_nodes

pytestmark = pytest.mark.spark

UPLOADED = datetime(2026, 3, 1, tzinfo=UTC)
GOOD: dict[str, Any] = {"s": "text", "i": 5, "d": 1.5, "b": True, "dt": "2024-01-02", "ts": "2024-01-02T03:04:05Z"}
MISSING = object()  # the key is left out


def contract() -> Contract:
    columns: dict[str, Any] = {"id": {"type": "string", "required": True}}
    for name, ctype in (("s", "string"), ("i", "int"), ("d", "double"), ("b", "bool"), ("dt", "date")):
        columns[name] = {"type": ctype, "required": True}
    columns["d"]["min"] = 0
    columns["ts"] = {"type": "timestamp", "required": True}
    document = {"dataset": "t", "entity": "id", "formats": ["jsonl", "jsonl.gz"], "columns": columns}
    return parse_contract(document, "t.yaml")


# (column, JSON value, rules failing) by the table in docs/validation.md; [] = a good row.
CELLS: list[tuple[str, Any, list[str]]] = [
    # a JSON string: text, parsed per the column type
    ("s", "any text", []),
    ("i", "7", []),
    ("i", "7.0", ["i.parse"]),  # text follows the CSV forms: no fraction in an int
    ("i", "x", ["i.parse"]),
    ("d", "2.5", []),
    ("d", "1e3", []),
    ("d", "x", ["d.parse"]),
    ("d", "NaN", ["d.finite"]),  # the text NaN parses, then is not finite
    ("b", "true", []),
    ("b", "0", []),
    ("b", "yes", ["b.parse"]),
    ("dt", "2024-02-30", ["dt.parse"]),
    ("ts", "2024-01-02 03:04:05+0100", []),
    ("ts", "2024-01-02", ["ts.parse"]),
    # a JSON integer
    ("s", 17, ["s.parse"]),
    ("i", 7, []),
    ("i", -0, []),
    ("i", 9223372036854775807, []),
    ("i", 9223372036854775808, ["i.parse"]),  # beyond 64 bits
    ("i", 10**20, ["i.parse"]),
    ("d", 7, []),
    ("d", 10**20, []),
    ("b", 1, ["b.parse"]),
    ("b", 0, ["b.parse"]),
    ("dt", 20240102, ["dt.parse"]),
    ("ts", 1704164645, ["ts.parse"]),
    # a JSON number with a fraction or an exponent whose value is whole
    ("s", 3.0, ["s.parse"]),
    ("i", 3.0, []),
    ("i", "RAW:-0.0", []),
    ("i", "RAW:1e2", []),
    ("i", "RAW:1000000000000000000.0", []),  # exact: 10**18 fits 64 bits
    ("i", "RAW:9223372036854775808.0", ["i.parse"]),  # exact: 2**63 does not
    ("i", "RAW:1E19", ["i.parse"]),
    # numbers of up to 1000 digits are JSON to both (docs/validation.md: Spark's parser refuses longer ones)
    ("i", "RAW:-" + "1" * 1000, ["i.parse"]),  # 1000 digits, the sign not counted
    ("d", "RAW:" + "1" * 999 + ".5", ["d.finite"]),  # 1000 digits, beyond a double: infinite
    ("d", "RAW:0." + "0" * 1000, []),  # 0 then 1000 digits: the 0 is not counted
    ("d", "RAW:0e" + "0" * 1000, []),
    ("d", "RAW:0.0e" + "0" * 998, []),  # with both a fraction and an exponent the 0 counts: 1000
    ("d", 3.0, []),
    ("b", 1.0, ["b.parse"]),
    ("dt", 3.0, ["dt.parse"]),
    ("ts", 3.0, ["ts.parse"]),
    # a JSON number that is not whole
    ("s", 2.5, ["s.parse"]),
    ("i", 2.5, ["i.parse"]),
    ("i", "RAW:1.5e0", ["i.parse"]),
    ("d", 2.5, []),
    ("d", -2.5, ["d.min"]),
    ("d", "RAW:1e400", ["d.finite"]),  # JSON, too large for a double: infinite
    ("b", 0.5, ["b.parse"]),
    ("dt", 2.5, ["dt.parse"]),
    ("ts", 2.5, ["ts.parse"]),
    # true / false
    ("s", True, ["s.parse"]),
    ("i", True, ["i.parse"]),
    ("d", False, ["d.parse"]),
    ("b", False, []),
    ("dt", True, ["dt.parse"]),
    ("ts", False, ["ts.parse"]),
    # null and a missing key: null, which only fails required
    *[(c, None, [f"{c}.required"]) for c in GOOD],
    *[(c, MISSING, [f"{c}.required"]) for c in GOOD],
    # arrays and objects fit no column
    *[(c, ["a", 1], [f"{c}.parse"]) for c in GOOD],
    *[(c, {"k": 1}, [f"{c}.parse"]) for c in GOOD],
    *[(c, [], [f"{c}.parse"]) for c in GOOD],
]

# Lines that are not one JSON object (each fails row.json only), and lines that are despite looks.
ODD_LINES: list[tuple[str, list[str]]] = [
    ('{"id": "x1", "s": "a",', ["row.json"]),  # broken
    ("42", ["row.json"]),
    ('"text"', ["row.json"]),
    ("null", ["row.json"]),
    ("[" + json.dumps({"id": "x2", **GOOD}) + "]", ["row.json"]),  # an array holding an object
    (json.dumps({"id": "x3", **GOOD}) + " x", ["row.json"]),  # something after the object
    (json.dumps({"id": "x4", **GOOD}) + json.dumps({"id": "x5", **GOOD}), ["row.json"]),  # two objects
    (json.dumps({"id": "x6", **GOOD}) + "]", ["row.json"]),
    (json.dumps({"id": "x7", **GOOD}) + ', {"id": "x8"}', ["row.json"]),
    (json.dumps({"id": "x9", **GOOD}).replace("1.5", "NaN"), ["row.json"]),  # NaN is not JSON
    (json.dumps({"id": "x10", **GOOD}).replace("1.5", "-Infinity"), ["row.json"]),
    (json.dumps({"id": "x11", **GOOD}).replace('"', "'"), ["row.json"]),  # single quotes
    (json.dumps({"id": "x12", **GOOD}).replace("5,", "05,", 1), ["row.json"]),  # a leading zero
    # a repeated key keeps its last value
    (json.dumps({"id": "x13", **GOOD})[:-1] + ', "i": "bad"}', ["i.parse"]),
    (json.dumps({"id": "x14", **GOOD}).replace('"i": 5', '"i": [1], "i": 5'), []),
    # a ] that would close a wrapping array early, with more after it
    (json.dumps({"id": "x16", **GOOD}) + " ] {}", ["row.json"]),
    (json.dumps({"id": "x17", **GOOD}) + ', 0] x {"id": "x18"}', ["row.json"]),
    # a ] inside a string is text
    (json.dumps({"id": "x19", **{**GOOD, "s": "a] {}"}}), []),
    # a number of more than 1000 digits is not JSON to Spark's parser: both refuse the line
    (json.dumps({"id": "x20", **GOOD}).replace('"i": 5', '"i": ' + "1" * 1001), ["row.json"]),
    (json.dumps({"id": "x21", **GOOD}).replace("1.5", "1" * 1000 + ".5"), ["row.json"]),
    (json.dumps({"id": "x22", **GOOD}).replace("1.5", "0." + "0" * 1001), ["row.json"]),
    (json.dumps({"id": "x23", **GOOD}).replace("1.5", "1e" + "0" * 1000), ["row.json"]),
    (json.dumps({"id": "x24", **GOOD}).replace("1.5", "0.0e" + "0" * 999), ["row.json"]),
    (json.dumps({"id": "x25", **GOOD}).replace('"s": "text"', '"s": 5' + "0" * 1000), ["row.json"]),
    # an escape of half a UTF-16 surrogate pair is no text (a key included); an escaped pair, or an escaped
    # backslash before "u", is
    (json.dumps({"id": "x26", **GOOD}).replace('"text"', '"cut \\ud83d"'), ["row.json"]),
    (json.dumps({"id": "x27", **GOOD}).replace('"text"', '"\\uDC00 low"'), ["row.json"]),
    (json.dumps({"id": "x28", **GOOD}).replace('"text"', '"\\ud83d\\ud83d\\ude00"'), ["row.json"]),
    (json.dumps({"id": "x29", **GOOD}).replace('"text"', '"\\\\\\ud800"'), ["row.json"]),  # \\ then \ud800
    (json.dumps({"id": "x30", **GOOD}).replace('"id"', '"\\ud800": 1, "id"'), ["row.json"]),
    (json.dumps({"id": "x31", **GOOD}).replace('"text"', '"\\ud83d\\ude00 \\u00e9"'), []),
    (json.dumps({"id": "x32", **GOOD}).replace('"text"', '"\\\\ud800 \\\\\\\\udc00"'), []),  # \\ then ud800: text
    # surrounding whitespace is fine
    ("  \t" + json.dumps({"id": "x15", **GOOD}) + " \r", []),
]


def line_of(column: str, value: Any, n: int) -> str:
    row = {"id": f"r{n}", **GOOD}
    if value is MISSING:
        del row[column]
        return json.dumps(row)
    if isinstance(value, str) and value.startswith("RAW:"):  # a number token written as is
        row[column] = "@@"
        return json.dumps(row).replace('"@@"', value[4:])
    row[column] = value
    return json.dumps(row)


def build(tmp_path: Path, gz: bool) -> tuple[Path, dict[int, tuple[str | None, list[str]]]]:
    """The file and, by line number, the id and expected rules of each row (blank lines are no rows)."""
    lines: list[str] = []
    expected: dict[int, tuple[str | None, list[str]]] = {}
    for column, value, rules in CELLS:
        lines.append(line_of(column, value, len(lines) + 1))
        expected[len(lines)] = (f"r{len(lines)}", rules)
        if len(lines) % 25 == 0:
            lines.append("   ")  # blank lines are skipped, still numbered
    for text, rules in ODD_LINES:
        lines.append(text)
        row_id = json.loads(text).get("id") if rules != ["row.json"] else None
        expected[len(lines)] = (row_id, rules)
    data = ("\n".join(lines) + "\n").encode()
    data += b'{"id": "bad-utf8", "s": "caf\xe9", "i": 1, "d": 1, "b": true, "dt": "2024-01-02", "ts": "2024-01-02"}\n'
    expected[len(lines) + 1] = (None, ["row.json"])
    data += b"\xef\xbb\xbf" + json.dumps({"id": "bom", **GOOD}).encode() + b"\n"  # json.loads drops a leading BOM
    expected[len(lines) + 2] = ("bom", [])
    path = tmp_path / ("t.jsonl.gz" if gz else "t.jsonl")
    path.write_bytes(gzip.compress(data) if gz else data)
    return path, expected


@pytest.mark.parametrize("gz", [False, True])
def test_validator_and_spark_drop_the_same_json_rows(spark: SparkSession, tmp_path: Path, gz: bool) -> None:
    # GIVEN a JSON Lines file with every kind of JSON value in every column type, and lines that are no object
    c = contract()
    path, expected = build(tmp_path, gz)
    bad_lines = {n: sorted(rules) for n, (_, rules) in expected.items() if rules}
    counts = dict(Counter(rule for _, rules in expected.values() for rule in rules))
    broken = sum(1 for rules in bad_lines.values() if rules == ["row.json"])
    bad_by_id = {row_id: sorted(rules) for row_id, rules in expected.values() if rules and row_id is not None}
    assert len(bad_by_id) + broken == len(bad_lines)

    # WHEN the validator checks it
    with path.open("rb") as f:
        report = validate_stream(f, name=path.name, contract=c, uploaded_at=UPLOADED, max_samples=1000)
    # THEN it finds the expected bad rows, line by line, and rule counts
    assert report.rows_read == len(expected)
    assert report.bad_rows == len(bad_lines)
    assert report.rule_counts == counts
    assert {s["row"]: sorted(s["rules"]) for s in report.samples} == bad_lines

    # WHEN the Spark job reads it and applies the rules
    batch = Batch("t", "b", 1, (BatchFile(str(path), "jsonl.gz" if gz else "jsonl"),))
    compiled = compile_rules(read_batch(spark, c, batch), c, uploaded_at=UPLOADED)
    counted = compiled.frame.agg(*failure_count_columns(compiled))
    rows, bad, failures = failure_counts(counted.collect()[0], compiled)
    # THEN the same rows, bad rows and rule counts
    assert (rows, bad) == (len(expected), len(bad_lines))
    assert failures == counts
    # row by row: the rules each bad row fails (a broken line has no id: those are counted)
    flags = compiled.flags
    bad_rows = compiled.frame.filter(BAD).select("id", *flags.values()).collect()
    failing = {r["id"]: sorted(name for name, col in flags.items() if r[col]) for r in bad_rows}
    assert {k: v for k, v in failing.items() if k is not None} == bad_by_id
    assert sum(1 for r in bad_rows if r["id"] is None) == broken
    assert all(r[flags["row.json"]] for r in bad_rows if r["id"] is None)
    # Spark expressions only: no Python UDF reads the rows
    assert [n.name for n in plan_nodes(counted) if "Python" in n.name or "Arrow" in n.name] == []


def test_good_json_values_arrive_typed(spark: SparkSession, tmp_path: Path) -> None:
    c = contract()
    lines = [
        json.dumps({"id": "a", **GOOD}),
        line_of("i", "RAW:3.0", 2).replace('"s": "text"', '"s": "x"'),
        line_of("i", "RAW:1e2", 3),
        json.dumps({"id": "d", **GOOD, "d": 7, "b": "FALSE"}),
    ]
    path = tmp_path / "t.jsonl"
    path.write_text("\n".join(lines) + "\n")
    compiled = compile_rules(read_batch(spark, c, Batch("t", "b", 1, (BatchFile(str(path), "jsonl"),))), c, UPLOADED)
    got = {r["id"]: r for r in compiled.frame.select("id", "i", "d", "b", BAD).collect()}
    assert [got[k][BAD] for k in ("a", "r2", "r3", "d")] == [False] * 4
    assert (got["a"]["i"], got["r2"]["i"], got["r3"]["i"]) == (5, 3, 100)
    assert (got["d"]["d"], got["d"]["b"]) == (7.0, False)


def test_the_deepest_json_a_contract_allows_is_read_by_both(spark: SparkSession, tmp_path: Path) -> None:
    # GIVEN a contract at the deepest nesting it may allow, and a line exactly that deep (an array in a string column)
    document = {"dataset": "t", "entity": "id", "formats": ["jsonl"], "columns": {"id": {"type": "string"}}}
    document["columns"]["s"] = {"type": "string"}
    document["limits"] = {"max_nesting_depth": MAX_NESTING_DEPTH}
    c = parse_contract(document, "t.yaml")
    deep = "[" * (MAX_NESTING_DEPTH - 1) + "]" * (MAX_NESTING_DEPTH - 1)  # the object is one level
    path = tmp_path / "t.jsonl"
    path.write_text(f'{{"id": "deep", "s": {deep}}}\n{{"id": "flat", "s": "x"}}\n')
    # WHEN the validator and the Spark job read it
    with path.open("rb") as f:
        report = validate_stream(f, name=path.name, contract=c, uploaded_at=UPLOADED, max_samples=10)
    compiled = compile_rules(read_batch(spark, c, Batch("t", "b", 1, (BatchFile(str(path), "jsonl"),))), c, UPLOADED)
    flags = compiled.flags
    got = {
        r["id"]: sorted(n for n, col in flags.items() if r[col])
        for r in compiled.frame.select("id", *flags.values()).collect()
    }
    # THEN both parse the line: the value is of the wrong JSON type, not a broken line
    assert report.rule_counts == {"s.parse": 1}
    assert got == {"deep": ["s.parse"], "flat": []}
