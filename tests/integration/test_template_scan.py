"""The scanners security reviewers run on template.yaml: sam validate --lint, cfn-lint, checkov.

The tools live in their own venv (.venv-tools, `make tools`); `make test` puts it on PATH.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from dropzone.local.stack import load_template

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"


def tool(name: str) -> str:
    # The pinned tools venv first: another cfn-lint on PATH (e.g. pyenv's) has other rules and runtime dates.
    found = shutil.which(name, path=str(ROOT / ".venv-tools" / "bin")) or shutil.which(name)
    if not found:
        pytest.skip(f"{name} not installed: run `make tools` (make test puts .venv-tools/bin on PATH)")
    return found


def run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SAM_CLI_TELEMETRY": "0", "BC_SKIP_MAPPING": "TRUE"}
    return subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)


def test_sam_validate_lint_passes() -> None:
    result = run(tool("sam"), "validate", "--lint", "--template-file", str(TEMPLATE))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "is a valid SAM Template" in result.stdout + result.stderr


def test_cfn_lint_reports_no_errors_or_warnings() -> None:
    # Exit code is a bit mask: 2 errors, 4 warnings, 8 informational; any finding is printed.
    result = run(tool("cfn-lint"), "--format", "parseable", str(TEMPLATE))
    assert result.stdout.strip() == "", result.stdout
    assert result.returncode == 0, result.stdout + result.stderr


def test_cfn_lint_catches_a_broken_template(tmp_path: Path) -> None:
    """The lint test can fail: a visibility timeout above SQS's maximum is reported."""
    broken = tmp_path / "template.yaml"
    broken.write_text(TEMPLATE.read_text().replace("VisibilityTimeout: 5400", "VisibilityTimeout: 99999", 1))
    result = run(tool("cfn-lint"), "--format", "parseable", str(broken))
    assert result.returncode != 0
    assert "99999 is greater than" in result.stdout, result.stdout


def checkov(path: Path) -> dict[str, object]:
    result = run(
        tool("checkov"), "-f", str(path), "--framework", "cloudformation", "--skip-download", "--output", "json"
    )
    assert result.stdout.strip(), result.stderr[-2000:]
    report = json.loads(result.stdout)
    return report[0] if isinstance(report, list) else report


def test_checkov_finds_no_failed_check() -> None:
    report = checkov(TEMPLATE)
    results = report["results"]
    assert isinstance(results, dict)
    failed = [f"{c['check_id']} {c['resource']}: {c['check_name']}" for c in results["failed_checks"]]
    assert not failed, "\n".join(failed)
    assert report["summary"]["passed"] >= 20  # type: ignore[index]
    assert report["summary"]["parsing_errors"] == 0  # type: ignore[index]


def test_checkov_fails_when_a_protection_is_removed(tmp_path: Path) -> None:
    """The checkov test can fail: without point-in-time recovery the ledger table is reported."""
    broken = tmp_path / "template.yaml"
    broken.write_text(
        TEMPLATE.read_text().replace("PointInTimeRecoveryEnabled: true", "PointInTimeRecoveryEnabled: false")
    )
    failed = {c["check_id"] for c in checkov(broken)["results"]["failed_checks"]}  # type: ignore[index]
    assert "CKV_AWS_28" in failed


def test_every_checkov_skip_has_a_written_reason() -> None:
    skips = 0
    for logical_id, resource in load_template(TEMPLATE)["Resources"].items():
        for skip in resource.get("Metadata", {}).get("checkov", {}).get("skip", []):
            skips += 1
            assert skip["id"].startswith("CKV_"), f"{logical_id}: {skip}"
            assert len(skip.get("comment", "").split()) >= 8, f"{logical_id}: skip {skip['id']} needs a reason"
    assert skips > 0
