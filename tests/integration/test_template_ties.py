"""Ties between template.yaml and the code it deploys, derived from the code (not from hand-kept lists).

For each function: the Handler resolves to a callable; every setting the code requires is in its environment;
every AWS API call the code can reach is allowed by its role, and the role grants nothing the code does not need
(besides the few actions AWS implies, listed with their reason); event source filters match the code's prefixes,
event sources and names; alarms and the dashboard name metrics the code emits.

The AWS calls are found by static analysis: from functions/<dir>/app.py, every function or method whose name is
referenced by reached code is reached (by name, so over-approximate but not by whole module), and every reached
``x.<operation>(...)`` whose name is an operation of a service the reached code creates a client for is a call.
"""

from __future__ import annotations

import ast
import fnmatch
import importlib
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import botocore.session
import pytest
from botocore import xform_name

from dropzone.contract import load_contracts
from dropzone.local.stack import load_template
from dropzone.settings import Settings
from functions.publish_assets import build_assets

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"

# Actions a role may hold that the code does not name as a call: AWS requires them for a call it does make.
IMPLIED: Mapping[str, tuple[str, ...]] = {
    # Tags passed in the request need the tagging action too.
    "emr-serverless:StartJobRun": ("emr-serverless:TagResource", "iam:PassRole"),
    "sagemaker:CreateTrainingJob": ("sagemaker:AddTags", "iam:PassRole"),
    "sagemaker:CreateModelPackage": ("sagemaker:AddTags",),
    "sagemaker:CreateModelPackageGroup": ("sagemaker:AddTags",),
    # GetObject of a versioned object by VersionId is authorised as GetObjectVersion; a missing key is answered 404
    # (not 403) only to a caller that also holds s3:ListBucket on the bucket (S3 GetObject/HeadObject reference).
    "s3:GetObject": ("s3:GetObjectVersion", "s3:ListBucket"),
}
# Roles whose code takes S3's 404 for a missing key as an answer rather than a failure, with where: they
# need s3:ListBucket on the bucket, unconditioned (GetObject/HeadObject requests carry no s3:prefix).
MISSING_KEY_IS_AN_ANSWER: Mapping[str, str] = {
    "IngestFunction": "ContractStore.get (no contract yet: SKIPPED) and Ingestor._head (object deleted: GONE)",
    # not a function: the Spark job's role (Hadoop FileSystem.exists on S3 is a HEAD first)
    "EmrJobRole": "spark_app.curate.table_exists (curated/<dataset> before its first run) and output paths",
}
# Encryption with the optional customer key (KmsKeyArn): S3 needs these for the caller when the key is set.
KMS_ACTIONS = frozenset({"kms:Decrypt", "kms:GenerateDataKey"})
# boto3 methods that are not service operations, and operations whose IAM action differs from their name.
CALL_ACTIONS: Mapping[tuple[str, str], tuple[str, ...]] = {
    ("s3", "head_object"): ("s3:GetObject",),
    ("s3", "copy_object"): ("s3:GetObject", "s3:PutObject"),
    ("s3", "list_objects_v2"): ("s3:ListBucket",),
    ("s3", "list_objects"): ("s3:ListBucket",),
    ("s3", "head_bucket"): ("s3:ListBucket",),
    ("s3", "upload_file"): ("s3:PutObject",),
    ("s3", "upload_fileobj"): ("s3:PutObject",),
    ("s3", "download_file"): ("s3:GetObject",),
    ("s3", "download_fileobj"): ("s3:GetObject",),
    # SQS authorises its batch operations as the single ones (SendMessage also grants SendMessageBatch).
    ("sqs", "send_message_batch"): ("sqs:SendMessage",),
}
# Actions without resource-level permissions: the only ones that may use Resource "*".
SAGEMAKER_TRUST = "sagemaker.amazonaws.com"
STAR_RESOURCE_ACTIONS = frozenset({"ecr:GetAuthorizationToken", "cloudwatch:PutMetricData", "xray:PutTraceSegments"})


# --- the template ---------------------------------------------------------------------------------------------


@cache
def template() -> dict[str, Any]:
    return load_template(TEMPLATE)


def resources(kind: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in template()["Resources"].items() if v["Type"] == kind}


