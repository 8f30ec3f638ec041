"""The ingest step for one S3 object: contract → streaming validation → report, quarantine copy, ledger entry.

No Lambda types here: the handler (functions/ingest/app.py) unpacks SQS/S3 envelopes into :class:`ObjectRef` and
calls :func:`ingest_object`. Idempotency (docs/ledger.md): the ledger is read before validating, and the report
JSON, written before the ledger entry and stamped with the object's identity, is the checkpoint that lets a
redelivery finish the work after a crash without validating again.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote_plus, unquote_plus

from botocore.exceptions import ClientError

from dropzone.batching import file_format
from dropzone.contract import DATASET_NAME, Contract, ContractError, parse_contract_text
from dropzone.ledger import (
    ACCEPTED,
    QUARANTINED,
    SKIPPED,
    VALIDATING,
    WAITING_ATTR,
    Ledger,
    dataset_pk,
    file_sk,
    iso,
    waiting_for_batch,
    waiting_for_contract,
)
from dropzone.notify import Notifier
from dropzone.s3io import RangedReader, open_stream

INCOMING = "incoming/"
MAX_LEDGER_REASONS = 10
MAX_REASON_CHARS = 500
REPORT_SCHEMA = 1
# How long a worker holds a file it validates: the function's longest run (900 s) plus a margin. SQS redelivers
# a failed message only after the queue's visibility timeout (longer), so a dead worker's claim has expired by then.
DEFAULT_CLAIM_SECONDS = 960
# A SKIPPED file is sent to the ingest queue again (redrive) at most this often: longer than the queue's
# visibility timeout (5400 s), so a redrive message still being retried is not doubled.
REDRIVE_AGAIN_AFTER = timedelta(hours=2)
REDRIVE_EVENT = "dropzone:RedriveSkipped"

# What happened to one object.
OUTCOME_ACCEPTED = ACCEPTED
OUTCOME_QUARANTINED = QUARANTINED
OUTCOME_SKIPPED = SKIPPED  # recorded in the ledger (unknown dataset); re-validated once its contract is published
OUTCOME_DUPLICATE = "DUPLICATE"  # already in the ledger: nothing redone
OUTCOME_IGNORED = "IGNORED"  # not a data file (folder marker, outside incoming/): not recorded
OUTCOME_GONE = "GONE"  # the object (this version of it) no longer exists: not recorded


class FileInProgress(RuntimeError):
    """Another worker holds the file's validation claim: this delivery fails and SQS retries it later."""


class BadNotification(ValueError):
    """An SQS message body that is not an S3 event notification; says what is wrong."""


@dataclass(frozen=True)
class ObjectRef:
    """One object named by an S3 notification (key already decoded)."""

    bucket: str
    key: str
    size: int | None = None
    etag: str | None = None
    version_id: str | None = None
    event_time: str | None = None


@dataclass(frozen=True)
class IngestOutcome:
    status: str
    key: str
    dataset: str | None = None
    reason: str = ""
    sk: str | None = None  # the file's ledger sort key, once its identity is known
    file_status: str | None = None  # the ledger status of the file after this call
    validated: bool = False  # validation ran in this call
    recorded: bool = False  # this call created the ledger entry
    metrics: Mapping[str, float] = field(default_factory=dict)
    contract: Contract | None = None  # the dataset's contract when this call read it


def parse_notification(body: str | Mapping[str, Any]) -> list[ObjectRef]:
    """The objects in an S3 notification (an SQS message body); [] for s3:TestEvent.

    Keys are decoded with unquote_plus: S3 encodes a space as '+' and '+' as '%2B'.
    """
    if isinstance(body, str):
        try:
            document = json.loads(body)
        except json.JSONDecodeError as e:
            raise BadNotification(f"message body is not JSON: {e}") from None
    else:
        document = body
    if not isinstance(document, Mapping):
        raise BadNotification("message body is not a JSON object")
    if document.get("Event") == "s3:TestEvent":
        return []
    records = document.get("Records")
    if not isinstance(records, list):
        raise BadNotification("message body has no Records list (not an S3 event notification)")
    refs = []
    for i, record in enumerate(records):
        try:
            s3 = record["s3"]
            obj = s3["object"]
            refs.append(
                ObjectRef(
                    bucket=str(s3["bucket"]["name"]),
                    key=unquote_plus(str(obj["key"])),
                    size=int(obj["size"]) if obj.get("size") is not None else None,
                    etag=_bare_etag(obj.get("eTag")),
                    version_id=obj.get("versionId") or None,
                    event_time=record.get("eventTime"),
                )
            )
        except (KeyError, TypeError, ValueError) as e:
            raise BadNotification(f"record {i} is not an S3 object notification: missing or bad {e}") from None
    return refs


