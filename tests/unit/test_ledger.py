"""The ledger class against moto's DynamoDB: conditional writes, transitions, queries, the lease."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import boto3
import pytest

from dropzone.ledger import (
    ACCEPTED,
    BATCHED,
    QUARANTINED,
    Ledger,
    dataset_pk,
    file_sk,
    iso,
)

NOW = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


@pytest.fixture
def ledger(ledger_table: str) -> Ledger:
    return Ledger(ledger_table, boto3.client("dynamodb", region_name="us-east-1"))


def _file(key: str, status: str = ACCEPTED, **extra: object) -> dict[str, object]:
    return {"bucket": "b", "key": key, "version": "v1", "status": status, "size": 10, **extra}


def test_put_item_if_absent_creates_once_and_keeps_the_first(ledger: Ledger) -> None:
    # GIVEN an item written once
    assert ledger.put_item_if_absent({"pk": "P", "sk": "S", "value": 1}) is True
    # WHEN the same key is written again with another value
    second = ledger.put_item_if_absent({"pk": "P", "sk": "S", "value": 2})
    # THEN the second write is refused and the first value stays
    assert second is False
    assert ledger.get_item("P", "S") == {"pk": "P", "sk": "S", "value": 1}


def test_numbers_come_back_as_int_and_float_and_nan_is_refused(ledger: Ledger) -> None:
    ledger.put_item_if_absent({"pk": "P", "sk": "N", "count": 3, "ratio": 0.25, "nested": {"x": [1, 2.5]}})
    item = ledger.get_item("P", "N")
    assert item is not None
    assert type(item["count"]) is int
    assert item["count"] == 3
    assert type(item["ratio"]) is float
    assert item["ratio"] == 0.25
    assert item["nested"] == {"x": [1, 2.5]}
    with pytest.raises(ValueError, match="cannot store the number nan"):
        ledger.put_item_if_absent({"pk": "P", "sk": "NaN", "ratio": float("nan")})


def test_update_with_condition_applies_only_when_the_condition_holds(ledger: Ledger) -> None:
    # GIVEN a file in ACCEPTED
    assert ledger.record_file("orders", _file("incoming/orders/a.csv"))
    sk = file_sk("b", "incoming/orders/a.csv", "v1")
    # WHEN it moves ACCEPTED -> BATCHED, then someone tries the same move again
    first = ledger.transition_file("orders", sk, ACCEPTED, BATCHED, batch_id="B1")
    again = ledger.transition_file("orders", sk, ACCEPTED, BATCHED, batch_id="B2")
    # THEN only the first applies
    assert first is not None
    assert first["status"] == BATCHED
    assert first["batch_id"] == "B1"
    assert again is None
    item = ledger.get_item(dataset_pk("orders"), sk)
    assert item is not None
    assert item["batch_id"] == "B1"


def test_update_with_condition_never_creates_a_missing_item(ledger: Ledger) -> None:
    assert ledger.update_with_condition("P", "missing", set_values={"status": "X"}) is None
    assert ledger.get_item("P", "missing") is None


def test_update_with_condition_removes_attributes(ledger: Ledger) -> None:
    ledger.put_item_if_absent({"pk": "P", "sk": "R", "job_run_id": "j1", "status": "FAILED"})
    updated = ledger.update_with_condition("P", "R", set_values={"status": "STARTING"}, remove=("job_run_id",))
    assert updated == {"pk": "P", "sk": "R", "status": "STARTING"}


def test_record_file_is_idempotent_on_bucket_key_version(ledger: Ledger) -> None:
    assert ledger.record_file("orders", _file("incoming/orders/a.csv")) is True
    assert ledger.record_file("orders", _file("incoming/orders/a.csv", status=QUARANTINED)) is False
    # a new version of the same key is a new file
    assert ledger.record_file("orders", {**_file("incoming/orders/a.csv"), "version": "v2"}) is True
    items = list(ledger.query_dataset("orders", "FILE#"))
    assert [(i["version"], i["status"]) for i in items] == [("v1", ACCEPTED), ("v2", ACCEPTED)]


def test_query_dataset_reads_every_page_and_filters_by_prefix_and_status(ledger: Ledger) -> None:
    # GIVEN 25 files of orders (every third one quarantined), a batch, and a file of another dataset
    for i in range(25):
        ledger.record_file("orders", _file(f"incoming/orders/{i:03d}.csv", QUARANTINED if i % 3 == 0 else ACCEPTED))
    ledger.create_batch("orders", "B1", {"status": "STARTING", "files": []})
    ledger.record_file("products", _file("incoming/products/p.csv"))
    # WHEN read in pages of 4
    files = list(ledger.query_dataset("orders", "FILE#", page_size=4))
    accepted = list(ledger.query_dataset("orders", "FILE#", filter_status=ACCEPTED, page_size=4))
    everything = list(ledger.query_dataset("orders"))
    # THEN nothing is lost across pages, the prefix and the status filter hold
    assert len(files) == 25
    assert len(accepted) == 16
    assert {i["status"] for i in accepted} == {ACCEPTED}
    assert len(everything) == 26
    assert {i["dataset"] for i in everything} == {"orders"}


def test_files_waiting_are_oldest_first(ledger: Ledger) -> None:
    ledger.record_file("orders", _file("incoming/orders/late.csv", seen_at="2026-11-20T09:05:00+00:00"))
    ledger.record_file("orders", _file("incoming/orders/early.csv", seen_at="2026-11-20T09:00:00+00:00"))
    ledger.record_file("orders", _file("incoming/orders/done.csv", BATCHED, seen_at="2026-11-20T08:00:00+00:00"))
    assert [f["key"] for f in ledger.files_waiting("orders")] == [
        "incoming/orders/early.csv",
        "incoming/orders/late.csv",
    ]


def test_lease_is_exclusive_until_expiry_and_released_only_by_its_owner(ledger: Ledger) -> None:
    # GIVEN batch A holds the lease for 10 minutes
    assert ledger.acquire_lease("orders", "A", now=NOW, ttl_seconds=600) is True
    # WHEN batch B asks while it is valid, THEN it is refused
    assert ledger.acquire_lease("orders", "B", now=NOW + timedelta(minutes=9), ttl_seconds=600) is False
    # and B cannot release A's lease
    assert ledger.release_lease("orders", "B") is False
    lease = ledger.get_lease("orders")
    assert lease is not None
    assert lease["owner"] == "A"
    assert not Ledger.lease_expired(lease, NOW + timedelta(minutes=9))
    # WHEN the lease has expired, THEN B takes it over
    assert Ledger.lease_expired(lease, NOW + timedelta(minutes=10))
    assert ledger.acquire_lease("orders", "B", now=NOW + timedelta(minutes=10), ttl_seconds=600) is True
    # and A, the former owner, can no longer release it
    assert ledger.release_lease("orders", "A") is False
    assert ledger.release_lease("orders", "B") is True
    assert ledger.get_lease("orders") is None


def test_the_owner_can_renew_its_own_lease(ledger: Ledger) -> None:
    assert ledger.acquire_lease("orders", "A", now=NOW, ttl_seconds=60)
    assert ledger.acquire_lease("orders", "A", now=NOW + timedelta(seconds=30), ttl_seconds=60)
    lease = ledger.get_lease("orders")
    assert lease is not None
    assert lease["expires_at_lease"] == int(NOW.timestamp()) + 90


def test_update_batch_checks_status_and_attempt(ledger: Ledger) -> None:
    ledger.create_batch("orders", "B1", {"status": "FAILED", "attempt": 1, "files": ["x"]})
    assert ledger.update_batch("orders", "B1", expect_status="RUNNING", status="SUCCEEDED") is None
    assert (
        ledger.update_batch("orders", "B1", expect_status=("FAILED", "RETRYING"), expect_attempt=2, attempt=3) is None
    )
    updated = ledger.update_batch("orders", "B1", expect_status=("FAILED", "RETRYING"), expect_attempt=1, attempt=2)
    assert updated is not None
    assert updated["attempt"] == 2
    assert updated["files"] == ["x"]


def _scanned(ledger: Ledger) -> list[int]:
    """Items each DynamoDB Query of ``ledger``'s client read (ScannedCount, before any filter), one per page."""
    counts: list[int] = []
    ledger.client.meta.events.register(
        "after-call.dynamodb.Query", lambda parsed, **_: counts.append(int(parsed.get("ScannedCount", 0)))
    )
    return counts


