"""What happens around the stack in a real deployment: the deploy publishes assets, producers drop files.

``publish_assets`` serves the template's asset custom resource with that resource's own code: the function's
``build_assets`` module (what `sam build` runs) writes the assets, its handler's ``handle`` uploads them
with the resource's deployed properties. ``upload`` puts files under ``incoming/<dataset>/`` like a
producer, reference datasets first; ``bad_file`` is a file its contract refuses; ``renotify`` sends an S3
notification a second time, as S3's at-least-once delivery may.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import io
import json
import uuid
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pyarrow as pa
import pyarrow.parquet as pq

from dropzone.contract import Contract
from dropzone.local.server import EmbeddedAws
from dropzone.local.stack import Stack, StackError


def _module(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise StackError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def publish_assets(
    aws: EmbeddedAws, stack: Stack, root: Path, work_dir: Path, contracts_dir: Path | None = None
) -> dict[str, str]:
    """Serve every custom resource whose function ships ``build_assets.py``; returns their Data. ``contracts_dir``:
    the contracts published are that folder's ``*.yaml`` instead of ``<root>/contracts``'s."""
    data: dict[str, str] = {}
    for custom in stack.custom_resources:
        if custom.function is None or custom.function not in stack.functions:
            raise StackError(f"{custom.logical_id}: cannot find the function behind its ServiceToken")
        function = stack.functions[custom.function]
        builder = function.code_dir / "build_assets.py"
        if not builder.is_file():
            raise StackError(f"{custom.logical_id} ({custom.type}): the local runtime cannot serve it")
        assets_dir = work_dir / "assets"
        _module(builder, f"dropzone_local_build_{custom.logical_id}").build_assets(root, assets_dir, contracts_dir)
        handler_module = function.handler.rpartition(".")[0]
        app = _module(function.code_dir / f"{handler_module}.py", f"dropzone_local_custom_{custom.logical_id}")
        event = {
            "RequestType": "Create",
            "ResourceType": custom.type,
            "LogicalResourceId": custom.logical_id,
            "StackId": f"arn:aws:cloudformation:{aws.region}:{aws.account_id}:stack/{stack.name}/local",
            "RequestId": str(uuid.uuid4()),
            "ResourceProperties": stack.resolve(custom.properties),
        }
        data.update(app.handle(event, aws.client("s3"), assets_dir))
    return data


@dataclass(frozen=True)
class Upload:
    dataset: str
    key: str
    path: Path | None
    size: int
    etag: str


def _hidden(path: Path, below: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(below).parts)


def producer_files(data_dir: Path, contracts: dict[str, Contract]) -> list[tuple[str, Path]]:
    """Every file under ``data_dir/<dataset>/`` (hidden ones aside: ``.DS_Store``, ``.git/``), reference datasets
    first, each dataset in name order. All of them are uploaded, as a producer's sync would: a file the contract
    cannot read (an unsupported name, a text file) is quarantined with its reason, as it would be on AWS, rather than
    left out here without a word."""
    if not data_dir.is_dir():
        raise ValueError(f"--data {data_dir}: not a directory (expected one sub-directory per dataset)")
    found: list[tuple[str, Path]] = []
    unknown = []
    for sub in sorted(p for p in data_dir.iterdir() if p.is_dir()):
        if sub.name not in contracts:
            unknown.append(sub.name)
            continue
        files = sorted(p for p in sub.rglob("*") if p.is_file() and not _hidden(p, sub))
        found += [(sub.name, p) for p in files]
    if unknown:
        raise ValueError(
            f"--data {data_dir}: no contract for sub-directory(ies) {', '.join(unknown)} "
            f"(contracts: {', '.join(sorted(contracts))})"
        )
    if not found:
        raise ValueError(f"--data {data_dir}: no data files under <dataset>/ folders (one folder per contract)")
    found.sort(key=lambda item: (not contracts[item[0]].is_reference, item[0], str(item[1])))
    return found


def upload(aws: EmbeddedAws, bucket: str, data_dir: Path, files: list[tuple[str, Path]]) -> list[Upload]:
    s3 = aws.client("s3")
    uploads = []
    for dataset, path in files:
        relative = path.relative_to(data_dir / dataset).as_posix()
        key = f"incoming/{dataset}/{relative}"
        s3.upload_file(str(path), bucket, key)
        head = s3.head_object(Bucket=bucket, Key=key)
        uploads.append(Upload(dataset, key, path, head["ContentLength"], head["ETag"].strip('"')))
    return uploads


def bad_file(contract: Contract) -> tuple[str, bytes, str]:
    """(file name, body, expected problem): a file of ``contract`` missing its first required column, in the first
    of the contract's formats (so it is refused for the missing column, not for its format)."""
    required = [c.name for c in contract.columns if c.required]
    if not required:
        raise ValueError(f"{contract.dataset} has no required column to leave out")
    missing = required[0]
    header = [c.name for c in contract.columns if c.name != missing]
    fmt = contract.formats[0]
    if fmt.startswith("csv"):
        body = (",".join(header) + "\n" + ",".join("x" for _ in header) + "\n").encode()
    elif fmt.startswith("jsonl"):
        body = (json.dumps(dict.fromkeys(header, "x")) + "\n").encode()
    else:  # parquet
        sink = io.BytesIO()
        pq.write_table(pa.table({name: ["x"] for name in header}), sink)
        body = sink.getvalue()
    if fmt.endswith(".gz"):
        body = gzip.compress(body, mtime=0)
    return f"bad-missing-{missing}.{fmt}", body, missing


def upload_bytes(aws: EmbeddedAws, bucket: str, dataset: str, name: str, body: bytes) -> Upload:
    s3 = aws.client("s3")
    key = f"incoming/{dataset}/{name}"
    s3.put_object(Bucket=bucket, Key=key, Body=body)
    return Upload(dataset, key, None, len(body), hashlib.md5(body, usedforsecurity=False).hexdigest())


def renotify(aws: EmbeddedAws, bucket: str, key: str) -> None:
    """Have S3 send the ObjectCreated notification of ``key`` once more (S3 delivers at least once).

    The duplicate goes through the bucket's deployed notification configuration, built by moto's S3 exactly
    like the first one.
    """
    from moto.s3 import notifications
    from moto.s3.models import s3_backends

    backend = s3_backends[aws.account_id][aws.partition]
    fake_bucket = backend.get_bucket(bucket)
    fake_key = backend.get_object(bucket, key)
    if fake_key is None:
        raise ValueError(f"s3://{bucket}/{key} does not exist: nothing to notify")
    notifications.send_event(
        aws.account_id, notifications.S3NotificationEvent.OBJECT_CREATED_PUT_EVENT, fake_bucket, fake_key
    )