def functions() -> dict[str, dict[str, Any]]:
    return resources("AWS::Serverless::Function")


def pipeline_functions() -> dict[str, dict[str, Any]]:
    """Functions built from functions/<dir>/app.py with the shared package (all but the asset publisher)."""
    return {k: v for k, v in functions().items() if k != "PublishAssetsFunction"}


def code_dir(logical_id: str) -> Path:
    return ROOT / functions()[logical_id]["Properties"]["CodeUri"]


def handler_name(logical_id: str) -> str:
    props = functions()[logical_id]["Properties"]
    return str(props.get("Handler") or template()["Globals"]["Function"]["Handler"])


def branches(value: Any) -> Iterator[Any]:
    """Both sides of every Fn::If (a statement must be right whichever way the condition goes), no NoValue."""
    if isinstance(value, dict) and "Fn::If" in value:
        for side in value["Fn::If"][1:]:
            yield from branches(side)
    elif value != {"Ref": "AWS::NoValue"}:
        yield value


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def statements(policies: Iterable[Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for policy in policies:
        document = policy.get("PolicyDocument", policy) if isinstance(policy, dict) else None
        if not isinstance(document, dict):
            raise AssertionError(f"only inline policy documents are expected, got {policy!r}")
        for statement in as_list(document["Statement"]):
            found.extend(branches(statement))
    return found


def function_statements(logical_id: str) -> list[dict[str, Any]]:
    return statements(functions()[logical_id]["Properties"].get("Policies", []))


def allowed_actions(stmts: Iterable[Mapping[str, Any]]) -> list[str]:
    return [a for s in stmts if s["Effect"] == "Allow" for a in as_list(s["Action"])]


def is_allowed(action: str, granted: Iterable[str]) -> bool:
    return any(fnmatch.fnmatch(action.lower(), g.lower()) for g in granted)


def all_role_statements() -> dict[str, list[dict[str, Any]]]:
    found = {k: function_statements(k) for k in functions()}
    for logical_id, role in resources("AWS::IAM::Role").items():
        found[logical_id] = statements(role["Properties"].get("Policies", []))
    return found


# --- the code -------------------------------------------------------------------------------------------------


def module_file(name: str) -> Path | None:
    base = ROOT.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imported_modules(nodes: Iterable[ast.AST]) -> set[str]:
    """Dotted names of every module the given code imports (``from a import b`` may name module a.b)."""
    names: set[str] = set()
    for root in nodes:
        for node in ast.walk(root):
            if isinstance(node, ast.Import):
                names |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
    return names


def _own_modules(names: Iterable[str]) -> set[Path]:
    found: set[Path] = set()
    for name in names:
        parts = name.split(".")
        if parts[0] == "dropzone":
            # importing a.b.c runs a/__init__ and a/b/__init__ too
            found |= {f for i in range(1, len(parts) + 1) if (f := module_file(".".join(parts[:i])))}
    return found


def _referenced_names(nodes: Iterable[ast.AST]) -> set[str]:
    names: set[str] = set()
    for root in nodes:
        for node in ast.walk(root):
            if isinstance(node, ast.Name):
                names.add(node.id)
            elif isinstance(node, ast.Attribute):
                names.add(node.attr)
    return names


def _top_level(tree: ast.Module) -> list[ast.AST]:
    """What runs at import that can call something: module statements, decorators, base classes."""
    run: list[ast.AST] = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            run.extend(node.decorator_list)
        elif isinstance(node, ast.ClassDef):
            # The class body's defaults (e.g. dataclass default factories) count when the class is used.
            run.extend(node.decorator_list + node.bases)
        else:
            run.append(node)
    return run


@dataclass
class CodeFacts:
    """What a function's reachable code does: settings it requires, clients, AWS calls, metrics it emits."""

    modules: list[Path]
    imports: set[str] = field(default_factory=set)
    required_settings: set[str] = field(default_factory=set)
    services: set[str] = field(default_factory=set)
    calls: set[tuple[str, str]] = field(default_factory=set)
    metrics: set[str] = field(default_factory=set)
    env_reads: set[str] = field(default_factory=set)


@cache
def service_operations(service: str) -> frozenset[str]:
    model = botocore.session.get_session().get_service_model(service)
    return frozenset(xform_name(op) for op in model.operation_names)


@cache
def iam_prefix(service: str) -> str:
    metadata = botocore.session.get_session().get_service_model(service).metadata
    return str(metadata.get("signingName") or metadata["endpointPrefix"])


def _strings(node: ast.AST) -> set[str]:
    """String constants a metric-name expression can take (literals, dict values, conditional branches)."""
    return {n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, str)}


@cache
def code_facts(entry: Path, handler: str = "handler") -> CodeFacts:
    """Modules are loaded when imported at module level or inside reached code (lazy imports count only then)."""
    trees: dict[Path, ast.Module] = {}
    definitions: dict[str, list[ast.AST]] = {}
    reached: list[ast.AST] = []
    imports: set[str] = set()
    names: set[str] = {handler}  # Lambda calls the handler; nothing in the code names it
    done: set[str] = set()

    def load(path: Path) -> None:
        if path in trees:
            return
        tree = trees[path] = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                if not node.name.startswith("__"):  # dunders run through their class (super().__init__ names all)
                    definitions.setdefault(node.name, []).append(node)
            elif isinstance(node, ast.ClassDef):
                # Using the class runs __init__/__post_init__ and its field defaults.
                body = [
                    n
                    for n in node.body
                    if not isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)
                    or n.name in ("__init__", "__post_init__")
                ]
                definitions.setdefault(node.name, []).extend(body)
        run = _top_level(tree)
        reach(run)
        done.difference_update(definitions)  # names seen before this module defined them get another look

    def reach(nodes: list[ast.AST]) -> None:
        reached.extend(nodes)
        names.update(_referenced_names(nodes))
        modules = imported_modules(nodes)
        imports.update(modules)
        for path in sorted(_own_modules(modules)):
            load(path)

    load(entry)
    while todo := names - done:
        for name in sorted(todo):
            done.add(name)
            for definition in definitions.get(name, []):
                if definition not in reached:
                    reach([definition])
    facts = CodeFacts(modules=sorted(trees), imports=imports)
    for root in reached:
        for node in ast.walk(root):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            callee = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
            args = [a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
            if callee == "client" and args:
                facts.services.add(args[0])
            elif callee == "require":
                facts.required_settings |= {a.upper() for a in args}
            elif callee == "add_metric":
                for kw in node.keywords:
                    if kw.arg == "name":
                        facts.metrics |= _strings(kw.value)
            elif callee in ("getenv",) and args:
                facts.env_reads.add(args[0])
    # A variable name used for the metric (e.g. from a dict) is resolved to the string literals assigned to it.
    for root in reached:
        for node in ast.walk(root):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "add_metric":
                for kw in node.keywords:
                    if kw.arg == "name" and isinstance(kw.value, ast.Name):
                        facts.metrics |= _assigned_strings(root, kw.value.id)
    # Compiled regular expressions have .search/.match too: their calls are not AWS calls.
    patterns = {"re"} | {
        target.id
        for tree in trees.values()
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign)
        and isinstance(node.value, ast.Call)
        and getattr(node.value.func, "attr", "") == "compile"
        for target in node.targets
        if isinstance(target, ast.Name)
    }
    for root in reached:
        for node in ast.walk(root):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                receiver = node.func.value
                if isinstance(receiver, ast.Name) and receiver.id in patterns:
                    continue
                op = node.func.attr
                if op == "get_paginator" and node.args and isinstance(node.args[0], ast.Constant):
                    op = str(node.args[0].value)
                for service in facts.services:
                    if op in service_operations(service) or (service, op) in CALL_ACTIONS:
                        facts.calls.add((service, op))
    return facts


