"""`dropzone local run`: the whole pipeline on generated data (or --data DIR), then a summary and a report."""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dropzone import outdir
from dropzone.cli import cannot_write
from dropzone.contract import load_contracts
from dropzone.local.emr import SparkHost
from dropzone.local.producer import Upload, bad_file, producer_files, renotify, upload, upload_bytes
from dropzone.local.runtime import Clock, LocalStack, Pipeline, Progress, ledger_items
from dropzone.local.server import embedded_aws

DEFAULT_ROWS = 20_000
DEFAULT_FILES = 10  # orders batch once 10 files are accepted (contracts/orders.yaml batching.min_files)


@dataclass
class RunOptions:
    root: Path
    out_dir: Path
    data_dir: Path | None = None
    rows: int = DEFAULT_ROWS
    files: int = DEFAULT_FILES
    seed: int = 7
    template: Path | None = None
    stack_name: str = "dropzone-local"
    bad_file: bool = True
    duplicate: bool = True
    cores: int = 2
    warm_spark: bool = True  # one warm local Spark driver for every job run (False: spark-submit per run)
    contracts_dir: Path | None = None  # the contracts to deploy instead of <root>/contracts (needs data_dir)

    @property
    def contracts(self) -> Path:
        return self.contracts_dir or self.root / "contracts"


@dataclass
class RunResult:
    out_dir: Path
    endpoint_url: str
    data_bucket: str
    uploads: list[Upload]
    bad_key: str | None
    duplicated_key: str | None
    ledger: dict[str, list[dict[str, Any]]]
    clock: Clock
    pipeline_seconds: float
    emr_runs: list[Any]
    training_jobs: list[Any]
    model_packages: dict[str, list[dict[str, Any]]]
    notifications: list[dict[str, Any]]
    deliveries: dict[str, Any]
    feature_runs: list[dict[str, Any]] = field(default_factory=list)  # every run's manifest, in start order
    bucket_keys: list[str] = field(default_factory=list)
    report: Path | None = None
    trainable: list[str] | None = None  # the deployed datasets with a label (None: not known, an older result)

    @property
    def features(self) -> dict[str, Any]:
        """Dataset → the manifest of its latest feature run."""
        return {m["dataset"]: m for m in self.feature_runs}


def _generate(options: RunOptions, progress: Progress) -> Path:
    from dropzone.generate import generate

    data_dir = options.out_dir / "data"
    written = generate(data_dir, options.rows, seed=options.seed, files=options.files)
    progress(f"  data   | generated {options.rows} orders in {options.files} file(s) under {data_dir}")
    del written
    return data_dir


def subscribe_notifications(local: LocalStack) -> str | None:
    """Read the stack's SNS notifications the way a person would: an SQS queue subscribed to the topic."""
    topics = local.stack.physical("AWS::SNS::Topic")
    if not topics:
        return None
    sqs = local.aws.client("sqs")
    url = sqs.create_queue(QueueName="dropzone-local-notifications")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    for topic in topics:
        local.aws.client("sns").subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)
    return str(url)


def read_notifications(local: LocalStack, url: str | None) -> list[dict[str, Any]]:
    if url is None:
        return []
    sqs = local.aws.client("sqs")
    found: list[dict[str, Any]] = []
    while True:
        messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
        if not messages:
            return found
        for m in messages:
            body = json.loads(m["Body"])
            found.append({"subject": body.get("Subject"), "message": body.get("Message")})
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])


def model_packages(local: LocalStack) -> dict[str, list[dict[str, Any]]]:
    sagemaker = local.aws.client("sagemaker")
    groups = {}
    for group in sagemaker.list_model_package_groups()["ModelPackageGroupSummaryList"]:
        name = group["ModelPackageGroupName"]
        packages = sagemaker.list_model_packages(ModelPackageGroupName=name)["ModelPackageSummaryList"]
        groups[name] = [
            {
                "arn": p["ModelPackageArn"],
                "version": p.get("ModelPackageVersion"),
                "status": p.get("ModelApprovalStatus"),
            }
            for p in packages
        ]
    return groups


MARKER = ".dropzone-run"  # in every output folder a run writes: what a later run may replace
_RUN_OUTPUTS = ("work", "data", "report.html")  # what a run writes into its output folder


def prepare_out_dir(
    out_dir: Path, data_dir: Path | None, progress: Progress = print, outputs: tuple[str, ...] | None = _RUN_OUTPUTS
) -> None:
    """Make ``out_dir`` ready for a new run: created when missing; an earlier run's ``outputs`` in it removed (None:
    every entry, for `local up`'s working folder), so the new run starts from an empty stack as the first did (the
    local S3 copies and the curated table live there, and batch and run ids are deterministic: kept, they would mix
    the earlier run's rows into this one's); any other non-empty folder refused, so no file of the user's is ever
    replaced. Files given with ``--data`` are never removed, even inside ``out_dir``. A folder that cannot be
    created or written (under a file, in /proc, no permission) is a ValueError naming it, like the others."""
    try:
        _prepare_out_dir(out_dir, data_dir, progress, outputs)
    except OSError as e:
        raise ValueError(cannot_write("--out", out_dir, e)) from None


