"""Build the EMR Serverless artefacts: ``<out>/main.py`` (entryPoint) and ``<out>/dropzone.zip`` (``--py-files``).

The zip holds the ``dropzone`` and ``spark_app`` packages plus the pure-Python part of PyYAML (EMR's Python has
no PyYAML; without its C extension PyYAML falls back to pure Python). Entries have fixed timestamps and a fixed
order, so the same sources give a byte-identical zip.
"""

from __future__ import annotations

import argparse
import io
import shutil
import sys
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import yaml

_FIXED_TIME = (2020, 1, 1, 0, 0, 0)
ROOT = Path(__file__).resolve().parents[1]  # the repository this module is in


def _sources(package_dir: Path, arcname: str) -> Iterator[tuple[Path, str]]:
    for path in sorted(package_dir.rglob("*")):
        if path.is_file() and path.suffix in (".py", ".typed") and "__pycache__" not in path.parts:
            yield path, f"{arcname}/{path.relative_to(package_dir).as_posix()}"


def zip_bytes(root: Path) -> bytes:
    """The ``--py-files`` zip of the repository at ``root``: its ``dropzone`` and ``spark_app`` packages and the
    installed PyYAML's Python files. The one builder of this zip: `make package-spark` writes it, the deploy's
    asset publisher (functions/publish_assets/build_assets.py) publishes it, so what runs on EMR is what the
    spark-submit test ran."""
    packages = [
        (root / "dropzone", "dropzone"),
        (root / "spark_app", "spark_app"),
        (Path(yaml.__file__).parent, "yaml"),
    ]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for package_dir, arcname in packages:
            for path, name in _sources(package_dir, arcname):
                info = zipfile.ZipInfo(name, date_time=_FIXED_TIME)
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = 0o644 << 16
                z.writestr(info, path.read_bytes())
    return buffer.getvalue()


def build(out_dir: str | Path, root: Path = ROOT) -> tuple[Path, Path]:
    """Write main.py and dropzone.zip into ``out_dir``; returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    main = out / "main.py"
    shutil.copyfile(root / "spark_app" / "main.py", main)
    archive = out / "dropzone.zip"
    archive.write_bytes(zip_bytes(root))
    return main, archive


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out_dir", nargs="?", default="build/spark")
    args = p.parse_args(argv)
    for path in build(args.out_dir):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