def _assigned_strings(root: ast.AST, name: str) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(root):
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            found |= _strings(node.value)
    return found


def actions_of(call: tuple[str, str]) -> tuple[str, ...]:
    service, op = call
    if call in CALL_ACTIONS:
        return CALL_ACTIONS[call]
    model = botocore.session.get_session().get_service_model(service)
    wire = next(name for name in model.operation_names if xform_name(name) == op)
    return (f"{iam_prefix(service)}:{wire}",)


def needed_actions(logical_id: str) -> set[str]:
    facts = code_facts(code_dir(logical_id) / "app.py")
    return {a for call in facts.calls for a in actions_of(call)}


def entry_points() -> list[str]:
    return [k for k in pipeline_functions() if (code_dir(k) / "app.py").is_file()]


def missing_code() -> list[str]:
    return [k for k in pipeline_functions() if not (code_dir(k) / "app.py").is_file()]


# --- handlers, environments --------------------------------------------------------------------------------


def test_every_function_in_the_template_has_its_code() -> None:
    """GIVEN template.yaml WHEN its functions are listed THEN each CodeUri holds the handler's module."""
    absent = [f"{k}: {code_dir(k)}/app.py" for k in missing_code()]
    assert not absent, f"functions without code: {absent}"


@pytest.mark.parametrize("logical_id", sorted(functions()))
def test_handler_resolves_to_a_callable(logical_id: str, monkeypatch: pytest.MonkeyPatch) -> None:
    module_name, _, attribute = handler_name(logical_id).rpartition(".")
    module_path = code_dir(logical_id) / f"{module_name}.py"
    if not module_path.is_file():
        pytest.fail(f"{logical_id}: Handler {handler_name(logical_id)} has no {module_path}")
    env = functions()[logical_id]["Properties"].get("Environment", {}).get("Variables", {})
    for name in env:  # the values are CloudFormation references; the code only needs them present at import
        monkeypatch.setenv(name, f"test-{name.lower()}")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    dotted = ".".join((*code_dir(logical_id).relative_to(ROOT).parts, module_name))
    module = importlib.import_module(dotted)
    assert callable(getattr(module, attribute, None)), f"{logical_id}: {dotted}.{attribute} is not callable"


