"""template.yaml, transformed by samtranslator as `sam deploy` does, deploys into moto's CloudFormation.

Local CodeUri paths are replaced by S3 zips (as `sam package` does). Types moto cannot create are listed in
MOTO_CANNOT_CREATE (removed first, references replaced by fixed values, as the local runtime does) and
MOTO_SKIPS (moto accepts the template but creates nothing for them); docs/deploy.md lists both. The deployed
resources are then checked through the API, and the completion rules are shown to route real events.
"""

from __future__ import annotations

import importlib.util
import io
import json
import shutil
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from moto import mock_aws

from dropzone.local.stack import load_template
from dropzone.training_jobs import training_job_name
from functions.publish_assets import app as publisher
from functions.publish_assets import build_assets

ROOT = Path(__file__).resolve().parents[2]
REGION = "us-east-1"
ACCOUNT = "123456789012"
STACK = "dz-test"
APP_ID = "00fakeapplication"
APP_ARN = f"arn:aws:emr-serverless:{REGION}:{ACCOUNT}:/applications/{APP_ID}"

# Removed before create_stack: moto has no model for them (the local runtime creates the first two via the API;
# the custom resource would invoke a Lambda inside CloudFormation, which needs Docker in moto).
MOTO_CANNOT_CREATE = frozenset(
    {"AWS::EMRServerless::Application", "AWS::SageMaker::ModelPackageGroup", "Custom::PublishAssets"}
)
# Accepted by moto's CloudFormation but not created (policies, alarms, aliases are not modelled by moto 5.2).
MOTO_SKIPS = frozenset(
    {
        "AWS::S3::BucketPolicy",
        "AWS::SQS::QueuePolicy",
        "AWS::SNS::TopicPolicy",
        "AWS::CloudWatch::Alarm",
        "AWS::Lambda::Alias",
    }
)


class _NoManagedPolicies:
    """samtranslator's managed-policy lookup; the template names no managed policy by name."""

    def load(self) -> dict[str, str]:
        return {}


