"""`dropzone local run` and `dropzone local up`: the pipeline of template.yaml in this process (no AWS, no Docker)."""

from __future__ import annotations

import argparse
import contextlib
import json
import shlex
import signal
import sys
import time
from pathlib import Path
from typing import Any

from dropzone.cli import UsageError, say

STATE_FILE = Path(".dropzone") / "local.json"
SAMPLE_ROWS = 1_000  # the orders `local up` generates for its hint: a file to drop in that passes the contract

RUN_DESCRIPTION = (
    "Deploy template.yaml into an embedded AWS API, upload the files of --data DIR or generated ones (plus one bad "
    "file and one duplicated notification) and run every function, Spark job and training job until idle. "
    "It prints a summary and writes an HTML report; exit 0 when a model was registered, 1 otherwise."
)


def add_parser(sub: Any) -> argparse.ArgumentParser:
    parser = sub.add_parser("local", help="run the pipeline locally: embedded AWS API, no account, no Docker")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    run = actions.add_parser(
        "run",
        help="deploy, drop the data, run everything until idle, print a summary",
        description=RUN_DESCRIPTION,
    )
    add_run_arguments(run)
    up = actions.add_parser(
        "up",
        help="keep a local stack running to drop files by hand (Ctrl-C stops)",
        description="Deploy template.yaml into an embedded AWS API on 127.0.0.1 and keep it running: files put under "
        "incoming/<dataset>/ in its bucket go through the pipeline as on AWS. It prints the endpoint, the bucket and "
        f"a generated file to try, and writes {STATE_FILE} for `dropzone status`; Ctrl-C stops it.",
    )
    up.add_argument("--port", type=int, default=0, help="port of the embedded AWS API (default: a free one)")
    up.add_argument("--out", type=Path, default=None, help="working directory (default: local-runs/up-<time>)")
    up.add_argument("--root", type=Path, default=Path.cwd(), help="repository root (template.yaml, contracts/)")
    up.add_argument(
        "--contracts", type=Path, default=None, help="DIR of contracts (*.yaml) to deploy instead of the root's"
    )
    up.add_argument("--poll", type=float, default=2.0, help="seconds between polls of the queues (default 2)")
    up.add_argument(
        "--reconcile-every", type=float, default=60.0, help="seconds between reconciler invocations (default 60)"
    )
    return parser


def add_run_arguments(parser: argparse.ArgumentParser, rows: int | None = None) -> None:
    from dropzone.local.run import DEFAULT_FILES, DEFAULT_ROWS

    parser.add_argument("--data", type=Path, default=None, help="DIR with one sub-directory of files per dataset")
    parser.add_argument("--rows", type=int, default=rows or DEFAULT_ROWS, help="orders to generate without --data")
    parser.add_argument("--files", type=int, default=DEFAULT_FILES, help="order files to generate without --data")
    parser.add_argument("--seed", type=int, default=7, help="generator seed")
    parser.add_argument("--out", type=Path, default=None, help="output directory (default: local-runs/<time>)")
    parser.add_argument("--root", type=Path, default=Path.cwd(), help="repository root (template.yaml, contracts/)")
    parser.add_argument(
        "--contracts",
        type=Path,
        default=None,
        help="DIR of contracts (*.yaml) to deploy instead of the root's contracts/ (your own datasets; needs --data)",
    )
    parser.add_argument("--no-bad-file", action="store_true", help="do not add the deliberately bad file")
    parser.add_argument("--no-duplicate", action="store_true", help="do not duplicate one S3 notification")
    parser.add_argument(
        "--spark-per-run",
        action="store_true",
        help="give every EMR job run its own spark-submit (a new JVM) and every training job a new python, as on "
        "AWS, instead of one warm Spark driver and one pre-started training process: slower, for checking that a "
        "job does not depend on what an earlier run left behind",
    )


def _check_root(root: Path) -> Path:
    root = root.resolve()
    for needed in ("template.yaml", "contracts"):
        if not (root / needed).exists():
            raise UsageError(f"{root} has no {needed}: run from the repository root or pass --root")
    return root


def _check_contracts(folder: Path | None) -> Path | None:
    """The --contracts folder, resolved; its contracts are parsed (with their references) so a broken one stops
    the command before anything starts, with the file and field at fault."""
    from dropzone.contract import ContractError, load_contracts

    if folder is None:
        return None
    folder = folder.resolve()
    if not folder.is_dir():
        raise UsageError(f"--contracts {folder}: not a folder")
    if not any(folder.glob("*.yaml")):
        raise UsageError(f"--contracts {folder}: no *.yaml contracts in it")
    try:
        load_contracts(folder)
    except ContractError as e:
        raise UsageError(str(e)) from None
    return folder


def run_local(args: argparse.Namespace) -> int:
    from dropzone.local.report import summary_lines, write_report
    from dropzone.local.run import RunOptions, run_pipeline, stamp

    if args.rows < 1 or args.files < 1:
        raise UsageError("--rows and --files must be at least 1")
    if args.seed < 0:
        raise UsageError(f"--seed must be at least 0, got {args.seed}")
    root = _check_root(args.root)
    out = (args.out or root / "local-runs" / stamp()).resolve()
    options = RunOptions(
        root=root,
        out_dir=out,
        data_dir=args.data.resolve() if args.data else None,
        rows=args.rows,
        files=args.files,
        seed=args.seed,
        bad_file=not args.no_bad_file,
        duplicate=not args.no_duplicate,
        warm_spark=not args.spark_per_run,
        contracts_dir=_check_contracts(args.contracts),
    )
    try:
        result = run_pipeline(options, progress=say)
    except ValueError as e:
        raise UsageError(str(e)) from None
    lines = summary_lines(result)
    say("\n".join(lines))
    report = write_report(result, lines)
    say(f"report: {report}")
    registered = any(p["status"] == "Approved" for ps in result.model_packages.values() for p in ps)
    return 0 if registered else 1