@pytest.mark.parametrize("logical_id", sorted(pipeline_functions()))
def test_every_required_setting_is_in_the_function_environment(logical_id: str) -> None:
    if logical_id in missing_code():
        pytest.fail(f"{logical_id}: no code at {code_dir(logical_id)}/app.py")
    facts = code_facts(code_dir(logical_id) / "app.py")
    assert facts.required_settings, f"{logical_id}: found no Settings.require(...) call, the scan is broken"
    env = set(functions()[logical_id]["Properties"]["Environment"]["Variables"])
    missing = sorted(facts.required_settings - env)
    assert not missing, f"{logical_id} requires {missing} but template.yaml does not set them"


def test_every_environment_variable_is_a_setting_or_powertools() -> None:
    """No typo survives: each variable set is a Settings field (or a POWERTOOLS_* one in Globals)."""
    known = {f.upper() for f in Settings.__dataclass_fields__}
    for logical_id, function in pipeline_functions().items():
        env = set(function["Properties"].get("Environment", {}).get("Variables", {}))
        assert env - known == set(), f"{logical_id}: unknown variables {sorted(env - known)}"
    globals_env = set(template()["Globals"]["Function"]["Environment"]["Variables"])
    assert all(v.startswith("POWERTOOLS_") for v in globals_env)


# --- permissions -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("logical_id", sorted(pipeline_functions()))
def test_every_aws_call_is_allowed_by_the_function_role(logical_id: str) -> None:
    if logical_id in missing_code():
        pytest.fail(f"{logical_id}: no code at {code_dir(logical_id)}/app.py")
    needed = needed_actions(logical_id)
    assert needed, f"{logical_id}: found no AWS call, the scan is broken"
    granted = allowed_actions(function_statements(logical_id))
    missing = sorted(a for a in needed if not is_allowed(a, granted))
    assert not missing, f"{logical_id} calls {missing} but its role does not allow them"


@pytest.mark.parametrize("logical_id", sorted(pipeline_functions()))
def test_function_role_grants_nothing_the_code_does_not_need(logical_id: str) -> None:
    if logical_id in missing_code():
        pytest.fail(f"{logical_id}: no code at {code_dir(logical_id)}/app.py")
    needed = needed_actions(logical_id)
    implied = {i for a in needed for i in IMPLIED.get(a, ())}
    granted = set(allowed_actions(function_statements(logical_id)))
    extra = sorted(g for g in granted if g not in needed | implied | KMS_ACTIONS)
    assert not extra, f"{logical_id}'s role allows {extra}, which its code never calls"


