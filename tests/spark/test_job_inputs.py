"""Job inputs without Spark: manifests (object or list), formats, contracts from a local directory or s3://."""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from dropzone.contract import ContractError
from spark_app.io import (
    JobInputError,
    batch_id_of,
    file_format,
    load_job_contracts,
    load_manifest,
    parse_manifest,
    read_bytes,
)
from spark_app.job import parse_args

CONTRACTS = Path(__file__).resolve().parents[2] / "contracts"


def test_object_manifest() -> None:
    batch = parse_manifest(
        {
            "dataset": "orders",
            "batch_id": "abc",
            "attempt": 2,
            "files": [
                {
                    "uri": "s3://b/incoming/orders/a.csv.gz",
                    "key": "incoming/orders/a.csv.gz",
                    "version": "v1",
                    "size": 10,
                },
                {"uri": "s3://b/incoming/orders/b.parquet"},
            ],
        },
        "m.json",
    )
    assert (batch.dataset, batch.batch_id, batch.attempt) == ("orders", "abc", 2)
    assert [f.format for f in batch.files] == ["csv.gz", "parquet"]
    assert batch.files[0].version == "v1"


def test_list_manifest_gets_a_deterministic_batch_id() -> None:
    a = parse_manifest(["/d/x.jsonl", "/d/y.csv"], "m")
    b = parse_manifest(["/d/y.csv", "/d/x.jsonl"], "m")
    assert a.batch_id == b.batch_id == batch_id_of(["/d/x.jsonl", "/d/y.csv"])
    assert a.dataset is None
    assert a.attempt == 1
    assert [f.format for f in a.files] == ["jsonl", "csv"]


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ([], "non-empty list of file URIs"),
        ({"files": []}, "'files' must be a non-empty list"),
        ({"files": [{"key": "x"}]}, "files[0] must be an object with a 'uri'"),
        ({"files": [{"uri": "a.csv", "format": "xml"}]}, "files[0].format 'xml'"),
        ({"files": [{"uri": "a.csv"}], "attempt": "1"}, "'attempt' must be an integer"),
        ("a.csv", "must be a JSON object or a list"),
    ],
)
def test_bad_manifests_say_what_is_wrong(document: object, message: str) -> None:
    with pytest.raises(JobInputError, match="m.json: .*" + message.replace("[", r"\[").replace("]", r"\]")):
        parse_manifest(document, "m.json")


def test_unknown_format_and_unreadable_manifest(tmp_path: Path) -> None:
    with pytest.raises(JobInputError, match=r"x\.txt: unknown file format"):
        file_format("s3://b/x.txt")
    (tmp_path / "m.json").write_text("{not json")
    with pytest.raises(JobInputError, match="not valid JSON"):
        load_manifest(str(tmp_path / "m.json"))
    with pytest.raises(JobInputError, match="cannot be read"):
        load_manifest(str(tmp_path / "missing.json"))


def test_contracts_with_their_references_from_a_directory() -> None:
    contracts = load_job_contracts(str(CONTRACTS), "orders")
    assert sorted(contracts) == ["customers", "orders", "products"]
    assert load_job_contracts("file://" + str(CONTRACTS), "products").keys() == {"products"}


def test_contract_must_match_the_dataset(tmp_path: Path) -> None:
    (tmp_path / "sales.yaml").write_text((CONTRACTS / "products.yaml").read_text())
    with pytest.raises(ContractError, match="does not match --dataset 'sales'"):
        load_job_contracts(str(tmp_path), "sales")


def test_s3_inputs_are_read_with_boto3(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket="data")
        for name in ("orders", "products", "customers"):
            s3.put_object(
                Bucket="data", Key=f"assets/contracts/{name}.yaml", Body=(CONTRACTS / f"{name}.yaml").read_bytes()
            )
        s3.put_object(Bucket="data", Key="batches/b1.json", Body=json.dumps(["s3://data/incoming/orders/a.csv"]))
        contracts = load_job_contracts("s3://data/assets/contracts/", "orders")
        assert contracts["orders"].source == "s3://data/assets/contracts/orders.yaml"
        assert load_manifest("s3://data/batches/b1.json").files[0].uri == "s3://data/incoming/orders/a.csv"
        assert read_bytes("s3://data/batches/b1.json", 2) == b'["'
        with pytest.raises(JobInputError, match=r"s3://data/batches/none\.json: cannot be read"):
            load_manifest("s3://data/batches/none.json")


def test_arguments() -> None:
    argv = ["--manifest", "m", "--contracts", "c", "--dataset", "orders", "--curated", "cu", "--features", "f"]
    args = parse_args([*argv, "--run-id", "r", "--as-of", "2026-03-01", "--train-cutoffs", "2"])
    assert (args.as_of.isoformat() if args.as_of else None, args.train_cutoffs) == ("2026-03-01", 2)
    with pytest.raises(SystemExit):
        parse_args(["--manifest", "m"])