def _bare_etag(etag: Any) -> str | None:
    return str(etag).strip('"') or None if etag else None


def split_key(key: str) -> tuple[str, str] | None:
    """``incoming/<dataset>/<rest>`` → (dataset, rest); None when the key is not a data file under incoming/."""
    if not key.startswith(INCOMING) or key.endswith("/"):
        return None
    dataset, _, rest = key[len(INCOMING) :].partition("/")
    if not dataset or not rest:
        return None
    return dataset, rest


def report_key(dataset: str, rest: str, version: str) -> str:
    """One report per version of a file: ``reports/<dataset>/<path>/<version id or ETag>.json``.

    Two versions of one key (an overwrite in a versioned bucket, or a rewrite with other content when
    unversioned) each keep their report; ``aws s3 ls reports/<dataset>/<path>/`` lists them. Version ids and
    ETags hold no ``/``, so no file's reports can collide with another's.
    """
    return f"reports/{dataset}/{rest}/{version}.json"


def quarantine_key(dataset: str, rest: str) -> str:
    return f"quarantine/{dataset}/{rest}"


def _error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def _http_status(error: ClientError) -> int:
    return int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))


_MISSING = frozenset({"NoSuchKey", "NoSuchVersion", "404", "NotFound"})
_CHANGED = frozenset({"PreconditionFailed", "412"})


class ContractStore:
    """Contracts published by the deploy at s3://<bucket>/<prefix><dataset>.yaml, cached per container by ETag."""

    def __init__(self, s3: Any, bucket: str, prefix: str) -> None:
        self.s3 = s3
        self.bucket = bucket
        self.prefix = prefix
        self._cache: dict[str, tuple[str, Contract]] = {}
        self.parsed = 0  # how many times a contract was (re)parsed: tests check the cache

    def uri(self, dataset: str) -> str:
        return f"s3://{self.bucket}/{self.prefix}{dataset}.yaml"

    def get(self, dataset: str) -> Contract | None:
        """The dataset's contract, or None when none is published; a broken one raises ContractError."""
        key = f"{self.prefix}{dataset}.yaml"
        cached = self._cache.get(dataset)
        args: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        if cached is not None:
            args["IfNoneMatch"] = cached[0]
        try:
            answer = self.s3.get_object(**args)
        except ClientError as e:
            if cached is not None and (_http_status(e) == 304 or _error_code(e) in ("304", "NotModified")):
                return cached[1]
            if _error_code(e) in _MISSING:
                self._cache.pop(dataset, None)
                return None
            raise
        text = answer["Body"].read()
        source = self.uri(dataset)
        contract = parse_contract_text(text, source)
        if contract.dataset != dataset:
            raise ContractError(source, "dataset", f"{contract.dataset!r} must equal the file name {dataset!r}")
        self.parsed += 1
        self._cache[dataset] = (str(answer["ETag"]), contract)
        return contract


Validator = Callable[..., Any]


def _default_validator() -> Validator:
    from dropzone.validation import validate_stream

    return validate_stream


def _reasons(values: Any) -> list[str]:
    reasons = [str(r) for r in (values or [])]
    kept = [r[:MAX_REASON_CHARS] for r in reasons[:MAX_LEDGER_REASONS]]
    if len(reasons) > MAX_LEDGER_REASONS:
        kept.append(f"... and {len(reasons) - MAX_LEDGER_REASONS} more (see the report)")
    return kept


def _metrics(report: Mapping[str, Any], decision: str) -> dict[str, float]:
    return {
        "FilesAccepted": 1.0 if decision == ACCEPTED else 0.0,
        "FilesQuarantined": 1.0 if decision == QUARANTINED else 0.0,
        "BytesValidated": float(report.get("bytes_read") or 0),
        "RowsRead": float(report.get("rows_read") or 0),
        "BadRows": float(report.get("bad_rows") or 0),
        "ValidationSeconds": float(report.get("duration_s") or 0.0),
    }