def _zip(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return buffer.getvalue()


def transformed_template(s3: Any) -> tuple[dict[str, Any], dict[str, str]]:
    """sam package + the SAM transform: CodeUri → uploaded zip, then AWS::Serverless::* → CloudFormation."""
    from samtranslator.translator.transform import transform

    sam = load_template(ROOT / "template.yaml")
    parameters = {k: str(v["Default"]) for k, v in sam["Parameters"].items() if "Default" in v}
    s3.create_bucket(Bucket="sam-artifacts")
    for logical_id, resource in sam["Resources"].items():
        if resource["Type"] == "AWS::Serverless::Function":
            code = ROOT / resource["Properties"]["CodeUri"]
            files = {p.name: p.read_text() for p in code.glob("*.py")}
            s3.put_object(Bucket="sam-artifacts", Key=f"{logical_id}.zip", Body=_zip(files))
            resource["Properties"]["CodeUri"] = f"s3://sam-artifacts/{logical_id}.zip"
    return dict(transform(sam, parameters, _NoManagedPolicies())), parameters


def without_unsupported(cfn: dict[str, Any]) -> dict[str, Any]:
    """Drop what moto cannot create and put fixed values where the rest refers to it."""
    removed = {k for k, v in cfn["Resources"].items() if v["Type"] in MOTO_CANNOT_CREATE}
    assert "SparkApplication" in removed
    for k in removed:
        del cfn["Resources"][k]
    text = json.dumps(cfn)
    text = text.replace('{"Fn::GetAtt": ["SparkApplication", "ApplicationId"]}', json.dumps(APP_ID))
    text = text.replace('{"Fn::GetAtt": ["SparkApplication", "Arn"]}', json.dumps(APP_ARN))
    text = text.replace("${SparkApplication.Arn}", APP_ARN)
    for k in removed:
        assert f'"{k}"' not in text, f"{k} is still referenced"
    return dict(json.loads(text))


@pytest.fixture(scope="module")
def stack() -> Iterator[dict[str, Any]]:
    with pytest.MonkeyPatch.context() as mp, mock_aws():
        mp.setenv("AWS_DEFAULT_REGION", REGION)  # samtranslator resolves AWS::Region from the environment
        session = boto3.Session(region_name=REGION)
        cfn, parameters = transformed_template(session.client("s3"))
        template = without_unsupported(cfn)
        cloudformation = session.client("cloudformation")
        cloudformation.create_stack(
            StackName=STACK,
            TemplateBody=json.dumps(template),
            Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
            Capabilities=["CAPABILITY_IAM", "CAPABILITY_AUTO_EXPAND"],
        )
        described = cloudformation.describe_stacks(StackName=STACK)["Stacks"][0]
        resources = {
            r["LogicalResourceId"]: r
            for r in cloudformation.describe_stack_resources(StackName=STACK)["StackResources"]
            if "LogicalResourceId" in r
        }
        yield {"session": session, "template": template, "stack": described, "resources": resources}


def physical(stack: dict[str, Any], logical_id: str) -> str:
    return str(stack["resources"][logical_id]["PhysicalResourceId"])


def test_stack_creates_completely(stack: dict[str, Any]) -> None:
    assert stack["stack"]["StackStatus"] == "CREATE_COMPLETE", stack["stack"].get("StackStatusReason")


def test_only_the_documented_types_are_skipped(stack: dict[str, Any]) -> None:
    # Every condition is an optional feature that is off with the default parameters (no key, e-mail, warm pool).
    expected = {k: v["Type"] for k, v in stack["template"]["Resources"].items() if "Condition" not in v}
    skipped = {t for k, t in expected.items() if k not in stack["resources"]}
    assert skipped <= MOTO_SKIPS, f"moto did not create {sorted(skipped - MOTO_SKIPS)}"
    created_types = {r["ResourceType"] for r in stack["resources"].values()}
    for needed in (
        "AWS::S3::Bucket",
        "AWS::SQS::Queue",
        "AWS::DynamoDB::Table",
        "AWS::Lambda::Function",
        "AWS::Lambda::EventSourceMapping",
        "AWS::Events::Rule",
        "AWS::IAM::Role",
        "AWS::SNS::Topic",
    ):
        assert needed in created_types, needed


def test_data_bucket_table_and_log_groups_are_configured(stack: dict[str, Any]) -> None:
    """What moto applies from the template. Versioning, Block Public Access, PITR and TTL it ignores: checkov
    (CKV_AWS_21, CKV_AWS_53..56, CKV_AWS_28) and test_template_ties hold those."""
    session = stack["session"]
    bucket = physical(stack, "DataBucket")
    assert bucket == f"{STACK}-data-{ACCOUNT}-{REGION}"  # the name the ingest queue policy trusts
    rules = session.client("s3").get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    assert rules[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    table = session.client("dynamodb").describe_table(TableName=physical(stack, "LedgerTable"))["Table"]
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    assert [k["AttributeName"] for k in table["KeySchema"]] == ["pk", "sk"]
    assert table["DeletionProtectionEnabled"] is True
    groups = session.client("logs").describe_log_groups(logGroupNamePrefix=f"/aws/lambda/{STACK}/")["logGroups"]
    assert {g["logGroupName"].rsplit("/", 1)[-1] for g in groups} == {
        "ingest",
        "job-finished",
        "model-trained",
        "reconcile",
        "publish-assets",
    }
    assert {g["retentionInDays"] for g in groups} == {30}


def test_queues_have_their_dead_letter_queues(stack: dict[str, Any]) -> None:
    sqs = stack["session"].client("sqs")
    for source, dlq in (
        ("IngestQueue", "IngestDeadLetterQueue"),
        ("JobEventsQueue", "JobEventsDeadLetterQueue"),
        ("TrainingEventsQueue", "TrainingEventsDeadLetterQueue"),
    ):
        attributes = sqs.get_queue_attributes(QueueUrl=physical(stack, source), AttributeNames=["All"])["Attributes"]
        dead = sqs.get_queue_attributes(QueueUrl=physical(stack, dlq), AttributeNames=["All"])["Attributes"]
        redrive = json.loads(attributes["RedrivePolicy"])
        assert redrive["deadLetterTargetArn"] == dead["QueueArn"]
        assert int(redrive["maxReceiveCount"]) == 5
        assert attributes["SqsManagedSseEnabled"] == dead["SqsManagedSseEnabled"] == "true"
        assert int(dead["MessageRetentionPeriod"]) > int(attributes["MessageRetentionPeriod"])


def test_functions_get_resolved_environments_and_platform(stack: dict[str, Any]) -> None:
    lam = stack["session"].client("lambda")
    bucket = physical(stack, "DataBucket")
    config = lam.get_function_configuration(FunctionName=physical(stack, "IngestFunction"))
    assert config["Runtime"] == "python3.11"  # (moto drops Architectures: arm64 is checked in test_template_ties)
    assert config["Timeout"] == 900
    env = config["Environment"]["Variables"]
    assert env["DATA_BUCKET"] == bucket
    assert env["LEDGER_TABLE"] == physical(stack, "LedgerTable")
    assert env["EMR_APPLICATION_ID"] == APP_ID
    assert env["SPARK_ENTRY_POINT"] == f"s3://{bucket}/assets/spark/main.py"
    assert env["EMR_JOB_ROLE_ARN"].endswith(physical(stack, "EmrJobRole"))
    assert env["POWERTOOLS_SERVICE_NAME"] == "dropzone"
    job = lam.get_function_configuration(FunctionName=physical(stack, "JobFinishedFunction"))["Environment"]
    assert job["Variables"]["TRAINING_SOURCE_URI"] == f"s3://{bucket}/assets/training/sourcedir.tar.gz"


def test_each_queue_feeds_its_function(stack: dict[str, Any]) -> None:
    lam, sqs = stack["session"].client("lambda"), stack["session"].client("sqs")
    mappings = lam.list_event_source_mappings()["EventSourceMappings"]
    by_function = {m["FunctionArn"].rsplit(":", 1)[-1]: m for m in mappings}
    for function, queue in (
        ("IngestFunction", "IngestQueue"),
        ("JobFinishedFunction", "JobEventsQueue"),
        ("ModelTrainedFunction", "TrainingEventsQueue"),
    ):
        arn = sqs.get_queue_attributes(QueueUrl=physical(stack, queue), AttributeNames=["QueueArn"])["Attributes"]
        mapping = by_function[physical(stack, function)]
        assert mapping["EventSourceArn"] == arn["QueueArn"]
        assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
        assert mapping["ScalingConfig"]["MaximumConcurrency"] >= 2


@pytest.fixture
def bus(stack: dict[str, Any]) -> Any:
    """The event bus without the reconciler's schedule rule: AWS never matches a scheduled rule against put
    events, moto does (and then fails on its Lambda target)."""
    events = stack["session"].client("events")
    for rule in events.list_rules()["Rules"]:
        if rule.get("ScheduleExpression"):
            targets = [t["Id"] for t in events.list_targets_by_rule(Rule=rule["Name"])["Targets"]]
            events.remove_targets(Rule=rule["Name"], Ids=targets)
            events.delete_rule(Name=rule["Name"])
    return events


def _receive(stack: dict[str, Any], queue: str) -> list[dict[str, Any]]:
    sqs = stack["session"].client("sqs")
    answer = sqs.receive_message(QueueUrl=physical(stack, queue), MaxNumberOfMessages=10, WaitTimeSeconds=0)
    return [json.loads(m["Body"]) for m in answer.get("Messages", [])]


def test_emr_rule_routes_this_applications_runs_only(stack: dict[str, Any], bus: Any) -> None:
    events = bus

    def put(application_id: str, run: str) -> None:
        detail = {"applicationId": application_id, "jobRunId": run, "state": "SUCCESS", "previousState": "RUNNING"}
        events.put_events(
            Entries=[
                {
                    "Source": "aws.emr-serverless",
                    "DetailType": "EMR Serverless Job Run State Change",
                    "Detail": json.dumps(detail),
                }
            ]
        )

    put(APP_ID, "ours")
    put("someoneelse", "theirs")
    received = _receive(stack, "JobEventsQueue")
    assert [m["detail"]["jobRunId"] for m in received] == ["ours"]


def test_sagemaker_rule_routes_this_stacks_training_jobs_only(stack: dict[str, Any], bus: Any) -> None:
    events = bus
    prefix = stack["template"]["Parameters"]["TrainingJobPrefix"]["Default"]
    ours = training_job_name(prefix, "orders", "00runid")
    for name in (ours, "other-orders-0123456789"):
        events.put_events(
            Entries=[
                {
                    "Source": "aws.sagemaker",
                    "DetailType": "SageMaker Training Job State Change",
                    "Detail": json.dumps({"TrainingJobName": name, "TrainingJobStatus": "Completed"}),
                }
            ]
        )
    received = _receive(stack, "TrainingEventsQueue")
    assert [m["detail"]["TrainingJobName"] for m in received] == [ours]


# --- the asset publisher (the custom resource's handler) against moto's S3 ---------------------------------


@pytest.fixture(scope="module")
def assets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("assets") / "assets"
    build_assets.build_assets(ROOT, out)
    return out


def test_assets_are_built_reproducibly_with_what_each_runtime_needs(assets: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    keys = build_assets.build_assets(ROOT, again)
    assert keys == sorted(p.relative_to(assets).as_posix() for p in assets.rglob("*") if p.is_file())
    assert all((assets / k).read_bytes() == (again / k).read_bytes() for k in keys)
    with zipfile.ZipFile(assets / build_assets.SPARK_PY_FILES) as archive:
        names = set(archive.namelist())
    assert {"spark_app/__init__.py", "dropzone/contract.py", "dropzone/__init__.py"} <= names
    with tarfile.open(assets / build_assets.TRAINING_SOURCE) as tar:
        assert "train.py" in tar.getnames()
    contracts = {k for k in keys if k.startswith("contracts/")}
    assert contracts == {f"contracts/{p.name}" for p in (ROOT / "contracts").glob("*.yaml")}


# What EMR Serverless' Python provides to a job besides the --py-files zip (its image ships Spark and numpy, which
# pyspark.ml imports); anything else the job imports has to be in the zip.
EMR_PROVIDED = ("pyspark", "py4j", "numpy", "numpy.libs")


def test_spark_job_imports_from_the_published_zip_and_the_emr_runtime_alone(assets: Path, tmp_path: Path) -> None:
    """The entry point's imports resolve with only the zip and the EMR-provided packages on sys.path: a module
    the zip lacks (dropzone.rules, PyYAML) fails every Spark run of a real deployment with ModuleNotFoundError."""
    runtime = tmp_path / "emr-site-packages"
    runtime.mkdir()
    for name in EMR_PROVIDED:
        spec = importlib.util.find_spec(name.split(".")[0])
        assert spec is not None, f"{name} is not installed in the dev venv"
        assert spec.origin is not None, f"{name} has no location"
        source = Path(spec.origin).parent.parent / name
        if source.exists():
            (runtime / name).symlink_to(source, target_is_directory=True)
    code = (
        "import sys\n"
        f"sys.path[:0] = [{str(assets / build_assets.SPARK_PY_FILES)!r}, {str(runtime)!r}]\n"
        "import spark_app.job, yaml\n"
        "from dropzone.contract import parse_contract_text\n"
        f"print(parse_contract_text(open({str(ROOT / 'contracts' / 'orders.yaml')!r}, 'rb').read(), 'x').dataset)\n"
    )
    # -I -S: no site-packages, no user site, no PYTHON* variables, no current directory (the repository).
    result = subprocess.run(
        [sys.executable, "-I", "-S", "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "orders"


def test_the_spark_zip_refuses_a_pyyaml_other_than_the_pinned_one(tmp_path: Path) -> None:
    """The zip carries the building Python's PyYAML: another version than requirements/lambda.txt pins would make
    the asset (and the deploy's publish trigger) depend on who builds it."""
    root = tmp_path / "repo"
    for part in ("spark_app", "dropzone", "requirements"):
        (root / part).mkdir(parents=True)
    (root / "spark_app" / "__init__.py").write_text("")
    shutil.copyfile(ROOT / "spark_app" / "package.py", root / "spark_app" / "package.py")  # the zip's builder
    for name in ("__init__.py", "rules.py"):
        (root / "dropzone" / name).write_text("")
    (root / "requirements" / "lambda.txt").write_text("PyYAML==0.0.1  # contracts\n")
    with pytest.raises(build_assets.AssetError, match=r"pins 0\.0\.1"):
        build_assets.spark_zip(root)
    (root / "requirements" / "lambda.txt").write_text(f"PyYAML=={yaml.__version__}\n")
    with zipfile.ZipFile(io.BytesIO(build_assets.spark_zip(root))) as archive:
        assert {"yaml/__init__.py", "dropzone/rules.py"} <= set(archive.namelist())


def test_a_broken_contract_fails_the_asset_build(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    for part in ("spark_app", "dropzone", "training", "contracts"):
        (root / part).mkdir(parents=True)
    (root / "spark_app" / "__init__.py").write_text("")
    (root / "spark_app" / "main.py").write_text("")
    shutil.copyfile(ROOT / "spark_app" / "package.py", root / "spark_app" / "package.py")
    (root / "dropzone" / "__init__.py").write_text("")
    (root / "training" / "train.py").write_text("")
    (root / "contracts" / "orders.yaml").write_text("dataset: orders\ncolumns: 3\n")
    with pytest.raises(ValueError, match=r"orders\.yaml"):
        build_assets.build_assets(root, tmp_path / "out")


def test_publisher_uploads_every_asset_under_the_prefix(assets: Path) -> None:
    with mock_aws():
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket="data")
        event = {"RequestType": "Create", "ResourceProperties": {"Bucket": "data", "Prefix": "assets/"}}
        data = publisher.handle(event, s3, assets)
        keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket="data")["Contents"])
        body = s3.get_object(Bucket="data", Key="assets/spark/main.py")["Body"].read()
    assert keys == sorted(f"assets/{p.relative_to(assets).as_posix()}" for p in assets.rglob("*") if p.is_file())
    assert body == (ROOT / "spark_app" / "main.py").read_bytes()
    assert data["Count"] == str(len(keys))


def test_publisher_keeps_assets_on_delete_and_names_bad_requests(assets: Path) -> None:
    with mock_aws():
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket="data-delete")
        delete = {"RequestType": "Delete", "ResourceProperties": {"Bucket": "data-delete"}}
        assert publisher.handle(delete, s3, assets) == {}
        assert "Contents" not in s3.list_objects_v2(Bucket="data-delete")
        with pytest.raises(publisher.PublishError, match="Prefix"):
            publisher.handle(
                {"RequestType": "Update", "ResourceProperties": {"Bucket": "data", "Prefix": "x"}}, s3, assets
            )
        with pytest.raises(publisher.PublishError, match="no assets"):
            publisher.handle({"RequestType": "Create", "ResourceProperties": {"Bucket": "data"}}, s3, assets / "nope")


def test_publisher_always_answers_cloudformation(monkeypatch: pytest.MonkeyPatch, assets: Path) -> None:
    """A failure is reported as FAILED with its reason (a silent failure would hang the stack for an hour)."""
    answers: list[tuple[str, str]] = []
    monkeypatch.setattr(publisher, "_respond", lambda event, status, reason, data: answers.append((status, reason)))
    event = {"RequestType": "Create", "ResourceProperties": {"Bucket": ""}, "ResponseURL": "https://x"}
    publisher.handler(event, None)
    assert answers[0][0] == "FAILED"
    assert "Bucket is empty" in answers[0][1]