def test_finding_waiting_files_reads_only_them_not_the_datasets_history(ledger: Ledger) -> None:
    # GIVEN a dataset with a long history: 40 files, 36 of them long since batched and done, 4 still waiting
    for i in range(40):
        ledger.record_file("orders", _file(f"incoming/orders/{i:03d}.csv", seen_at=f"2026-11-20T09:00:{i:02d}+00:00"))
    ledger.files_waiting("orders", now=NOW)  # (first call per container: the upgrade check, see below)
    for i in range(36):
        sk = file_sk("b", f"incoming/orders/{i:03d}.csv", "v1")
        assert ledger.transition_file("orders", sk, ACCEPTED, BATCHED, batch_id="B1") is not None
        assert ledger.transition_file("orders", sk, BATCHED, "DONE") is not None
    # WHEN the batching policy looks for waiting files
    scanned = _scanned(ledger)
    waiting = ledger.files_waiting("orders", now=NOW)
    # THEN it gets the 4 waiting files, oldest first, and reads those 4 items only (not the 40)
    assert [f["key"] for f in waiting] == [f"incoming/orders/{i:03d}.csv" for i in range(36, 40)]
    assert sum(scanned) == 4


def test_a_file_is_in_the_waiting_index_only_while_accepted(ledger: Ledger) -> None:
    # GIVEN an accepted file (in the index) and a quarantined one (never in it)
    ledger.record_file("orders", _file("incoming/orders/a.csv", seen_at="2026-11-20T09:00:00+00:00"))
    ledger.record_file("orders", _file("incoming/orders/q.csv", QUARANTINED, seen_at="2026-11-20T09:00:01+00:00"))
    sk = file_sk("b", "incoming/orders/a.csv", "v1")
    assert [i["sk"] for i in ledger.query_waiting("BATCH#orders")] == [sk]
    # WHEN it joins a batch THEN it leaves the index; put back to ACCEPTED it is found again
    ledger.transition_file("orders", sk, ACCEPTED, BATCHED, batch_id="B1")
    assert list(ledger.query_waiting("BATCH#orders")) == []
    assert "waiting" not in (ledger.get_item(dataset_pk("orders"), sk) or {})
    ledger.transition_file("orders", sk, BATCHED, ACCEPTED)
    assert [i["sk"] for i in ledger.query_waiting("BATCH#orders")] == [sk]