class Ingestor:
    """Everything one container needs to ingest objects: S3, the ledger, the contracts, the validator."""

    def __init__(
        self,
        *,
        s3: Any,
        ledger: Ledger,
        contracts: ContractStore,
        data_bucket: str,
        validator: Validator | None = None,
        claim_seconds: int = DEFAULT_CLAIM_SECONDS,
        notifier: Notifier | None = None,
    ) -> None:
        self.s3 = s3
        self.notifier = notifier
        self.claim_seconds = claim_seconds
        self.ledger = ledger
        self.contracts = contracts
        self.data_bucket = data_bucket
        self._validator = validator

    @property
    def validator(self) -> Validator:
        if self._validator is None:
            self._validator = _default_validator()
        return self._validator

    def ingest(self, ref: ObjectRef, *, now: datetime | None = None) -> IngestOutcome:
        """Validate and record one object exactly once; repeated calls for the same object do nothing new."""
        now = now or datetime.now(UTC)
        parts = split_key(ref.key)
        if parts is None:
            why = "folder marker" if ref.key.endswith("/") else "not a data file under incoming/<dataset>/"
            return IngestOutcome(OUTCOME_IGNORED, ref.key, reason=why)
        dataset, rest = parts
        head = self._head(ref)
        if head is None:
            return self._gone(ref, dataset, "the object (this version) no longer exists")
        head_etag = _bare_etag(head.get("ETag"))
        if ref.etag and head_etag != ref.etag:
            return self._gone(ref, dataset, "the object was overwritten since the event")
        head_version = head.get("VersionId")
        # Pin every read to the version seen (a versioned bucket) or to the ETag (If-Match) when unversioned.
        version_id = ref.version_id or (str(head_version) if head_version not in (None, "null") else None)
        ref = replace(ref, version_id=version_id, etag=head_etag)
        version = version_id or head_etag or ""
        sk = file_sk(ref.bucket, ref.key, version)
        existing = self.ledger.get_file(dataset, ref.bucket, ref.key, version)
        if existing is not None and existing["status"] not in (VALIDATING, SKIPPED):
            return IngestOutcome(
                OUTCOME_DUPLICATE, ref.key, dataset, "already in the ledger", sk, file_status=existing["status"]
            )
        size = int(head.get("ContentLength", ref.size or 0))
        identity = {"bucket": ref.bucket, "key": ref.key, "version": version}
        rkey = report_key(dataset, rest, version)
        contract = self.contracts.get(dataset) if DATASET_NAME.match(dataset) else None
        if contract is None:
            if existing is not None:
                return IngestOutcome(
                    OUTCOME_DUPLICATE, ref.key, dataset, "already in the ledger", sk, file_status=existing["status"]
                )
            reason = f"unknown dataset {dataset!r}: no contract at {self.contracts.uri(dataset)}"
            report = {"schema": REPORT_SCHEMA, **identity, "dataset": dataset, "decision": SKIPPED, "reasons": [reason]}
            self._put_json(rkey, report)
            record = {
                **self._file_record(identity, size, head, rkey, now),
                "status": SKIPPED,
                "reasons": [reason],
                WAITING_ATTR: waiting_for_contract(dataset),  # found again once the contract is published
            }
            # Told before it is recorded: a failure in between sends it again on the redelivery (at least once).
            self._tell_producer("file_skipped", f"{dataset} file skipped: {ref.key}: no contract", report, rkey)
            created = self.ledger.put_item_if_absent(record)
            return IngestOutcome(
                OUTCOME_SKIPPED if created else OUTCOME_DUPLICATE,
                ref.key,
                dataset,
                reason,
                sk,
                file_status=SKIPPED,
                recorded=created,
            )
        # A file SKIPPED before its dataset's contract was published is validated now (its one ledger item moves
        # SKIPPED -> VALIDATING -> decision), whether this is a redrive by the reconciler or a redelivery.
        base = self._file_record(identity, size, head, rkey, now)
        owner = uuid.uuid4().hex
        held = self._claim(dataset, base, owner, now)
        if held is not None:
            if held["status"] == VALIDATING:
                until = datetime.fromtimestamp(int(held.get("claim_expires_at", 0)), UTC)
                raise FileInProgress(f"{ref.key} ({version}) is being validated by another worker until {iso(until)}")
            return IngestOutcome(
                OUTCOME_DUPLICATE, ref.key, dataset, "already in the ledger", sk, file_status=held["status"]
            )
        was_skipped = existing is not None and (
            existing["status"] == SKIPPED or existing.get(WAITING_ATTR) == waiting_for_contract(dataset)
        )
        try:
            checkpoint = self._checkpoint(rkey, identity)
            validated = checkpoint is None
            if checkpoint is None:
                result = self._validate(ref, head, contract, size, now)
                checkpoint = {"schema": REPORT_SCHEMA, **result, **identity, "dataset": dataset, "report_key": rkey}
                self._put_json(rkey, checkpoint)
            report = checkpoint
            decision = str(report["decision"])
            if decision == QUARANTINED:
                self._copy_to_quarantine(ref, head, quarantine_key(dataset, rest))
                # Told while the claim is held, before the decision is recorded: a failure in between sends it
                # again on the redelivery (at least once); after the record, a redelivery sends nothing.
                first = next(iter(_reasons(report.get("reasons"))), "no reason given")
                summary = f"{dataset} file quarantined: {ref.key}: {first}"
                self._tell_producer("file_quarantined", summary, report, rkey, quarantine_key(dataset, rest))
            created = self._finish(dataset, base["sk"], owner, decision, report)
        except BaseException:
            # Give the claim back at once so the redelivery need not wait for it to expire (the report stays).
            self._release(dataset, base["sk"], owner, back_to_skipped=was_skipped)
            raise
        return IngestOutcome(
            decision if created else OUTCOME_DUPLICATE,
            ref.key,
            dataset,
            reason="; ".join(_reasons(report.get("reasons"))[:3]),
            sk=sk,
            file_status=decision,
            validated=validated,
            contract=contract,
            recorded=created,
            metrics=_metrics(report, decision) if created else {},
        )

    # ---- steps --------------------------------------------------------------------------------------------

    def _gone(self, ref: ObjectRef, dataset: str, reason: str) -> IngestOutcome:
        """Nothing to validate. A SKIPPED file of this identity (a redrive) stops waiting for its contract, so it
        is not sent again every REDRIVE_AGAIN_AFTER for ever; it stays SKIPPED with the reason."""
        version = ref.version_id or ref.etag
        if version:
            self.ledger.update_with_condition(
                dataset_pk(dataset),
                file_sk(ref.bucket, ref.key, version),
                set_values={"gone_reason": reason},
                remove=(WAITING_ATTR,),
                condition="#st = :skipped",
                condition_names={"#st": "status"},
                condition_values={"skipped": SKIPPED},
            )
        return IngestOutcome(OUTCOME_GONE, ref.key, dataset, reason=reason)

    def _head(self, ref: ObjectRef) -> dict[str, Any] | None:
        args: dict[str, Any] = {"Bucket": ref.bucket, "Key": ref.key}
        if ref.version_id:
            args["VersionId"] = ref.version_id
        try:
            return dict(self.s3.head_object(**args))
        except ClientError as e:
            if _error_code(e) in _MISSING or _http_status(e) == 404:
                return None
            raise

    def _checkpoint(self, rkey: str, identity: Mapping[str, str]) -> dict[str, Any] | None:
        """The report a previous delivery wrote for this very object, if its ledger write never happened."""
        try:
            answer = self.s3.get_object(Bucket=self.data_bucket, Key=rkey)
        except ClientError as e:
            # Without s3:ListBucket, S3 answers a missing key with 403: for this optional shortcut that means
            # "no checkpoint" (the file is validated again, still recorded once), never a failed message.
            if _error_code(e) in _MISSING or _error_code(e) == "AccessDenied" or _http_status(e) == 403:
                return None
            raise
        try:
            report = json.loads(answer["Body"].read())
        except ValueError:
            return None
        same = all(report.get(k) == v for k, v in identity.items())
        if same and report.get("decision") in (ACCEPTED, QUARANTINED):
            return dict(report)
        return None

    def _validate(
        self, ref: ObjectRef, head: Mapping[str, Any], contract: Contract, size: int, now: datetime
    ) -> dict[str, Any]:
        etag = ref.etag
        uploaded_at = head.get("LastModified") or now
        if ref.key.lower().endswith(".parquet"):
            stream: Any = RangedReader(
                self.s3,
                ref.bucket,
                ref.key,
                size=size,
                version_id=ref.version_id,
                etag=None if ref.version_id else etag,
            )
        else:
            stream = open_stream(self.s3, ref.bucket, ref.key, version_id=ref.version_id, etag=etag)
        try:
            result = self.validator(stream, name=ref.key, contract=contract, size=size, uploaded_at=uploaded_at)
        finally:
            stream.close()
        return dict(result.to_dict())

    def _tell_producer(
        self, kind: str, summary: str, report: Mapping[str, Any], rkey: str, copy_key: str | None = None
    ) -> None:
        """One notification (SNS, for the producer) for a file that was not accepted: what, why, where its report
        and quarantined copy are."""
        if self.notifier is None:
            return
        details: dict[str, Any] = {
            "dataset": report.get("dataset"),
            "key": report.get("key"),
            "version": report.get("version"),
            "reasons": _reasons(report.get("reasons")),
            "rows_read": report.get("rows_read"),
            "bad_rows": report.get("bad_rows"),
            "report": f"s3://{self.data_bucket}/{rkey}",
        }
        if copy_key is not None:
            details["quarantined_copy"] = f"s3://{self.data_bucket}/{copy_key}"
        self.notifier.publish(kind, summary, {k: v for k, v in details.items() if v is not None})

    def _put_json(self, key: str, document: Mapping[str, Any]) -> None:
        self.s3.put_object(
            Bucket=self.data_bucket,
            Key=key,
            Body=json.dumps(document, indent=1, default=str).encode(),
            ContentType="application/json",
        )

    def _copy_to_quarantine(self, ref: ObjectRef, head: Mapping[str, Any], target: str) -> None:
        source: dict[str, str] = {"Bucket": ref.bucket, "Key": ref.key}
        extra: dict[str, Any] = {}
        if ref.version_id:
            source["VersionId"] = ref.version_id
        elif ref.etag:
            extra["CopySourceIfMatch"] = f'"{ref.etag}"'
        # Managed copy: multipart for objects over 5 GB, where a single CopyObject fails.
        self.s3.copy(source, self.data_bucket, target, ExtraArgs=extra or None)

    def _file_record(
        self, identity: Mapping[str, str], size: int, head: Mapping[str, Any], rkey: str, now: datetime
    ) -> dict[str, Any]:
        """The file's ledger item before its decision is known (docs/ledger.md)."""
        key = identity["key"]
        version_id = head.get("VersionId") if head.get("VersionId") not in (None, "null") else None
        dataset = key[len(INCOMING) :].partition("/")[0]
        return {
            "pk": dataset_pk(dataset),
            "sk": file_sk(identity["bucket"], key, identity["version"]),
            "dataset": dataset,
            **identity,
            "size": size,
            "etag": _bare_etag(head.get("ETag")),
            "version_id": version_id,
            "format": file_format(key),
            "report_key": rkey,
            "seen_at": iso(now),
            "attempt": 0,
        }

    def _claim(self, dataset: str, base: Mapping[str, Any], owner: str, now: datetime) -> dict[str, Any] | None:
        """Take the file for validation (status VALIDATING, owner, expiry); None when taken, else the item as it is.

        A claim whose holder died (expiry passed) is taken over, and so is a SKIPPED file (the caller has its
        contract now: the file keeps its ``seen_at`` and its waiting-for-contract mark until the decision, so a
        redrive whose worker dies is found again); a live claim or a final status is returned.
        """
        expires = int(now.timestamp()) + self.claim_seconds
        claim = {"status": VALIDATING, "claim_owner": owner, "claim_expires_at": expires}
        if self.ledger.put_item_if_absent({**base, **claim}):
            return None
        fresh = {k: base[k] for k in ("size", "etag", "format", "report_key") if base.get(k) is not None}
        taken = self.ledger.update_with_condition(
            str(base["pk"]),
            str(base["sk"]),
            set_values={**claim, **fresh},
            condition="(#st = :validating AND claim_expires_at <= :now) OR #st = :skipped",
            condition_names={"#st": "status"},
            condition_values={"validating": VALIDATING, "now": int(now.timestamp()), "skipped": SKIPPED},
        )
        if taken is not None:
            return None
        return self.ledger.get_item(str(base["pk"]), str(base["sk"])) or {"status": VALIDATING}

    def _finish(self, dataset: str, sk: str, owner: str, decision: str, report: Mapping[str, Any]) -> bool:
        """VALIDATING (ours) → the decision; False when another worker finished it first.

        An ACCEPTED file enters the waiting index (it waits for a batch); any other decision leaves it.
        """
        waiting = {WAITING_ATTR: waiting_for_batch(dataset)} if decision == ACCEPTED else {}
        done = self.ledger.update_with_condition(
            dataset_pk(dataset),
            sk,
            set_values={
                "status": decision,
                "rows": report.get("rows_read"),
                "bad_rows": report.get("bad_rows"),
                "reasons": _reasons(report.get("reasons")),
                **waiting,
            },
            remove=("claim_owner", "claim_expires_at", "redriven_at") + (() if waiting else (WAITING_ATTR,)),
            condition="#st = :validating AND claim_owner = :owner",
            condition_names={"#st": "status"},
            condition_values={"validating": VALIDATING, "owner": owner},
        )
        if done is not None:
            return True
        current = self.ledger.get_item(dataset_pk(dataset), sk)
        if current is not None and current.get("status") not in (None, VALIDATING):
            return False
        raise FileInProgress(f"lost the claim on {sk} before recording its decision; the redelivery finishes it")

    def _release(self, dataset: str, sk: str, owner: str, *, back_to_skipped: bool = False) -> None:
        with contextlib.suppress(ClientError):
            if back_to_skipped:
                # Its ledger item predates this call: it goes back to SKIPPED (still waiting for a redrive).
                self.ledger.update_with_condition(
                    dataset_pk(dataset),
                    sk,
                    set_values={"status": SKIPPED},
                    remove=("claim_owner", "claim_expires_at"),
                    condition="#st = :validating AND claim_owner = :owner",
                    condition_names={"#st": "status"},
                    condition_values={"validating": VALIDATING, "owner": owner},
                )
                return
            self.ledger.delete_with_condition(
                dataset_pk(dataset),
                sk,
                condition="#st = :validating AND claim_owner = :owner",
                condition_names={"#st": "status"},
                condition_values={"validating": VALIDATING, "owner": owner},
            )