@pytest.mark.parametrize("logical_id", sorted(pipeline_functions()))
def test_with_a_kms_key_each_function_can_use_it_for_what_it_does_in_s3(logical_id: str) -> None:
    """With KmsKeyArn set the bucket encrypts with SSE-KMS: PutObject (and CopyObject's target) needs
    kms:GenerateDataKey, GetObject/HeadObject kms:Decrypt, else S3 answers AccessDenied."""
    needed = needed_actions(logical_id)
    kms = {
        a
        for s in function_statements(logical_id)
        if s["Effect"] == "Allow" and s.get("Resource") == {"Ref": "KmsKeyArn"}
        for a in as_list(s["Action"])
    }
    if "s3:PutObject" in needed:
        assert "kms:GenerateDataKey" in kms, f"{logical_id} writes objects but cannot use the bucket's key"
    if "s3:GetObject" in needed:
        assert "kms:Decrypt" in kms, f"{logical_id} reads objects but cannot use the bucket's key"


def test_kept_resources_with_fixed_names_do_not_survive_a_failed_first_deploy() -> None:
    """A resource with a fixed physical name and DeletionPolicy Retain outlives the rollback of the deploy that
    created it, and every retry then fails with "already exists": such resources use RetainExceptOnCreate."""
    named = {"AWS::S3::Bucket": "BucketName", "AWS::SageMaker::ModelPackageGroup": "ModelPackageGroupName"}
    checked = 0
    for logical_id, resource in template()["Resources"].items():
        name_property = named.get(resource["Type"])
        if not name_property or name_property not in resource.get("Properties", {}):
            continue
        checked += 1
        assert resource.get("DeletionPolicy") == "RetainExceptOnCreate", logical_id
    assert checked >= 2


@pytest.mark.parametrize("logical_id", sorted(MISSING_KEY_IS_AN_ANSWER))
def test_functions_that_expect_404_for_missing_keys_hold_list_bucket(logical_id: str) -> None:
    """Without s3:ListBucket, S3 answers a GetObject/HeadObject of a missing key with 403 AccessDenied: the file of
    a dataset without a contract would fail five times and land in the DLQ instead of being SKIPPED, and a dataset's
    first Spark run would fail asking whether its curated table exists."""
    grants = [
        s
        for s in all_role_statements()[logical_id]
        if s["Effect"] == "Allow"
        and "s3:ListBucket" in as_list(s["Action"])
        and {"Fn::GetAtt": ["DataBucket", "Arn"]} in as_list(s["Resource"])
        and "s3:prefix" not in json.dumps(s.get("Condition", {}))
    ]
    assert grants, f"{logical_id} reads 404 as an answer in {MISSING_KEY_IS_AN_ANSWER[logical_id]}"


def test_publish_assets_role_matches_its_calls() -> None:
    facts = code_facts(ROOT / "functions" / "publish_assets" / "app.py")
    # This function creates its client with boto3 directly (no shared package in its bundle).
    tree = ast.parse((ROOT / "functions" / "publish_assets" / "app.py").read_text())
    ops = {n.func.attr for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)}
    calls = {("s3", op) for op in ops if op in service_operations("s3")}
    assert calls == {("s3", "put_object")}, calls
    granted = set(allowed_actions(function_statements("PublishAssetsFunction")))
    assert granted - KMS_ACTIONS == {"s3:PutObject"}
    assert facts.modules  # the scan read the module


def test_no_action_wildcards_and_star_resources_only_where_unavoidable() -> None:
    for owner, stmts in all_role_statements().items():
        for s in stmts:
            actions = as_list(s["Action"])
            assert not any("*" in a for a in actions), f"{owner}: wildcard action in {s.get('Sid')}"
            if "*" in as_list(s["Resource"]):
                assert set(actions) <= STAR_RESOURCE_ACTIONS, f"{owner}: Resource '*' for {actions}"


def test_pass_role_only_for_the_two_service_roles_and_only_to_their_service() -> None:
    services = {"EmrJobRole": "emr-serverless.amazonaws.com", "SageMakerRole": "sagemaker.amazonaws.com"}
    seen = 0
    for owner, stmts in all_role_statements().items():
        for s in stmts:
            if "iam:PassRole" not in as_list(s["Action"]):
                continue
            seen += 1
            roles = [r["Fn::GetAtt"][0] for r in as_list(s["Resource"])]
            assert set(roles) <= set(services), f"{owner}: PassRole on {roles}"
            passed_to = as_list(s["Condition"]["StringEquals"]["iam:PassedToService"])
            assert set(passed_to) == {services[r] for r in roles}, f"{owner}: PassedToService {passed_to}"
    assert seen >= 2