def test_rows_written_before_the_index_existed_are_indexed_once_on_upgrade(ledger_table: str) -> None:
    # GIVEN a ledger written by the previous version: ACCEPTED / SKIPPED / DONE items without the waiting attribute
    old = Ledger(ledger_table, boto3.client("dynamodb", region_name="us-east-1"))
    for name, status in (("a", ACCEPTED), ("b", ACCEPTED), ("s", "SKIPPED"), ("d", "DONE")):
        key = f"incoming/orders/{name}.csv"
        item = {"pk": dataset_pk("orders"), "sk": file_sk("b", key, "v1"), **_file(key, status), "seen_at": iso(NOW)}
        assert old.put_item_if_absent(item)
    # WHEN the upgraded code first looks for waiting files (new container)
    upgraded = Ledger(ledger_table, boto3.client("dynamodb", region_name="us-east-1"))
    waiting = upgraded.files_waiting("orders", now=NOW)
    # THEN the old waiting rows are found, the skipped one waits for its contract, and the dataset is marked done
    assert [f["key"] for f in waiting] == ["incoming/orders/a.csv", "incoming/orders/b.csv"]
    assert [f["key"] for f in upgraded.files_skipped("orders")] == ["incoming/orders/s.csv"]
    marker = upgraded.get_item(dataset_pk("orders"), "INDEX#waiting")
    assert marker is not None
    assert marker["rows_indexed"] == 3
    # and another container reads the marker instead of the partition again
    other = Ledger(ledger_table, boto3.client("dynamodb", region_name="us-east-1"))
    scanned = _scanned(other)
    assert len(other.files_waiting("orders", now=NOW)) == 2
    assert sum(scanned) == 2


def test_files_just_accepted_are_found_when_the_index_lags(ledger: Ledger, monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN an accepted file that the (eventually consistent) index does not show yet
    ledger.record_file("orders", _file("incoming/orders/a.csv", seen_at=iso(NOW)))
    ledger.record_file("orders", _file("incoming/orders/q.csv", QUARANTINED, seen_at=iso(NOW)))
    monkeypatch.setattr(ledger, "query_waiting", lambda value: iter(()))
    sk = file_sk("b", "incoming/orders/a.csv", "v1")
    # WHEN the caller names it THEN it is read consistently and counted; a file not ACCEPTED is not
    assert ledger.files_waiting("orders", now=NOW) == []
    found = ledger.files_waiting("orders", also=[sk, file_sk("b", "incoming/orders/q.csv", "v1")], now=NOW)
    assert [f["sk"] for f in found] == [sk]
