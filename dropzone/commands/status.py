"""`dropzone status`: files, batches, runs (state, duration, cost), training jobs and model decisions.

Reads the ledger table named by ``--table`` (AWS, with the usual credentials and region; ``--endpoint-url``
for anything else), or, without ``--table``, the local runtime's table from ``.dropzone/local.json`` (written
by ``dropzone local up``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError
from botocore.exceptions import ConnectionError as EndpointUnreachable

from dropzone import aws
from dropzone.cli import UsageError, reader_may_leave
from dropzone.ledger import Ledger
from dropzone.status import collect, render

STATE_FILE = Path(".dropzone") / "local.json"
_LOCAL_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}  # moto accepts any


def add_parser(sub: Any) -> argparse.ArgumentParser:
    parser = sub.add_parser(
        "status",
        help="files, batches, runs, models from the ledger (local or AWS)",
        description=__doc__.splitlines()[0] if __doc__ else None,
    )
    parser.add_argument("--table", help="ledger table name (default: the local runtime's, from --state-file)")
    parser.add_argument("--endpoint-url", help="DynamoDB endpoint (default: AWS, or the local runtime's)")
    parser.add_argument("--region", help="AWS region (default: AWS_REGION / AWS_DEFAULT_REGION)")
    parser.add_argument("--dataset", help="only this dataset (one Query instead of a Scan)")
    parser.add_argument("--limit", type=int, default=20, help="rows per table in the readable output (default 20)")
    parser.add_argument("--json", action="store_true", help="everything, as JSON")
    parser.add_argument(
        "--state-file", type=Path, default=STATE_FILE, help=f"the local runtime's state (default {STATE_FILE})"
    )
    return parser


def _ledger(args: argparse.Namespace) -> tuple[Ledger, str, str]:
    """The ledger to read, where it is (for messages), and what to check when that place cannot be reached."""
    table, endpoint, region = args.table, args.endpoint_url, args.region
    credentials: dict[str, str] = {}
    local = False
    if table is None:
        state_file: Path = args.state_file
        if not state_file.is_file():
            raise UsageError(
                f"no ledger table: pass --table NAME (AWS), or start the local runtime (dropzone local up), "
                f"which writes {state_file}"
            )
        try:
            state = json.loads(state_file.read_text())
            table = state["ledger_table"]
        except (ValueError, KeyError) as e:
            raise UsageError(f"{state_file} is not the local runtime's state file: {e}") from None
        endpoint = endpoint or state.get("endpoint_url")
        region = region or state.get("region")
        credentials = _LOCAL_CREDENTIALS
        local = True
    region = region or aws.region_name()
    endpoint = endpoint or aws.endpoint_url("dynamodb")
    client = boto3.client(
        "dynamodb",
        region_name=region,
        endpoint_url=endpoint,
        config=aws.client_config(max_attempts=2),
        **credentials,
    )
    if local:
        where, check = f"the local runtime at {endpoint}", "is `dropzone local up` still running?"
    elif endpoint:
        where, check = endpoint, "check --endpoint-url (or AWS_ENDPOINT_URL) and the network"
    else:
        where = f"AWS region {region}"
        check = f"no answer from {client.meta.endpoint_url}; check the network connection and --region"
    return Ledger(str(table), client), where, check


def run(args: argparse.Namespace) -> int:
    if args.limit < 1:
        raise UsageError("--limit must be at least 1")
    ledger, where, check = _ledger(args)
    try:
        status = collect(ledger, dataset=args.dataset)
    except EndpointUnreachable:
        raise UsageError(f"cannot reach {where}: {check}") from None
    except ClientError as e:
        code = e.response.get("Error", {}).get("Code", "")
        if code == "ResourceNotFoundException":
            raise UsageError(f"ledger table {ledger.table_name!r} does not exist in {where}") from None
        raise UsageError(f"cannot read ledger table {ledger.table_name!r} in {where}: {code}: {e}") from None
    except BotoCoreError as e:
        raise UsageError(f"cannot read ledger table {ledger.table_name!r} in {where}: {e}") from None
    with reader_may_leave():  # `| head`: the rest is not wanted
        if args.json:
            json.dump(status.to_dict(), sys.stdout, indent=2, default=str)
            sys.stdout.write("\n")
        else:
            print(f"ledger {ledger.table_name} ({where})\n")
            print(render(status, limit=args.limit))
    return 0