# --- event sources and names -----------------------------------------------------------------------------


def test_bucket_notification_matches_the_prefix_ingest_parses_and_outputs_never_match_it() -> None:
    from dropzone import ingest

    (bucket,) = resources("AWS::S3::Bucket").values()
    (queue_config,) = bucket["Properties"]["NotificationConfiguration"]["QueueConfigurations"]
    (rule,) = queue_config["Filter"]["S3Key"]["Rules"]
    assert rule == {"Name": "prefix", "Value": ingest.INCOMING}
    assert queue_config["Queue"] == {"Fn::GetAtt": ["IngestQueue", "Arn"]}
    for contract in load_contracts(ROOT / "contracts").values():
        assert contract.prefix.startswith(rule["Value"])
    # What the pipeline writes must never trigger ingest again (no recursion).
    outputs = [ingest.report_key("orders", "a.csv", "v1"), ingest.quarantine_key("orders", "a.csv")]
    assert not any(key.startswith(rule["Value"]) for key in outputs), outputs


def test_completion_rules_match_the_events_the_functions_accept() -> None:
    from dropzone import runs
    from dropzone.training_jobs import training_job_name

    rules = resources("AWS::Events::Rule")
    emr = rules["JobStateChangeRule"]["Properties"]["EventPattern"]
    assert emr["source"] == [runs.EMR_SOURCE]
    assert emr["detail-type"] == [runs.EMR_DETAIL_TYPE]
    assert emr["detail"]["applicationId"] == [{"Fn::GetAtt": ["SparkApplication", "ApplicationId"]}]
    # The rules deliver exactly the states the functions act on: a state the rule drops would be work never
    # done, a state the function ignores would be an invocation for nothing.
    assert set(emr["detail"]["state"]) == runs.EMR_TERMINAL
    sagemaker = rules["TrainingStateChangeRule"]["Properties"]["EventPattern"]
    assert sagemaker["source"] == [runs.SAGEMAKER_SOURCE]
    assert sagemaker["detail-type"] == [runs.SAGEMAKER_DETAIL_TYPE]
    (prefix_filter,) = sagemaker["detail"]["TrainingJobName"]
    assert prefix_filter == {"prefix": {"Fn::Sub": "${TrainingJobPrefix}-"}}
    assert set(sagemaker["detail"]["TrainingJobStatus"]) == runs.TRAINING_TERMINAL
    # The names the code gives its jobs carry that prefix, for the template's default and the dev/prod ones.
    for prefix in (template()["Parameters"]["TrainingJobPrefix"]["Default"], "dzdev", "dzprod"):
        assert training_job_name(prefix, "orders", "00f1abc2de3").startswith(f"{prefix}-")
    # Each rule delivers to the queue its function reads.
    events = {k: v["Properties"]["Events"] for k, v in pipeline_functions().items()}
    assert (
        rules["JobStateChangeRule"]["Properties"]["Targets"][0]["Arn"]["Fn::GetAtt"][0]
        == (events["JobFinishedFunction"]["JobEvents"]["Properties"]["Queue"]["Fn::GetAtt"][0])
    )
    assert (
        rules["TrainingStateChangeRule"]["Properties"]["Targets"][0]["Arn"]["Fn::GetAtt"][0]
        == (events["ModelTrainedFunction"]["TrainingEvents"]["Properties"]["Queue"]["Fn::GetAtt"][0])
    )