def up(args: argparse.Namespace) -> int:
    from dropzone.local.run import prepare_out_dir, stamp
    from dropzone.local.runtime import LocalStack, Pipeline
    from dropzone.local.server import PortUnavailable, check_port, embedded_aws

    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port must be between 0 and 65535, got {args.port}")
    try:
        check_port(args.port)  # before anything is written: a port taken is the commonest reason `up` cannot start
    except PortUnavailable as e:
        raise UsageError(f"--port {args.port}: {e}") from None
    if not (args.poll > 0 and args.reconcile_every > 0):  # also refuses nan
        raise UsageError("--poll and --reconcile-every must be more than 0 seconds")
    root = _check_root(args.root)
    contracts = _check_contracts(args.contracts)
    work = (args.out or root / "local-runs" / f"up-{stamp()}").resolve()
    try:
        prepare_out_dir(work, None, progress=say, outputs=None)
    except ValueError as e:
        raise UsageError(str(e)) from None
    with contextlib.ExitStack() as running:
        try:
            aws = running.enter_context(embedded_aws(args.port))
        except PortUnavailable as e:  # taken between the check and the start
            raise UsageError(f"--port {args.port}: {e}") from None
        local = LocalStack.start(aws, root, work, contracts_dir=contracts)
        pipeline = Pipeline(local, progress=say)
        pipeline.emr.start_driver()  # warm before the first file arrives
        sample = None if contracts else _sample_orders(work / "sample")  # generated orders fit the shipped contracts
        state = {
            "endpoint_url": aws.endpoint_url,
            "region": aws.region,
            "data_bucket": local.data_bucket,
            "ledger_table": local.ledger_table,
            "stack_name": local.stack.name,
        }
        state_file = root / STATE_FILE
        state_file.parent.mkdir(parents=True, exist_ok=True)
        state_file.write_text(json.dumps(state, indent=2) + "\n")
        say(_welcome(state, state_file, sample, sorted(local.contracts)))
        last_reconcile = time.monotonic()
        signal.signal(signal.SIGTERM, _interrupt)  # `kill` stops it as cleanly as Ctrl-C
        try:
            while True:
                due = time.monotonic() - last_reconcile >= args.reconcile_every
                pipeline.run_until_idle(reconcile=due)
                if due:
                    last_reconcile = time.monotonic()
                time.sleep(args.poll)
        except KeyboardInterrupt:
            print("\nstopping the local stack", file=sys.stderr)
        finally:
            pipeline.close()
            state_file.unlink(missing_ok=True)
    return 0


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _sample_orders(out_dir: Path) -> Path:
    """Generate a small data set under ``out_dir`` and return its first orders file, the one the welcome names."""
    from dropzone.generate import generate

    written = generate(out_dir, SAMPLE_ROWS, files=1)
    return Path(written["orders"][0])


def _shown(path: Path) -> str:
    """``path`` relative to the working directory when it lies below it (shorter to copy), else absolute."""
    path = path.resolve()
    return str(path.relative_to(Path.cwd())) if path.is_relative_to(Path.cwd()) else str(path)


def _welcome(state: dict[str, str], state_file: Path, sample: Path | None, datasets: list[str]) -> str:
    """What to do next: the endpoint and bucket, and a file to drop (``sample``: a generated orders file; None with
    the user's own contracts: then the datasets they define)."""
    endpoint, bucket = state["endpoint_url"], state["data_bucket"]
    credentials = "AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing"
    env = f"AWS_ENDPOINT_URL={endpoint} {credentials} AWS_REGION={state['region']}"
    file = _shown(sample) if sample is not None else "<your file>"
    dataset = "orders" if sample is not None else datasets[0]
    lines = [
        "",
        f"local stack {state['stack_name']} is up (state in {state_file}); Ctrl-C stops it",
        f"  endpoint: {endpoint}",
        f"  bucket:   {bucket}  (drop files under incoming/<dataset>/)",
        f"  ledger:   {state['ledger_table']}",
        f"  datasets: {', '.join(datasets)}",
    ]
    if sample is not None:
        lines.append(f"  sample:   {_shown(sample.parent.parent)}  (generated orders, products, customers)")
    return "\n".join(
        [
            *lines,
            "",
            "try, in another shell:",
            f"  export {env}",
            f"  aws s3 cp {shlex.quote(file) if sample is not None else file} s3://{bucket}/incoming/{dataset}/",
            f"  aws s3 ls s3://{bucket}/reports/ --recursive",
            "  dropzone status",
            "or with boto3:",
            f"  s3 = boto3.client('s3', endpoint_url='{endpoint}')",
            f"  s3.upload_file({file!r}, '{bucket}', 'incoming/{dataset}/x.csv')",
            "",
        ]
    )


def run(args: argparse.Namespace) -> int:
    return run_local(args) if args.action == "run" else up(args)