# ---- redrive: files SKIPPED before their dataset's contract was published -------------------------------------


def redrive_body(item: Mapping[str, Any], now: datetime) -> str:
    """An S3 notification for one ledger file item, as the ingest queue carries it (keys encoded as S3 does)."""
    obj: dict[str, Any] = {"key": quote_plus(str(item["key"]), safe="/"), "size": int(item.get("size") or 0)}
    if item.get("etag"):
        obj["eTag"] = str(item["etag"])
    if item.get("version_id"):
        obj["versionId"] = str(item["version_id"])
    record = {
        "eventSource": "aws:s3",
        "eventName": REDRIVE_EVENT,
        "eventTime": iso(now),
        "s3": {"bucket": {"name": str(item["bucket"])}, "object": obj},
    }
    return json.dumps({"Records": [record]})


def redrive_skipped(
    ledger: Ledger, sqs: Any, queue_url: str, dataset: str, *, now: datetime, limit: int = 1000
) -> list[str]:
    """Send the dataset's SKIPPED files (it has a contract now) to the ingest queue; returns their sks.

    The ingest function validates them as if they had just arrived, moving each one's single ledger item from
    SKIPPED to its decision. Found through the sparse waiting index (``CONTRACT#<dataset>``), so a dataset
    without skipped files costs one empty query. A file sent less than REDRIVE_AGAIN_AFTER ago is not sent again.
    """
    cutoff = iso(now - REDRIVE_AGAIN_AFTER)
    due = [f for f in ledger.files_skipped(dataset) if str(f.get("redriven_at") or "") <= cutoff][:limit]
    sent: list[str] = []
    for start in range(0, len(due), 10):  # SendMessageBatch takes 10 messages
        chunk = due[start : start + 10]
        answer = sqs.send_message_batch(
            QueueUrl=queue_url,
            Entries=[{"Id": str(i), "MessageBody": redrive_body(f, now)} for i, f in enumerate(chunk)],
        )
        failed = {str(e["Id"]) for e in answer.get("Failed", [])}
        for i, f in enumerate(chunk):
            if str(i) in failed:
                continue
            sent.append(str(f["sk"]))
            ledger.update_with_condition(
                dataset_pk(dataset),
                str(f["sk"]),
                set_values={"redriven_at": iso(now)},
                condition="#st IN (:skipped, :validating)",
                condition_names={"#st": "status"},
                condition_values={"skipped": SKIPPED, "validating": VALIDATING},
            )
        if failed:
            raise RuntimeError(f"{len(failed)} redrive message(s) of {dataset} were refused by the ingest queue")
    return sent
