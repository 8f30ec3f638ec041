"""`sam build` works here (python3.11 on PATH, no Docker) and each bundle carries what its code imports.

Slow (about 20-60 s: arm64 wheels come from pip's cache after the first build). Builds into a temporary
directory so it never disturbs a developer's .aws-sam/.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from functions.publish_assets import build_assets
from tests.integration.test_template_ties import code_dir, code_facts, pipeline_functions

ROOT = Path(__file__).resolve().parents[2]
LAMBDA_UNZIPPED_LIMIT = 250 * 2**20  # AWS Lambda's hard limit for a function's unzipped code
RUNTIME_PROVIDED = {"boto3", "botocore", "s3transfer", "jmespath", "urllib3", "dateutil", "six"}

pytestmark = pytest.mark.slow


def sam() -> str:
    found = shutil.which("sam", path=str(ROOT / ".venv-tools" / "bin")) or shutil.which("sam")
    if not found:
        pytest.skip("sam not installed: run `make tools` (make test puts .venv-tools/bin on PATH)")
    return found


@pytest.fixture(scope="module")
def build_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sam") / "build"
    # The build's python3.11 is this interpreter (the project's .venv), as docs/deploy.md has a user run it.
    path = os.pathsep.join((str(Path(sys.executable).parent), os.environ.get("PATH", "")))
    env = {**os.environ, "SAM_CLI_TELEMETRY": "0", "PATH": path}
    result = subprocess.run(
        [sam(), "build", "--build-dir", str(out), "--parallel"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    assert "Build Succeeded" in result.stdout + result.stderr
    return out


def size(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.rglob("*") if p.is_file())


def misaligned_load_segments(path: Path, page: int = 4096) -> list[str]:
    """PT_LOAD segments the dynamic loader refuses ("ELF load command address/offset not page-aligned"), as
    stripping a library that auditwheel patched produces. Reads the ELF64 program headers directly."""
    with path.open("rb") as f:
        header = f.read(64)
        if header[:4] != b"\x7fELF" or header[4] != 2:
            return []
        (phoff,) = struct.unpack_from("<Q", header, 32)
        phentsize, phnum = struct.unpack_from("<HH", header, 54)
        f.seek(phoff)
        table = f.read(phentsize * phnum)
    bad = []
    for i in range(phnum):
        p_type, _, p_offset, p_vaddr, _, _, _, p_align = struct.unpack_from("<IIQQQQQQ", table, i * phentsize)
        skew = p_vaddr - p_offset
        if p_type == 1 and (skew % page or (p_align > 1 and skew % p_align)):
            bad.append(f"{path.name}: PT_LOAD {i} offset {p_offset:#x} vaddr {p_vaddr:#x} align {p_align:#x}")
    return bad


def third_party(imports: set[str]) -> set[str]:
    """Top-level names of imported modules that are neither stdlib nor our own package."""
    tops = {name.split(".")[0] for name in imports}
    return {n for n in tops if n not in sys.stdlib_module_names and n not in ("dropzone", "functions", "__future__")}


@pytest.mark.parametrize("logical_id", sorted(pipeline_functions()))
def test_bundle_holds_the_handler_the_shared_modules_and_every_import(build_dir: Path, logical_id: str) -> None:
    bundle = build_dir / logical_id
    assert (bundle / "app.py").is_file()
    facts = code_facts(code_dir(logical_id) / "app.py")
    for module in facts.modules:
        relative = module.relative_to(ROOT)
        target = bundle / ("app.py" if relative.parts[0] == "functions" else relative)
        assert target.is_file(), f"{logical_id}: {relative} is imported but not in the bundle"
    for name in sorted(third_party(facts.imports) - RUNTIME_PROVIDED):
        assert (bundle / name).is_dir() or (bundle / f"{name}.py").is_file(), (
            f"{logical_id}: imports {name} but the bundle lacks it (functions/<dir>/requirements.txt or "
            "requirements/lambda.txt)"
        )
    # Wheels are Lambda's platform, not this machine's.
    natives = [p.name for p in bundle.rglob("*.so")]
    assert natives, f"{logical_id}: no compiled extension at all (pydantic_core, yaml expected)"
    assert not [n for n in natives if "x86_64" in n], f"{logical_id}: x86_64 extensions in an arm64 bundle"
    assert any("aarch64" in n for n in natives)
    broken = [b for p in bundle.rglob("*.so*") if p.is_file() for b in misaligned_load_segments(p)]
    assert not broken, f"{logical_id}: libraries the loader would refuse: {broken[:5]}"
    assert (bundle / "__pycache__").is_dir(), "bytecode is compiled in (Lambda's /var/task is read-only)"
    assert not (bundle / "dropzone" / "local").exists(), "the laptop-only runtime is not shipped"
    assert size(bundle) < LAMBDA_UNZIPPED_LIMIT


def test_publisher_bundle_carries_every_asset(build_dir: Path, tmp_path: Path) -> None:
    bundle = build_dir / "PublishAssetsFunction"
    assert (bundle / "app.py").is_file()
    expected = build_assets.build_assets(ROOT, tmp_path / "assets")
    shipped = sorted(p.relative_to(bundle / "assets").as_posix() for p in (bundle / "assets").rglob("*") if p.is_file())
    assert shipped == expected
    for key in expected:  # reproducible archives: the same bytes as a fresh build
        assert (bundle / "assets" / key).read_bytes() == (tmp_path / "assets" / key).read_bytes(), key
    assert size(bundle) < 2**20, "only the handler and the assets (no scratch copy of the repository)"


def test_built_template_points_at_the_bundles(build_dir: Path) -> None:
    from dropzone.local.stack import load_template

    built = load_template(build_dir / "template.yaml")
    for logical_id, resource in built["Resources"].items():
        if resource["Type"] == "AWS::Serverless::Function":
            assert (build_dir / resource["Properties"]["CodeUri"]).resolve() == (build_dir / logical_id).resolve()