def _prepare_out_dir(out_dir: Path, data_dir: Path | None, progress: Progress, outputs: tuple[str, ...] | None) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"--out {out_dir}: a file, not a folder")
    if outdir.holds_earlier_output(out_dir, MARKER, "an earlier run"):
        keep = None  # the earlier run's generated data/ given back as --data
        if data_dir is not None and data_dir.resolve().is_relative_to(out_dir.resolve()):
            keep = "data"
            if not data_dir.resolve().is_relative_to(out_dir.resolve() / keep):
                raise ValueError(f"--data {data_dir}: inside --out {out_dir}, where this run writes")
        names = outputs if outputs is not None else tuple(p.name for p in out_dir.iterdir() if p.name != MARKER)
        outdir.remove(out_dir / name for name in names if name != keep)
        progress(f"out      | {out_dir}: the earlier run's outputs removed")
    outdir.mark(out_dir, MARKER, json.dumps({"started": datetime.now(UTC).isoformat(timespec="seconds")}) + "\n")


def run_pipeline(options: RunOptions, progress: Progress = print) -> RunResult:
    """Run everything; the returned result holds what the summary and the report show."""
    started = time.perf_counter()
    if options.contracts_dir is not None and options.data_dir is None:
        raise ValueError(
            f"--contracts {options.contracts_dir} needs --data: generated data fits only the shipped orders contracts"
        )
    if options.data_dir is not None:  # bad input is refused before anything starts
        producer_files(options.data_dir, load_contracts(options.contracts))
    prepare_out_dir(options.out_dir, options.data_dir, progress)
    with embedded_aws() as aws, contextlib.ExitStack() as cleanup:
        work = options.out_dir / "work"
        host = None
        if options.warm_spark:  # its JVM starts while the template deploys and the first files are ingested
            host = SparkHost.local(work, cores=options.cores)
            cleanup.callback(host.close)
            host.start()
        clock = Clock()
        with clock.stage("deploy"):
            local = LocalStack.start(
                aws, options.root, work, options.template, options.stack_name, contracts_dir=options.contracts_dir
            )
        stack = local.stack
        progress(
            f"deploy   | {stack.name}: {len(stack.resources)} resources, {len(stack.functions)} functions, "
            f"{len(stack.mappings)} queue mappings, EMR application {', '.join(stack.emr_applications.values())}"
        )
        notifications_url = subscribe_notifications(local)
        bucket = local.data_bucket
        with clock.stage("data"):
            data_dir = options.data_dir or _generate(options, progress)
            files = producer_files(data_dir, local.contracts)
        pipeline = Pipeline(local, progress, cores=options.cores, warm_spark=options.warm_spark, spark_host=host)
        cleanup.callback(pipeline.close)
        pipeline.clock = clock
        reference = [f for f in files if local.contracts[f[0]].is_reference]
        facts = [f for f in files if not local.contracts[f[0]].is_reference]
        uploads: list[Upload] = []
        with clock.stage("upload"):
            uploads += upload(aws, bucket, data_dir, reference)
        progress(f"upload   | {len(reference)} reference file(s) → s3://{bucket}/incoming/")
        pipeline.run_until_idle(flush=True)
        bad_key = duplicated_key = None
        with clock.stage("upload"):
            uploads += upload(aws, bucket, data_dir, facts)
            if options.bad_file and facts:
                name, body, _ = bad_file(local.contracts[facts[0][0]])
                bad = upload_bytes(aws, bucket, facts[0][0], name, body)
                uploads.append(bad)
                bad_key = bad.key
            if options.duplicate and facts:
                duplicated_key = next(u.key for u in uploads if u.dataset == facts[0][0])
                renotify(aws, bucket, duplicated_key)
        progress(
            f"upload   | {len(facts)} file(s)"
            + (f" + 1 bad file ({bad_key})" if bad_key else "")
            + (f" + 1 duplicated notification ({duplicated_key})" if duplicated_key else "")
        )
        pipeline.run_until_idle(flush=True)
        result = RunResult(
            out_dir=options.out_dir,
            endpoint_url=aws.endpoint_url,
            data_bucket=bucket,
            uploads=uploads,
            bad_key=bad_key,
            duplicated_key=duplicated_key,
            ledger=ledger_items(local),
            clock=clock,
            pipeline_seconds=time.perf_counter() - started,
            emr_runs=list(pipeline.emr.outcomes),
            training_jobs=list(pipeline.training.outcomes),
            model_packages=model_packages(local),
            notifications=read_notifications(local, notifications_url),
            deliveries=dict(pipeline.deliveries),
            trainable=sorted(name for name, contract in local.contracts.items() if not contract.is_reference),
        )
        result.feature_runs = _feature_runs(local, result)
        paginator = aws.client("s3").get_paginator("list_objects_v2")
        result.bucket_keys = [o["Key"] for page in paginator.paginate(Bucket=bucket) for o in page.get("Contents", [])]
    return result


def _feature_runs(local: LocalStack, result: RunResult) -> list[dict[str, Any]]:
    """The _manifest.json of every successful feature run, in the order the runs started."""
    s3 = local.aws.client("s3")
    found: list[dict[str, Any]] = []
    for items in result.ledger.values():
        for run in items:
            uri = str(run.get("features_uri") or "")
            if not str(run["sk"]).startswith("RUN#") or run.get("state") != "SUCCESS" or not uri.startswith("s3://"):
                continue
            bucket, _, prefix = uri[5:].partition("/")
            try:
                found.append(
                    json.loads(s3.get_object(Bucket=bucket, Key=prefix.rstrip("/") + "/_manifest.json")["Body"].read())
                )
            except s3.exceptions.NoSuchKey:
                continue
    return sorted(found, key=lambda m: str(m.get("started_at")))


def stamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
