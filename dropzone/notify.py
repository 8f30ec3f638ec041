"""Notifications to people: one SNS topic (NOTIFY_TOPIC_ARN) for files not accepted (for their producers), failed
batches and training jobs, and registered models.

The message is JSON (machine-readable for subscribers such as chat webhooks) with a one-line ``summary`` first;
the subject is the summary cut to SNS's 100 characters. The message attributes ``kind`` and ``dataset`` let a
subscription take only what it wants with a filter policy, e.g. a producer team's
``{"kind": ["file_quarantined", "file_skipped"], "dataset": ["orders"]}``. Without a topic (a local run that has
none) messages are only logged, never lost silently.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from dropzone.observability import logger

MAX_SUBJECT = 99  # SNS: ASCII, fewer than 100 characters


class Notifier:
    """Publishes pipeline notifications to an SNS topic."""

    def __init__(self, sns: Any, topic_arn: str | None) -> None:
        self.sns = sns
        self.topic_arn = topic_arn

    def publish(self, kind: str, summary: str, details: Mapping[str, Any]) -> str | None:
        """Send one notification; returns the SNS MessageId (None when no topic is configured)."""
        body = json.dumps({"kind": kind, "summary": summary, **details}, indent=2, default=str, sort_keys=False)
        logger.info("notification", extra={"kind": kind, "summary": summary})
        if not self.topic_arn:
            return None
        subject = " ".join(f"dropzone: {summary}".split()).encode("ascii", "replace").decode()
        if len(subject) > MAX_SUBJECT:
            subject = subject[: MAX_SUBJECT - 3] + "..."
        attributes = {"kind": {"DataType": "String", "StringValue": kind}}
        if details.get("dataset"):
            attributes["dataset"] = {"DataType": "String", "StringValue": str(details["dataset"])}
        answer = self.sns.publish(
            TopicArn=self.topic_arn,
            Subject=subject,
            Message=body,
            MessageAttributes=attributes,
        )
        return str(answer["MessageId"])
