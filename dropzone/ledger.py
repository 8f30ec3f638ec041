"""The ledger: one DynamoDB table where every step records what it did, with conditional writes (docs/ledger.md).

:class:`Ledger` wraps a low-level DynamoDB client. Items are plain dicts of Python values (str, int, float,
bool, list, dict, None); numbers come back as int or float, never Decimal. General methods
(:meth:`Ledger.put_item_if_absent`, :meth:`Ledger.update_with_condition`, :meth:`Ledger.query_dataset`) serve every
part of the pipeline; the file, batch and lease methods implement the ingest and batching side.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

# File statuses (docs/ledger.md). WAITING_STATUS is what the batching policy picks up.
ACCEPTED = "ACCEPTED"
QUARANTINED = "QUARANTINED"
BATCHED = "BATCHED"
DONE = "DONE"
FAILED = "FAILED"
SKIPPED = "SKIPPED"
VALIDATING = "VALIDATING"  # claimed by one ingest worker (claim_owner, claim_expires_at) until its decision
WAITING_STATUS = ACCEPTED

# Batch statuses.
BATCH_STARTING = "STARTING"  # created, manifest maybe written, StartJobRun not yet answered
BATCH_RUNNING = "RUNNING"  # StartJobRun answered with a jobRunId
BATCH_SUCCEEDED = "SUCCEEDED"
BATCH_FAILED = "FAILED"
BATCH_RETRYING = "RETRYING"

LEASE_SK = "LEASE"

# The sparse "waiting" index (docs/ledger.md): a file carries WAITING_ATTR only while it waits, so the index holds
# only waiting files and finding them costs what they are, not the dataset's whole history. The value says what
# the file waits for: ``BATCH#<dataset>`` (ACCEPTED, not yet in a batch) or ``CONTRACT#<dataset>`` (SKIPPED: no
# contract when it arrived; re-validated once one is published). Sort key: ``seen_at``.
WAITING_ATTR = "waiting"
WAITING_INDEX = "waiting"
# Per dataset: the ACCEPTED/SKIPPED rows written before the index existed were given WAITING_ATTR (an upgrade).
WAITING_INDEXED_SK = "INDEX#waiting"

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


class LedgerError(RuntimeError):
    """The ledger holds something this step cannot reconcile (e.g. a file batched twice)."""


def dataset_pk(dataset: str) -> str:
    return f"DATASET#{dataset}"


def file_sk(bucket: str, key: str, version: str) -> str:
    """Sort key of a file: bucket + decoded key + versionId (or ETag when the bucket is unversioned)."""
    return f"FILE#{bucket}/{key}#{version}"


def waiting_for_batch(dataset: str) -> str:
    """WAITING_ATTR of an ACCEPTED file not yet in a batch."""
    return f"BATCH#{dataset}"


def waiting_for_contract(dataset: str) -> str:
    """WAITING_ATTR of a file SKIPPED because its dataset had no contract."""
    return f"CONTRACT#{dataset}"


def table_definition() -> dict[str, Any]:
    """The ledger table's keys and index as template.yaml declares them (create_table arguments, no name)."""
    return {
        "BillingMode": "PAY_PER_REQUEST",
        "AttributeDefinitions": [
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
            {"AttributeName": WAITING_ATTR, "AttributeType": "S"},
            {"AttributeName": "seen_at", "AttributeType": "S"},
        ],
        "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        "GlobalSecondaryIndexes": [
            {
                "IndexName": WAITING_INDEX,
                "KeySchema": [
                    {"AttributeName": WAITING_ATTR, "KeyType": "HASH"},
                    {"AttributeName": "seen_at", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
    }


def batch_sk(batch_id: str) -> str:
    return f"BATCH#{batch_id}"


def iso(moment: datetime) -> str:
    """ISO 8601 in UTC with seconds precision, sortable as text."""
    return moment.isoformat(timespec="seconds")


def _to_dynamo(value: Any) -> Any:
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"cannot store the number {value} in the ledger")
        return Decimal(repr(value))
    if isinstance(value, Mapping):
        return {str(k): _to_dynamo(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_to_dynamo(v) for v in value]
    return value


def _from_dynamo(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, Mapping):
        return {k: _from_dynamo(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_dynamo(v) for v in value]
    if isinstance(value, set):
        return {_from_dynamo(v) for v in value}
    return value


def serialize(item: Mapping[str, Any]) -> dict[str, Any]:
    """Python values → DynamoDB attribute values (None values are dropped: absent, not NULL)."""
    return {k: _serializer.serialize(_to_dynamo(v)) for k, v in item.items() if v is not None}


def deserialize(item: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _from_dynamo(_deserializer.deserialize(v)) for k, v in item.items()}


def _is_condition_failure(error: ClientError) -> bool:
    return error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"


class Ledger:
    """The pipeline's ledger table (``pk``/``sk`` strings, one partition per dataset)."""

    def __init__(self, table_name: str, client: Any) -> None:
        self.table_name = table_name
        self.client = client
        self._indexed: set[str] = (
            set()
        )  # datasets whose rows from before the waiting index were seen to (per container)

    # ---- general ------------------------------------------------------------------------------------------

    def get_item(self, pk: str, sk: str) -> dict[str, Any] | None:
        """One item by key (strongly consistent read), or None."""
        answer = self.client.get_item(
            TableName=self.table_name, Key=serialize({"pk": pk, "sk": sk}), ConsistentRead=True
        )
        item = answer.get("Item")
        return deserialize(item) if item else None

    def put_item_if_absent(self, item: Mapping[str, Any]) -> bool:
        """Create ``item`` (must hold pk and sk) unless an item with its key exists; True when this call created it."""
        try:
            self.client.put_item(
                TableName=self.table_name,
                Item=serialize(item),
                ConditionExpression="attribute_not_exists(pk)",
            )
        except ClientError as e:
            if _is_condition_failure(e):
                return False
            raise
        return True

    def update_with_condition(
        self,
        pk: str,
        sk: str,
        *,
        set_values: Mapping[str, Any] | None = None,
        remove: Sequence[str] = (),
        condition: str | None = None,
        condition_values: Mapping[str, Any] | None = None,
        condition_names: Mapping[str, str] | None = None,
    ) -> dict[str, Any] | None:
        """SET/REMOVE attributes when ``condition`` holds; returns the new item, or None when the condition failed.

        ``condition`` is a DynamoDB condition expression over placeholders: write attribute names as ``#name``
        (resolved by ``condition_names``, plus ``#a0``.. made here for the set/remove attributes) and values as
        ``:name`` from ``condition_values``. Without a condition the item must already exist.
        """
        names: dict[str, str] = dict(condition_names or {})
        values: dict[str, Any] = {f":{k}": v for k, v in (condition_values or {}).items()}
        clauses: list[str] = []
        for i, (attribute, value) in enumerate((set_values or {}).items()):
            names[f"#s{i}"] = attribute
            values[f":s{i}"] = value
            clauses.append(f"#s{i} = :s{i}")
        removals: list[str] = []
        for i, attribute in enumerate(remove):
            names[f"#r{i}"] = attribute
            removals.append(f"#r{i}")
        expression = ""
        if clauses:
            expression += "SET " + ", ".join(clauses)
        if removals:
            expression += " REMOVE " + ", ".join(removals)
        if not expression:
            raise ValueError("update_with_condition needs set_values or remove")
        full_condition = "attribute_exists(pk)" + (f" AND ({condition})" if condition else "")
        kwargs: dict[str, Any] = {
            "TableName": self.table_name,
            "Key": serialize({"pk": pk, "sk": sk}),
            "UpdateExpression": expression.strip(),
            "ConditionExpression": full_condition,
            "ExpressionAttributeNames": names,
            "ReturnValues": "ALL_NEW",
        }
        if values:
            kwargs["ExpressionAttributeValues"] = serialize(values)
        try:
            answer = self.client.update_item(**kwargs)
        except ClientError as e:
            if _is_condition_failure(e):
                return None
            raise
        return deserialize(answer["Attributes"])

    def delete_with_condition(
        self,
        pk: str,
        sk: str,
        *,
        condition: str,
        condition_values: Mapping[str, Any] | None = None,
        condition_names: Mapping[str, str] | None = None,
    ) -> bool:
        """Delete an item when ``condition`` holds (same placeholder rules as update_with_condition)."""
        kwargs: dict[str, Any] = {
            "TableName": self.table_name,
            "Key": serialize({"pk": pk, "sk": sk}),
            "ConditionExpression": condition,
        }
        if condition_names:
            kwargs["ExpressionAttributeNames"] = dict(condition_names)
        if condition_values:
            kwargs["ExpressionAttributeValues"] = serialize({f":{k}": v for k, v in condition_values.items()})
        try:
            self.client.delete_item(**kwargs)
        except ClientError as e:
            if _is_condition_failure(e):
                return False
            raise
        return True

    def query_dataset(
        self,
        dataset: str,
        sk_prefix: str = "",
        *,
        filter_status: str | None = None,
        newest_first: bool = False,
        page_size: int | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Every item of ``dataset`` whose sk starts with ``sk_prefix`` (all pages, consistent reads), in sk order.

        ``filter_status`` keeps only items whose ``status`` equals it (filtered server-side).
        """
        kwargs: dict[str, Any] = {
            "TableName": self.table_name,
            "ConsistentRead": True,
            "ScanIndexForward": not newest_first,
        }
        if page_size is not None:
            kwargs["Limit"] = page_size
        values: dict[str, Any] = {":pk": dataset_pk(dataset)}
        if sk_prefix:
            kwargs["KeyConditionExpression"] = "pk = :pk AND begins_with(sk, :prefix)"
            values[":prefix"] = sk_prefix
        else:
            kwargs["KeyConditionExpression"] = "pk = :pk"
        if filter_status is not None:
            kwargs["FilterExpression"] = "#status = :status"
            kwargs["ExpressionAttributeNames"] = {"#status": "status"}
            values[":status"] = filter_status
        kwargs["ExpressionAttributeValues"] = serialize(values)
        yield from self._query_pages(kwargs)

    def _query_pages(self, kwargs: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """Every item of a Query, page after page (``kwargs`` gains each page's ExclusiveStartKey)."""
        while True:
            page = self.client.query(**kwargs)
            for item in page.get("Items", []):
                yield deserialize(item)
            if "LastEvaluatedKey" not in page:
                return
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def query_waiting(self, value: str) -> Iterator[dict[str, Any]]:
        """Items of the sparse waiting index whose WAITING_ATTR equals ``value``, oldest ``seen_at`` first.

        An index read is eventually consistent: an item may show a moment after it started waiting, or a moment
        after it stopped; callers re-read what they act on (batching) or rely on a conditional write (ingest).
        """
        kwargs: dict[str, Any] = {
            "TableName": self.table_name,
            "IndexName": WAITING_INDEX,
            "KeyConditionExpression": "#w = :w",
            "ExpressionAttributeNames": {"#w": WAITING_ATTR},
            "ExpressionAttributeValues": serialize({":w": value}),
        }
        yield from self._query_pages(kwargs)

    def index_waiting_rows(self, dataset: str, *, now: datetime) -> int:
        """Upgrade: give WAITING_ATTR to the dataset's ACCEPTED and SKIPPED files written before the index existed.

        Reads the dataset's partition once (the cost the index saves from then on), then marks the dataset done
        with an ``INDEX#waiting`` item, so later calls (one per container, see :meth:`files_waiting`) cost one read.
        Conditional writes: a file that moved on meanwhile is left alone. Returns how many rows were given it.
        """
        if self.get_item(dataset_pk(dataset), WAITING_INDEXED_SK) is not None:
            self._indexed.add(dataset)
            return 0
        given = 0
        for item in self.query_dataset(dataset, "FILE#"):
            status = item.get("status")
            if status not in (ACCEPTED, SKIPPED) or WAITING_ATTR in item or not item.get("seen_at"):
                continue
            value = waiting_for_batch(dataset) if status == ACCEPTED else waiting_for_contract(dataset)
            updated = self.update_with_condition(
                dataset_pk(dataset),
                str(item["sk"]),
                set_values={WAITING_ATTR: value},
                condition="#st = :status AND attribute_not_exists(#w)",
                condition_names={"#st": "status", "#w": WAITING_ATTR},
                condition_values={"status": status},
            )
            given += updated is not None
        self.put_item_if_absent(
            {"pk": dataset_pk(dataset), "sk": WAITING_INDEXED_SK, "indexed_at": iso(now), "rows_indexed": given}
        )
        self._indexed.add(dataset)
        return given

    # ---- files --------------------------------------------------------------------------------------------

    def get_file(self, dataset: str, bucket: str, key: str, version: str) -> dict[str, Any] | None:
        return self.get_item(dataset_pk(dataset), file_sk(bucket, key, version))

    def record_file(self, dataset: str, record: Mapping[str, Any]) -> bool:
        """Create the file's item (``record`` holds bucket, key, version, status, ...); False when it exists already.

        An ACCEPTED or SKIPPED file is created in the waiting index (WAITING_ATTR), like the ingest step does.
        """
        waiting = {ACCEPTED: waiting_for_batch(dataset), SKIPPED: waiting_for_contract(dataset)}.get(
            str(record.get("status"))
        )
        item = {
            "pk": dataset_pk(dataset),
            "sk": file_sk(record["bucket"], record["key"], record["version"]),
            "dataset": dataset,
            WAITING_ATTR: waiting,
            **record,
        }
        return self.put_item_if_absent(item)

    def transition_file(
        self, dataset: str, sk: str, from_status: str, to_status: str, **attributes: Any
    ) -> dict[str, Any] | None:
        """Move a file from ``from_status`` to ``to_status`` setting ``attributes``; None when not in from_status.

        Keeps the waiting index true: the file carries WAITING_ATTR exactly when ``to_status`` is ACCEPTED.
        """
        waiting = {WAITING_ATTR: waiting_for_batch(dataset)} if to_status == WAITING_STATUS else {}
        return self.update_with_condition(
            dataset_pk(dataset),
            sk,
            set_values={"status": to_status, **attributes, **waiting},
            remove=() if waiting else (WAITING_ATTR,),
            condition="#st = :from_status",
            condition_names={"#st": "status"},
            condition_values={"from_status": from_status},
        )

    def files_waiting(
        self, dataset: str, *, also: Sequence[str] = (), now: datetime | None = None
    ) -> list[dict[str, Any]]:
        """Accepted files not yet in a batch, oldest first (seen_at, then sk), from the sparse waiting index.

        ``also``: sks of files the caller just accepted, read consistently, since the index may not show them
        yet. The index may also still show a file that was just batched: whoever acts on the list re-reads the
        files it picks (:func:`dropzone.batching.maybe_start_batch`). The first call per dataset and container
        sees to rows from before the index (:meth:`index_waiting_rows`).
        """
        if dataset not in self._indexed:
            self.index_waiting_rows(dataset, now=now or datetime.now(UTC))
        found = {
            str(f["sk"]): f for f in self.query_waiting(waiting_for_batch(dataset)) if f.get("status") == WAITING_STATUS
        }
        for sk in also:
            item = None if sk in found else self.get_item(dataset_pk(dataset), sk)
            if item is not None and item.get("status") == WAITING_STATUS:
                found[sk] = item
        return sorted(found.values(), key=lambda f: (str(f.get("seen_at", "")), f["sk"]))

    def files_skipped(self, dataset: str) -> list[dict[str, Any]]:
        """Files SKIPPED for want of the dataset's contract (or being re-validated now), oldest first."""
        return [f for f in self.query_waiting(waiting_for_contract(dataset)) if str(f["sk"]).startswith("FILE#")]

    # ---- batches ------------------------------------------------------------------------------------------

    def get_batch(self, dataset: str, batch_id: str) -> dict[str, Any] | None:
        return self.get_item(dataset_pk(dataset), batch_sk(batch_id))

    def create_batch(self, dataset: str, batch_id: str, record: Mapping[str, Any]) -> bool:
        """Create the batch's item; False when a batch with this id exists already."""
        item = {"pk": dataset_pk(dataset), "sk": batch_sk(batch_id), "dataset": dataset, "batch_id": batch_id, **record}
        return self.put_item_if_absent(item)

    def update_batch(
        self,
        dataset: str,
        batch_id: str,
        *,
        expect_status: str | Sequence[str] | None = None,
        expect_attempt: int | None = None,
        remove: Sequence[str] = (),
        **attributes: Any,
    ) -> dict[str, Any] | None:
        """Set ``attributes`` on a batch when its status (one of ``expect_status``) and attempt match, else None."""
        conditions: list[str] = []
        names: dict[str, str] = {}
        values: dict[str, Any] = {}
        if expect_status is not None:
            statuses = [expect_status] if isinstance(expect_status, str) else list(expect_status)
            names["#st"] = "status"
            placeholders = []
            for i, status in enumerate(statuses):
                values[f"es{i}"] = status
                placeholders.append(f":es{i}")
            conditions.append(f"#st IN ({', '.join(placeholders)})")
        if expect_attempt is not None:
            names["#at"] = "attempt"
            values["expect_attempt"] = expect_attempt
            conditions.append("#at = :expect_attempt")
        return self.update_with_condition(
            dataset_pk(dataset),
            batch_sk(batch_id),
            set_values=attributes,
            remove=remove,
            condition=" AND ".join(conditions) or None,
            condition_names=names or None,
            condition_values=values or None,
        )

    # ---- the lease: at most one run in flight per dataset -------------------------------------------------

    def get_lease(self, dataset: str) -> dict[str, Any] | None:
        return self.get_item(dataset_pk(dataset), LEASE_SK)

    def acquire_lease(self, dataset: str, owner: str, *, now: datetime, ttl_seconds: int) -> bool:
        """Take the dataset's lease for ``owner`` until now + ttl when it is free, expired, or already ``owner``'s."""
        now_s = int(now.timestamp())
        try:
            self.client.put_item(
                TableName=self.table_name,
                Item=serialize(
                    {
                        "pk": dataset_pk(dataset),
                        "sk": LEASE_SK,
                        "owner": owner,
                        "acquired_at": iso(now),
                        "expires_at_lease": now_s + ttl_seconds,
                    }
                ),
                ConditionExpression="attribute_not_exists(pk) OR expires_at_lease <= :now OR #owner = :owner",
                ExpressionAttributeNames={"#owner": "owner"},
                ExpressionAttributeValues=serialize({":now": now_s, ":owner": owner}),
            )
        except ClientError as e:
            if _is_condition_failure(e):
                return False
            raise
        return True

    def release_lease(self, dataset: str, owner: str) -> bool:
        """Give the lease back; only its owner can (False when someone else holds it or it is gone)."""
        return self.delete_with_condition(
            dataset_pk(dataset),
            LEASE_SK,
            condition="#owner = :owner",
            condition_names={"#owner": "owner"},
            condition_values={"owner": owner},
        )

    @staticmethod
    def lease_expired(lease: Mapping[str, Any], now: datetime) -> bool:
        return int(lease.get("expires_at_lease", 0)) <= int(now.timestamp())
