"""SECURITY.md, generated: scanner results on template.yaml and the IAM actions of every role, read from the template.

    .venv/bin/python benchmarks/security.py            # rewrites SECURITY.md (needs `make tools` for the scanners)
    .venv/bin/python benchmarks/security.py --check    # exit 1 when SECURITY.md is not what the template gives

Roles are read from the template after the SAM transform (the same samtranslator `sam deploy` runs), so the
roles SAM generates for functions (``<Function>Role``) are listed with exactly the statements they will have.
The scanners (sam validate --lint, cfn-lint, checkov) run from the pinned tools venv (.venv-tools); checkov's
skipped checks are listed with the reason written next to them in the template's Metadata.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dropzone.local.stack import load_template, transform

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "template.yaml"
SECURITY = ROOT / "SECURITY.md"
TOOLS = ROOT / ".venv-tools" / "bin"


def _tool(name: str) -> str | None:
    return shutil.which(name, path=str(TOOLS)) or shutil.which(name)


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SAM_CLI_TELEMETRY": "0", "BC_SKIP_MAPPING": "TRUE"}
    return subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False)


def _version(tool: str, *args: str) -> str:
    answer = _run(tool, *args)
    text = (answer.stdout or answer.stderr).strip().splitlines()
    return text[0] if text else "?"


# ---- IAM ---------------------------------------------------------------------------------------------------


def render(value: Any) -> str:
    """A template value in short form: intrinsics as !Ref/!GetAtt/!Sub, lists joined."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return ", ".join(render(v) for v in value)
    if isinstance(value, dict) and len(value) == 1:
        ((key, inner),) = value.items()
        if key == "Ref":
            return f"!Ref {inner}"
        if key == "Fn::GetAtt":
            return "!GetAtt " + (".".join(inner) if isinstance(inner, list) else str(inner))
        if key == "Fn::Sub":
            return "!Sub " + (inner[0] if isinstance(inner, list) else str(inner))
        if key == "Fn::If":
            return f"!If [{inner[0]}, {render(inner[1])}, {render(inner[2])}]"
        if key == "Fn::Join":
            return "".join(render(v) for v in inner[1])
        return f"{key.replace('Fn::', '!')} {json.dumps(inner)}"
    return json.dumps(value)


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _principals(role: dict[str, Any]) -> str:
    document = role["Properties"].get("AssumeRolePolicyDocument", {})
    found = []
    for statement in _as_list(document.get("Statement", [])):
        for kind, who in (statement.get("Principal") or {}).items():
            found += [f"{kind}: {render(w)}" for w in _as_list(who)]
    return ", ".join(found) or "-"


def _statements(role: dict[str, Any]) -> Iterable[tuple[str, dict[str, Any]]]:
    for policy in role["Properties"].get("Policies", []) or []:
        if not isinstance(policy, dict):  # e.g. an !If dropping the policy
            continue
        name = render(policy.get("PolicyName", "?"))
        for statement in _as_list(policy.get("PolicyDocument", {}).get("Statement", [])):
            if isinstance(statement, dict) and len(statement) == 1 and "Fn::If" in statement:
                condition, yes, _ = statement["Fn::If"]
                if isinstance(yes, dict):
                    yield f"{name} (if {condition})", yes
                continue
            if isinstance(statement, dict):
                yield name, statement


def iam_section(cfn: dict[str, Any]) -> list[str]:
    resources = cfn["Resources"]
    roles = {k: v for k, v in resources.items() if v.get("Type") == "AWS::IAM::Role"}
    users: dict[str, list[str]] = {}  # role → resources that run as it (their Role property names it)
    passers: dict[str, list[str]] = {}  # role → roles allowed to pass it (iam:PassRole on its ARN)
    for logical_id, resource in resources.items():
        role_ref = json.dumps(resource.get("Properties", {}).get("Role", ""))
        for role in roles:
            if f'"{role}"' in role_ref:
                users.setdefault(role, []).append(logical_id)
    for role_id, role in roles.items():
        for _, statement in _statements(role):
            if "iam:PassRole" in _as_list(statement.get("Action", [])):
                for target in roles:
                    if f'"{target}"' in json.dumps(statement.get("Resource")):
                        passers.setdefault(target, []).append(role_id)
    out = [
        "## IAM: actions per role",
        "",
        "From template.yaml after the SAM transform. `*` in Resource only where the service has no resource-level",
        "permissions (noted in the template next to the statement).",
        "",
    ]
    total = 0
    for role_id in sorted(roles):
        role = roles[role_id]
        managed = [render(m) for m in role["Properties"].get("ManagedPolicyArns", []) or []]
        out.append(f"### {role_id}")
        out.append("")
        out.append(f"- assumed by: {_principals(role)}")
        if users.get(role_id):
            out.append(f"- used by: {', '.join(sorted(users[role_id]))}")
        if passers.get(role_id):
            out.append(f"- passed (iam:PassRole) by: {', '.join(sorted(passers[role_id]))}")
        if managed:
            out.append(f"- managed policies: {', '.join(managed)}")
        out.append("")
        out.append("| policy | effect | actions | resources | condition |")
        out.append("| --- | --- | --- | --- | --- |")
        for policy, statement in _statements(role):
            actions = sorted(render(a) for a in _as_list(statement.get("Action", [])))
            total += len(actions)
            resources_text = "<br>".join(render(r) for r in _as_list(statement.get("Resource", [])))
            condition = json.dumps(statement["Condition"]) if statement.get("Condition") else ""
            out.append(
                f"| {policy} | {statement.get('Effect', '?')} | {', '.join(f'`{a}`' for a in actions)} "
                f"| {resources_text.replace('|', '&#124;')} | {condition.replace('|', '&#124;')} |"
            )
        out.append("")
    out.insert(4, f"{len(roles)} roles, {total} allowed actions in inline policies.")
    return out


