"""The validation report: what was checked, what failed, and the decision."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

ACCEPTED = "ACCEPTED"
QUARANTINED = "QUARANTINED"


class Rejected(Exception):
    """The file cannot be accepted, whatever else it holds: the message is the reason shown to the producer."""


@dataclass
class SchemaDiff:
    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    wrong_type: list[dict[str, str]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.missing or self.extra or self.wrong_type)

    def reasons(self) -> list[str]:
        out = [f"missing column {name!r}" for name in self.missing]
        out += [f"unexpected column {name!r}" for name in self.extra]
        out += [f"column {w['column']!r} has type {w['found']}, expected {w['expected']}" for w in self.wrong_type]
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"missing": list(self.missing), "extra": list(self.extra), "wrong_type": list(self.wrong_type)}


@dataclass
class ValidationReport:
    """Outcome of validating one file. ``rule_counts`` holds failures per rule name (flagged rules included)."""

    name: str
    dataset: str
    format: str
    decision: str = ACCEPTED
    reasons: list[str] = field(default_factory=list)
    rows_read: int = 0
    bad_rows: int = 0
    rule_counts: dict[str, int] = field(default_factory=dict)
    flagged: dict[str, int] = field(default_factory=dict)
    samples: list[dict[str, Any]] = field(default_factory=list)
    schema: SchemaDiff = field(default_factory=SchemaDiff)
    bytes_read: int = 0
    size: int | None = None
    duration_s: float = 0.0
    uploaded_at: str | None = None

    @property
    def accepted(self) -> bool:
        return self.decision == ACCEPTED

    @property
    def bad_fraction(self) -> float:
        return self.bad_rows / self.rows_read if self.rows_read else 0.0

    def quarantine(self, reason: str) -> None:
        self.decision = QUARANTINED
        if reason not in self.reasons:
            self.reasons.append(reason)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form, as written to ``reports/`` and printed by ``dropzone validate --json``."""
        return {
            "name": self.name,
            "dataset": self.dataset,
            "format": self.format,
            "decision": self.decision,
            "reasons": list(self.reasons),
            "rows_read": self.rows_read,
            "bad_rows": self.bad_rows,
            "bad_fraction": round(self.bad_fraction, 6),
            "rule_counts": dict(sorted(self.rule_counts.items())),
            "flagged": dict(sorted(self.flagged.items())),
            "samples": list(self.samples),
            "schema": self.schema.to_dict(),
            "bytes_read": self.bytes_read,
            "size": self.size,
            "duration_s": round(self.duration_s, 6),
            "uploaded_at": self.uploaded_at,
        }