def test_sqs_event_sources_report_partial_failures_and_queues_outlast_the_function() -> None:
    timeout_default = template()["Globals"]["Function"]["Timeout"]
    queues = resources("AWS::SQS::Queue")
    for logical_id, function in pipeline_functions().items():
        for event in function["Properties"]["Events"].values():
            if event["Type"] != "SQS":
                continue
            props = event["Properties"]
            assert props["FunctionResponseTypes"] == ["ReportBatchItemFailures"], logical_id
            assert "MaximumConcurrency" in props["ScalingConfig"], logical_id
            queue = queues[props["Queue"]["Fn::GetAtt"][0]]["Properties"]
            timeout = function["Properties"].get("Timeout", timeout_default)
            assert queue["VisibilityTimeout"] >= 6 * timeout, f"{logical_id}: visibility < 6 x {timeout} s"
            dlq = queues[queue["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0]]["Properties"]
            assert dlq["MessageRetentionPeriod"] > queue["MessageRetentionPeriod"], logical_id


def test_asset_locations_match_what_the_publisher_writes() -> None:
    """SPARK_ENTRY_POINT, SPARK_PY_FILES, TRAINING_SOURCE_URI and CONTRACTS_PREFIX name published keys."""
    (custom,) = resources("Custom::PublishAssets").values()
    prefix = custom["Properties"]["Prefix"]
    expected = {
        "SPARK_ENTRY_POINT": f"s3://${{DataBucket}}/{prefix}{build_assets.SPARK_ENTRY_POINT}",
        "SPARK_PY_FILES": f"s3://${{DataBucket}}/{prefix}{build_assets.SPARK_PY_FILES}",
        "TRAINING_SOURCE_URI": f"s3://${{DataBucket}}/{prefix}{build_assets.TRAINING_SOURCE}",
    }
    for logical_id, function in pipeline_functions().items():
        env = function["Properties"]["Environment"]["Variables"]
        for name, uri in expected.items():
            if name in env:
                assert env[name] == {"Fn::Sub": uri}, f"{logical_id}: {name}"
        assert env["CONTRACTS_PREFIX"] == f"{prefix}{build_assets.CONTRACTS_DIR}/" == Settings().contracts_prefix


def test_every_trainable_dataset_has_its_model_package_group() -> None:
    from dropzone.training_jobs import model_package_group_name

    groups = {
        v["Properties"]["ModelPackageGroupName"]["Fn::Sub"]
        for v in resources("AWS::SageMaker::ModelPackageGroup").values()
    }
    trainable = [c.dataset for c in load_contracts(ROOT / "contracts").values() if c.training is not None]
    assert trainable, "no contract has a training section"
    for dataset in trainable:
        name = model_package_group_name("${ModelPackageGroupPrefix}", dataset)
        assert f"${{ModelPackageGroupPrefix}}-{dataset}" in groups, f"no Model Package Group for {dataset} ({name})"


# --- metrics ----------------------------------------------------------------------------------------------


def _metric_names_in_template() -> set[str]:
    names: set[str] = set()
    for alarm in resources("AWS::CloudWatch::Alarm").values():
        props = alarm["Properties"]
        if props.get("Namespace") == "dropzone":
            names.add(props["MetricName"])
        for query in props.get("Metrics", []):
            names |= set(re.findall(r"\((\w+)\)", str(query.get("Expression", ""))))
    body = resources("AWS::CloudWatch::Dashboard")["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    searches = re.findall(r'SEARCH\(\'\{([^,}]+)[^}]*\} MetricName=\\"(\w+)\\"', body)
    assert searches, "the dashboard has no SEARCH expression (or this pattern no longer reads them)"
    names |= {name for namespace, name in searches if namespace == "dropzone"}
    names |= set(re.findall(r'\["dropzone", "(\w+)"', body))
    return names


def test_alarms_and_dashboard_name_metrics_the_code_emits() -> None:
    emitted: set[str] = set()
    for logical_id in entry_points():
        emitted |= code_facts(code_dir(logical_id) / "app.py").metrics
    # Names from a units table (ingest emits every key of it).
    ingest_app = (ROOT / "functions" / "ingest" / "app.py").read_text()
    emitted |= set(re.findall(r'"(\w+)": MetricUnit\.', ingest_app))
    used = _metric_names_in_template()
    assert used, "the template names no custom metric"
    unknown = sorted(used - emitted)
    assert not unknown, f"alarms/dashboard use metrics no function emits: {unknown} (emitted: {sorted(emitted)})"


def test_dashboard_model_metrics_are_ones_the_training_job_defines() -> None:
    from dropzone.training_jobs import METRIC_DEFINITIONS

    body = resources("AWS::CloudWatch::Dashboard")["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    used = set(re.findall(r'/aws/sagemaker/TrainingJobs,Host\} MetricName=\\?"([\w:]+)', body))
    assert used, "the dashboard shows no model metric"
    assert used <= {m["Name"] for m in METRIC_DEFINITIONS}


def test_dashboard_body_is_json_once_substituted() -> None:
    body = resources("AWS::CloudWatch::Dashboard")["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    widgets = json.loads(re.sub(r"\$\{[^}]+\}", "x", body))["widgets"]
    assert len(widgets) >= 5


# --- samconfig.toml -----------------------------------------------------------------------------------------


def _overrides(text: str) -> dict[str, str]:
    import shlex

    return dict(item.split("=", 1) for item in shlex.split(text))


@pytest.mark.parametrize("env", ["default", "dev", "prod"])
def test_samconfig_environment_deploys_with_valid_parameters(env: str) -> None:
    """Each environment names its stack, capabilities, changeset confirmation, resolve_s3, and only overrides
    parameters the template has, with values the template accepts."""
    import tomllib

    config = tomllib.loads((ROOT / "samconfig.toml").read_text())[env]
    stack_name = config["global"]["parameters"]["stack_name"]
    assert re.fullmatch(r"[a-z][a-z0-9-]{0,40}", stack_name), "lower case: the bucket name is derived from it"
    deploy = config["deploy"]["parameters"]
    assert "CAPABILITY_IAM" in deploy["capabilities"].split()
    assert isinstance(deploy["confirm_changeset"], bool)
    assert deploy["resolve_s3"] is True
    parameters = template()["Parameters"]
    for name, value in _overrides(deploy.get("parameter_overrides", "")).items():
        assert name in parameters, f"[{env}] overrides unknown parameter {name}"
        spec = parameters[name]
        if "AllowedValues" in spec:
            assert value in {str(v) for v in spec["AllowedValues"]}, f"[{env}] {name}={value}"
        if "AllowedPattern" in spec:
            assert re.fullmatch(spec["AllowedPattern"], value), f"[{env}] {name}={value}"
        if spec["Type"] == "Number":
            assert spec.get("MinValue", float("-inf")) <= float(value) <= spec.get("MaxValue", float("inf")), name


def test_sagemaker_role_can_pull_the_image_the_training_request_names() -> None:
    from dropzone.training_jobs import xgboost_image_uri

    repository = xgboost_image_uri("us-east-1").split("/", 1)[1].split(":")[0]
    role = resources("AWS::IAM::Role")["SageMakerRole"]
    pulls = [s for s in statements(role["Properties"]["Policies"]) if "ecr:BatchGetImage" in as_list(s["Action"])]
    assert len(pulls) == 1
    assert pulls[0]["Resource"]["Fn::Sub"].endswith(f":repository/{repository}")
    assert SAGEMAKER_TRUST in json.dumps(role["Properties"]["AssumeRolePolicyDocument"])


def test_pre_initialized_workers_are_the_size_each_run_asks_for() -> None:
    """EMR Serverless gives a run its warm workers only when the run's driver and executors fit them: warm workers
    smaller than the job's Spark sizing are billed while the application is up and never used."""
    from dropzone.batching import spark_submit_parameters
    from dropzone.local.emr import sizing

    (app,) = resources("AWS::EMRServerless::Application").values()
    initial = app["Properties"]["InitialCapacity"]["Fn::If"]
    assert initial[0] == "HasPreInitializedCapacity"
    warm = {entry["Key"]: entry["Value"]["WorkerConfiguration"] for entry in initial[1]}
    # the sizing of a small batch and of one as large as the application allows: the worker size is the same
    for batch_bytes in (1, 50 * 2**30):
        words = spark_submit_parameters(batch_bytes, 64, None).split()
        conf = dict(w.split("=", 1) for w in words if "=" in w)
        asked = sizing(conf)
        assert warm["Driver"] == {"Cpu": f"{asked.driver_vcpu:g} vCPU", "Memory": f"{asked.driver_gb:g} GB"}
        assert warm["Executor"] == {"Cpu": f"{asked.executor_vcpu:g} vCPU", "Memory": f"{asked.executor_gb:g} GB"}