# ---- scanners ----------------------------------------------------------------------------------------------


def scanners_section() -> tuple[list[str], bool]:
    """The three scanners' verdicts, checkov's skipped checks with reasons; ok is False on any finding."""
    out = ["## Scanners on template.yaml", ""]
    ok = True
    sam, cfn_lint, checkov = _tool("sam"), _tool("cfn-lint"), _tool("checkov")
    if not (sam and cfn_lint and checkov):
        missing = [n for n, t in (("sam", sam), ("cfn-lint", cfn_lint), ("checkov", checkov)) if not t]
        out.append(f"Not run: {', '.join(missing)} not installed (`make tools`).")
        return out, False
    rows = ["| scanner | version | result |", "| --- | --- | --- |"]
    answer = _run(sam, "validate", "--lint", "--template-file", str(TEMPLATE))
    valid = answer.returncode == 0
    ok &= valid
    rows.append(
        f"| sam validate --lint | {_version(sam, '--version')} | "
        f"{'valid, no lint findings' if valid else 'FAILED: ' + (answer.stdout + answer.stderr)[-300:]} |"
    )
    answer = _run(cfn_lint, "--format", "parseable", str(TEMPLATE))
    findings = [line for line in answer.stdout.splitlines() if line.strip()]
    ok &= not findings and answer.returncode == 0
    rows.append(f"| cfn-lint | {_version(cfn_lint, '--version')} | {len(findings)} findings (errors, warnings, info) |")
    answer = _run(checkov, "-f", str(TEMPLATE), "--framework", "cloudformation", "--skip-download", "--output", "json")
    report = json.loads(answer.stdout)
    report = report[0] if isinstance(report, list) else report
    summary, results = report["summary"], report["results"]
    ok &= summary["failed"] == 0 and summary["parsing_errors"] == 0
    rows.append(
        f"| checkov (cloudformation) | {_version(checkov, '--version')} | {summary['passed']} passed, "
        f"{summary['failed']} failed, {summary['skipped']} skipped, {summary['parsing_errors']} parsing errors |"
    )
    out += rows
    out.append("")
    for check in results.get("failed_checks", []):
        out.append(f"- FAILED {check['check_id']} {check['resource']}: {check['check_name']}")
    out += [
        "### Skipped checks and why",
        "",
        "Each skip is written in the resource's `Metadata.checkov.skip` with its reason (a test requires one).",
        "",
        "| check | resource | what it asks | why it is skipped |",
        "| --- | --- | --- | --- |",
    ]
    written = {
        (logical_id, skip["id"]): str(skip.get("comment", ""))
        for logical_id, resource in load_template(TEMPLATE)["Resources"].items()
        for skip in resource.get("Metadata", {}).get("checkov", {}).get("skip", [])
    }
    for check in sorted(results.get("skipped_checks", []), key=lambda c: (c["check_id"], c["resource"])):
        logical_id = str(check["resource"]).rsplit(".", 1)[-1]
        reason = written.get((logical_id, check["check_id"])) or str(check.get("suppress_comment") or "NO REASON")
        reason = reason.replace("|", "&#124;")
        out.append(f"| {check['check_id']} | {check['resource']} | {check['check_name']} | {reason} |")
    out.append("")
    return out, ok


def build() -> tuple[str, bool]:
    sam = load_template(TEMPLATE)
    for resource in sam["Resources"].values():  # as `sam package` would: code locations are S3 URIs
        if resource.get("Type") == "AWS::Serverless::Function":
            resource["Properties"]["CodeUri"] = "s3://packaged/code.zip"
    # samtranslator asks boto3 for a region (for ARNs it writes itself): any region of the aws partition will do.
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    cfn = transform(sam, {})
    scanners, ok = scanners_section()
    header = [
        "# Security",
        "",
        "Generated by `benchmarks/security.py` (run by `make bench`) from template.yaml; do not edit by hand.",
        f"Generated {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')} on {platform.machine()}, "
        f"Python {platform.python_version()}.",
        "",
        "Report a vulnerability privately to the maintainers (GitHub security advisory), not in a public issue.",
        "",
    ]
    return "\n".join([*header, *scanners, *iam_section(cfn)]).rstrip() + "\n", ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="compare with SECURITY.md (dates ignored)")
    args = parser.parse_args()
    text, ok = build()
    if args.check:

        def body(t: str) -> list[str]:
            return [line for line in t.splitlines() if not line.startswith("Generated ")]

        same = SECURITY.exists() and body(SECURITY.read_text()) == body(text)
        print(
            "SECURITY.md is current" if same else "SECURITY.md differs from what template.yaml gives", file=sys.stderr
        )
        return 0 if same else 1
    SECURITY.write_text(text)
    print(f"wrote {SECURITY.relative_to(ROOT)} (scanners {'clean' if ok else 'NOT clean'})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
