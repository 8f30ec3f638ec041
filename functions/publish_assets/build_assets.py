"""Build the code assets the pipeline reads from ``s3://<data bucket>/assets/`` into one directory.

Run by ``make build-PublishAssetsFunction`` (sam build) so the PublishAssetsFunction package carries them, and
usable by anything else that publishes assets (e.g. the local runtime). The layout under the output directory is
the key layout under ``assets/`` and matches what template.yaml passes to the functions:

- ``spark/main.py``            SPARK_ENTRY_POINT (spark_app/main.py)
- ``spark/spark_app.zip``      SPARK_PY_FILES (spark_app.package.zip_bytes: the spark_app and dropzone packages, PyYAML)
- ``contracts/<dataset>.yaml`` CONTRACTS_PREFIX (every contracts/*.yaml, checked with dropzone.contract)
- ``training/sourcedir.tar.gz`` TRAINING_SOURCE_URI (training/ as SageMaker script mode expects it)

Archives are byte-for-byte reproducible (fixed timestamps, sorted entries), so the package hash, and with it the
deploy's "publish again" trigger, only changes when the content does.
"""

from __future__ import annotations

import argparse
import gzip
import importlib.util
import io
import shutil
import sys
import tarfile
from pathlib import Path
from typing import Any

import yaml

from dropzone.contract import load_contracts

SPARK_ENTRY_POINT = "spark/main.py"
SPARK_PY_FILES = "spark/spark_app.zip"
CONTRACTS_DIR = "contracts"
TRAINING_SOURCE = "training/sourcedir.tar.gz"


class AssetError(RuntimeError):
    """A source the assets are built from is missing or invalid; names the path."""


def _check_yaml_pin(root: Path) -> None:
    """The zip carries the building Python's PyYAML: it must be the version requirements/lambda.txt pins, so the
    same sources give the same zip whoever builds it (sam build must find the project's .venv python3.11)."""
    pins = root / "requirements" / "lambda.txt"
    if not pins.is_file():
        return
    for line in pins.read_text().splitlines():
        name, _, version = line.split("#", 1)[0].strip().partition("==")
        if name.lower() == "pyyaml" and version.strip() != yaml.__version__:
            raise AssetError(
                f"PyYAML {yaml.__version__} is installed but {pins} pins {version.strip()}: build with the "
                "project's .venv first on PATH (docs/deploy.md)"
            )


def spark_zip(root: Path) -> bytes:
    """The ``--py-files`` zip, as `make package-spark` builds it (spark_app.package.zip_bytes: the dropzone and
    spark_app packages and the pure-Python part of PyYAML, which EMR Serverless' Python lacks), reproducible."""
    for package in (root / "spark_app", root / "dropzone"):
        if not (package / "__init__.py").is_file():
            raise AssetError(f"{package}: not a Python package (no __init__.py), the Spark job imports it")
    _check_yaml_pin(root)
    return bytes(_package_module(root).zip_bytes(root))


def _package_module(root: Path) -> Any:
    """``<root>/spark_app/package.py``, loaded from the repository being built (spark_app is not an installed
    package: sam build and the local runtime run this with only dropzone importable)."""
    path = root / "spark_app" / "package.py"
    spec = importlib.util.spec_from_file_location("dropzone_build_spark_package", path)
    if spec is None or spec.loader is None or not path.is_file():
        raise AssetError(f"{path}: missing, it builds the Spark job's zip")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def training_tarball(root: Path) -> bytes:
    """``sourcedir.tar.gz`` of training/ (train.py at the top, as ``sagemaker_program`` names it), reproducible."""
    source = root / "training"
    if not (source / "train.py").is_file():
        raise AssetError(f"{source / 'train.py'}: missing, SageMaker runs it")
    files = sorted(p for p in source.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in files:
            info = tarfile.TarInfo(path.relative_to(source).as_posix())
            data = path.read_bytes()
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            tar.addfile(info, io.BytesIO(data))
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", mtime=0) as gz:
        gz.write(raw.getvalue())
    return out.getvalue()


def contract_files(folder: Path) -> list[Path]:
    """Every ``folder/*.yaml``, each parsed with dropzone.contract so a broken contract fails the build."""
    paths = sorted(folder.glob("*.yaml"))
    if not paths:
        raise AssetError(f"{folder}: no *.yaml contracts")
    load_contracts(folder)  # references between datasets are resolved too
    return paths


def build_assets(root: Path, out: Path, contracts: Path | None = None) -> list[str]:
    """Write every asset under ``out`` (replacing it); returns the relative keys written, sorted. ``contracts``:
    the folder of contracts to publish (default ``<root>/contracts``; the local runtime's ``--contracts``)."""
    entry_point = root / "spark_app" / "main.py"
    if not entry_point.is_file():
        raise AssetError(f"{entry_point}: missing, it is the Spark entry point")
    if out.exists():
        shutil.rmtree(out)
    written: dict[str, bytes] = {
        SPARK_ENTRY_POINT: entry_point.read_bytes(),
        SPARK_PY_FILES: spark_zip(root),
        TRAINING_SOURCE: training_tarball(root),
    }
    for path in contract_files(contracts or root / "contracts"):
        written[f"{CONTRACTS_DIR}/{path.name}"] = path.read_bytes()
    for key, data in written.items():
        target = out / key
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    return sorted(written)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, required=True, help="repository root")
    parser.add_argument("--out", type=Path, required=True, help="directory to write the assets into")
    args = parser.parse_args(argv)
    try:
        keys = build_assets(args.root.resolve(), args.out)
    except (AssetError, ValueError) as e:  # ContractError is a ValueError
        print(f"build_assets: error: {e}", file=sys.stderr)
        return 2
    print(f"build_assets: {len(keys)} assets in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
