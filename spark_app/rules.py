"""Row rules as Spark column expressions: a row is bad when any rule fails; ``_reason`` names the first one.

The rules are the contract's (types, required, range, allowed values, regex, max length, timestamp bounds), the
same the validator applies to each file when it lands.
"""

from __future__ import annotations

from datetime import UTC, datetime

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from dropzone.contract import Contract

REASON = "_reason"
UNPARSED = "_unparsed"


def row_rule_failures(contract: Contract, now: datetime | None = None) -> list[tuple[str, Column]]:
    """(reason, condition that is true when the row breaks the rule) for every row rule of the contract."""
    now = now or datetime.now(UTC)
    rules: list[tuple[str, Column]] = [("a value does not parse as its column type", F.col(UNPARSED))]
    for c in contract.columns:
        col = F.col(c.name)
        if c.required:
            rules.append((f"{c.name}: required value is missing", col.isNull()))
        if c.min is not None:
            rules.append((f"{c.name}: below the minimum {c.min:g}", col < F.lit(c.min)))
        if c.max is not None:
            rules.append((f"{c.name}: above the maximum {c.max:g}", col > F.lit(c.max)))
        if c.allowed is not None:
            rules.append((f"{c.name}: not one of the allowed values", ~col.isin(list(c.allowed))))
        if c.regex is not None:
            rules.append((f"{c.name}: does not match {c.regex}", ~col.rlike(c.regex)))
        if c.max_length is not None:
            rules.append((f"{c.name}: longer than {c.max_length} characters", F.length(col) > F.lit(c.max_length)))
    if contract.timestamp is not None:
        ts = F.col(contract.timestamp).cast("timestamp")
        # Aware datetimes: PySpark converts them by their own offset, not the machine's local time zone.
        earliest = contract.limits.earliest_timestamp
        latest = now + contract.limits.future_tolerance
        rules.append((f"{contract.timestamp}: before {earliest.isoformat()}", ts < F.lit(earliest)))
        rules.append((f"{contract.timestamp}: in the future", ts > F.lit(latest)))
    return rules


def apply_row_rules(df: DataFrame, contract: Contract, now: datetime | None = None) -> DataFrame:
    """Adds ``_reason``: null for a good row, else the first failing rule (a null comparison is not a failure)."""
    reason = F.lit(None).cast("string")
    for name, failed in reversed(row_rule_failures(contract, now)):
        reason = F.when(F.coalesce(failed, F.lit(False)), F.lit(name)).otherwise(reason)
    return df.withColumn(REASON, reason)
