"""Deploy template.yaml into the embedded API exactly as `sam package` + `sam deploy` would, and read the wiring back.

The functions' code is zipped and uploaded (CodeUri → s3://), the template is transformed with samtranslator
and created with CloudFormation. What moto's CloudFormation skips is created through the API from the
template's own properties (EMR Serverless applications, Model Package Groups, the S3 bucket notification) and
references to it are substituted before the stack is created. Everything the runtime needs afterwards — queue
URLs, batch sizes, environments, schedules — is read from the deployed stack, never written a second time.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from dropzone.local.server import EmbeddedAws

ARTIFACTS_BUCKET = "dropzone-local-artifacts"  # what `sam deploy --resolve-s3` creates in a real account
# moto validates release labels against the emr-x.y.z pattern only; the application is created with this one
# and its record then carries the template's real label (emr-spark-8.1.0).
_MOTO_ACCEPTED_LABEL = "emr-7.0.0"


class StackError(RuntimeError):
    """The template cannot be deployed into the embedded API: says which resource and why."""


# --- CloudFormation YAML (short-form intrinsics) ------------------------------------------------------------


class _CfnLoader(yaml.SafeLoader):
    """YAML loader that turns `!Ref X` into `{"Ref": "X"}` and `!Sub ...` into `{"Fn::Sub": ...}`."""


def _construct(tag: str) -> Callable[[yaml.SafeLoader, yaml.Node], Any]:
    key = "Ref" if tag == "Ref" else "Condition" if tag == "Condition" else f"Fn::{tag}"

    def build(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
        if isinstance(node, yaml.ScalarNode):
            value: Any = loader.construct_scalar(node)
            if tag == "GetAtt":
                value = str(value).split(".", 1)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
        return {key: value}

    return build


for _tag in (
    "Ref",
    "Condition",
    "GetAtt",
    "Sub",
    "Join",
    "Select",
    "Split",
    "If",
    "Equals",
    "Not",
    "And",
    "Or",
    "FindInMap",
    "GetAZs",
    "ImportValue",
    "Base64",
    "Cidr",
    "Length",
    "ToJsonString",
):
    _CfnLoader.add_constructor(f"!{_tag}", _construct(_tag))


def load_template(path: Path) -> dict[str, Any]:
    """Read a SAM/CloudFormation template (YAML with short-form intrinsics, or JSON)."""
    try:
        document = yaml.load(path.read_text(), Loader=_CfnLoader)  # noqa: S506 - SafeLoader subclass
    except (OSError, yaml.YAMLError) as e:
        raise StackError(f"{path}: cannot be read as a template: {e}") from None
    if not isinstance(document, dict) or not isinstance(document.get("Resources"), dict):
        raise StackError(f"{path}: is not a template (no Resources mapping)")
    return document


# --- what the runtime reads back ----------------------------------------------------------------------------


@dataclass(frozen=True)
class FunctionSpec:
    """A deployed Lambda function and where its code lives in this checkout."""

    logical_id: str
    name: str
    arn: str
    code_dir: Path
    handler: str
    environment: Mapping[str, str]
    timeout: int
    memory_mb: int


@dataclass(frozen=True)
class QueueMapping:
    """A deployed SQS event source mapping."""

    uuid: str
    function: str  # logical id
    queue_arn: str
    queue_url: str
    batch_size: int
    report_batch_item_failures: bool
    enabled: bool


@dataclass(frozen=True)
class ScheduleSpec:
    """A schedule that invokes a function (EventBridge rule or Scheduler schedule)."""

    name: str
    expression: str
    function: str  # logical id
    input: str | None


@dataclass(frozen=True)
class CustomResource:
    """A custom resource the runtime serves itself (CloudFormation in moto cannot invoke its function)."""

    logical_id: str
    type: str
    function: str | None  # logical id of the function behind the ServiceToken
    properties: dict[str, Any]  # as in the template; resolve with Stack.resolve


@dataclass
class Stack:
    name: str
    template: dict[str, Any]  # the transformed template as deployed
    resources: dict[str, tuple[str, str]]  # logical id → (type, physical id)
    outputs: dict[str, str]
    functions: dict[str, FunctionSpec] = field(default_factory=dict)
    mappings: list[QueueMapping] = field(default_factory=list)
    schedules: list[ScheduleSpec] = field(default_factory=list)
    emr_applications: dict[str, str] = field(default_factory=dict)  # logical id → application id
    model_package_groups: dict[str, str] = field(default_factory=dict)  # logical id → name
    custom_resources: list[CustomResource] = field(default_factory=list)
    refs: dict[str, str] = field(default_factory=dict)
    attrs: dict[tuple[str, str], str] = field(default_factory=dict)

    def resolve(self, value: Any) -> Any:
        """Resolve Ref / GetAtt / Sub / Join in ``value`` against the deployed resources."""
        return _resolve(value, self.refs, self.attrs)

    def physical(self, resource_type: str) -> list[str]:
        return [p for t, p in self.resources.values() if t == resource_type]

    def setting(self, variable: str) -> str:
        """The value of an environment variable shared by the functions (e.g. DATA_BUCKET), or a clear error."""
        values = {f.environment[variable] for f in self.functions.values() if variable in f.environment}
        if len(values) != 1:
            found = ", ".join(sorted(values)) or "no function"
            raise StackError(f"expected one value of {variable} across the stack's functions, found: {found}")
        return values.pop()


# --- deploy -------------------------------------------------------------------------------------------------


def _zip_dir(directory: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(directory.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                archive.write(path, path.relative_to(directory).as_posix())
    return buffer.getvalue()


def package(aws: EmbeddedAws, sam: dict[str, Any], base_dir: Path) -> dict[str, Path]:
    """Replace local CodeUri paths with uploaded zips like `sam package`; returns function logical id → code dir."""
    s3 = aws.client("s3")
    s3.create_bucket(Bucket=ARTIFACTS_BUCKET)
    global_uri = sam.get("Globals", {}).get("Function", {}).get("CodeUri")
    code_dirs: dict[str, Path] = {}
    for logical_id, resource in sam["Resources"].items():
        if resource.get("Type") != "AWS::Serverless::Function":
            continue
        props = resource.setdefault("Properties", {})
        if "InlineCode" in props:
            continue
        uri = props.get("CodeUri", global_uri)
        if not isinstance(uri, str):
            raise StackError(f"{logical_id}: CodeUri must be a local path, got {uri!r}")
        if uri.startswith("s3://"):
            raise StackError(f"{logical_id}: CodeUri {uri} is already in S3; the local runtime needs the source")
        code_dir = (base_dir / uri).resolve()
        if not code_dir.is_dir():
            raise StackError(f"{logical_id}: CodeUri {uri} is not a directory under {base_dir}")
        key = f"{logical_id}/code.zip"
        s3.put_object(Bucket=ARTIFACTS_BUCKET, Key=key, Body=_zip_dir(code_dir))
        props["CodeUri"] = f"s3://{ARTIFACTS_BUCKET}/{key}"
        code_dirs[logical_id] = code_dir
    return code_dirs


class _NoManagedPolicies:
    """samtranslator asks IAM for managed policy ARNs by name; the template names them by ARN or not at all."""

    def load(self) -> dict[str, str]:
        return {}


def transform(sam: dict[str, Any], parameters: Mapping[str, str]) -> dict[str, Any]:
    """SAM → CloudFormation with the same translator `sam deploy` uses server-side."""
    from samtranslator.model.exceptions import InvalidDocumentException
    from samtranslator.translator.transform import transform as sam_transform

    try:
        return dict(sam_transform(sam, dict(parameters), _NoManagedPolicies()))
    except InvalidDocumentException as e:
        problems = "; ".join(str(cause) for cause in e.causes)
        raise StackError(f"template.yaml does not transform: {problems}") from None


def _pseudo(aws: EmbeddedAws, stack_name: str) -> dict[str, str]:
    return {
        "AWS::Region": aws.region,
        "AWS::AccountId": aws.account_id,
        "AWS::StackName": stack_name,
        "AWS::Partition": "aws",
        "AWS::URLSuffix": "amazonaws.com",
        "AWS::NoValue": "",
    }


def _parameter_values(template: dict[str, Any], overrides: Mapping[str, str]) -> dict[str, str]:
    values = {}
    for name, spec in template.get("Parameters", {}).items():
        if name in overrides:
            values[name] = str(overrides[name])
        elif "Default" in spec:
            default = spec["Default"]
            values[name] = ",".join(map(str, default)) if isinstance(default, list) else str(default)
    unknown = set(overrides) - set(values)
    if unknown:
        raise StackError(f"unknown template parameter(s): {', '.join(sorted(unknown))}")
    return values


SUB_NAME = re.compile(r"\$\{([^!}][^}]*)\}")  # ${Name} or ${Logical.Attr} in Fn::Sub; ${!Literal} is not one


def _known(key: str, arg: Any, refs: Mapping[str, str], attrs: Mapping[tuple[str, str], str]) -> str | None:
    """The value of a Ref or Fn::GetAtt whose target is in ``refs``/``attrs``; None for anything else."""
    if key == "Ref" and isinstance(arg, str) and arg in refs:
        return refs[arg]
    if key == "Fn::GetAtt" and isinstance(arg, list) and (arg[0], arg[1]) in attrs:
        return attrs[(arg[0], arg[1])]
    return None


def _resolve(value: Any, refs: Mapping[str, str], attrs: Mapping[tuple[str, str], str]) -> Any:
    """Resolve Ref / GetAtt / Sub / Join against known values; anything unknown is left as it is."""
    if isinstance(value, list):
        return [_resolve(v, refs, attrs) for v in value]
    if not isinstance(value, dict):
        return value
    if len(value) == 1:
        ((key, arg),) = value.items()
        known = _known(key, arg, refs, attrs)
        if known is not None:
            return known
        if key == "Fn::Sub":
            text, local = (arg, {}) if isinstance(arg, str) else (arg[0], _resolve(arg[1], refs, attrs))
            return _substitute(text, refs, attrs, local)
        if key == "Fn::Join":
            parts = _resolve(arg[1], refs, attrs)
            if all(isinstance(p, str) for p in parts):
                return str(arg[0]).join(parts)
    return {k: _resolve(v, refs, attrs) for k, v in value.items()}


def _substitute(
    text: str, refs: Mapping[str, str], attrs: Mapping[tuple[str, str], str], local: Mapping[str, Any]
) -> Any:
    unresolved = False

    def one(match: re.Match[str]) -> str:
        nonlocal unresolved
        name = match.group(1)
        if name in local and isinstance(local[name], str):
            return str(local[name])
        if name in refs:
            return refs[name]
        if "." in name:
            logical, attr = name.split(".", 1)
            if (logical, attr) in attrs:
                return attrs[(logical, attr)]
        unresolved = True
        return match.group(0)

    result = SUB_NAME.sub(one, text)
    return {"Fn::Sub": text} if unresolved else result


def _replace_refs(value: Any, refs: Mapping[str, str], attrs: Mapping[tuple[str, str], str]) -> Any:
    """Substitute references to resources created outside CloudFormation, keeping every other intrinsic."""
    if isinstance(value, list):
        return [_replace_refs(v, refs, attrs) for v in value]
    if not isinstance(value, dict):
        return value
    if len(value) == 1:
        ((key, arg),) = value.items()
        known = _known(key, arg, refs, attrs)
        if known is not None:
            return known
        if key == "Fn::Sub":
            text, local = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])
            names = {m.group(1) for m in SUB_NAME.finditer(text)}
            outside = {n for n in names if n in refs or tuple(n.split(".", 1)) in attrs}
            if outside:
                for n in outside:
                    replacement = refs[n] if n in refs else attrs[tuple(n.split(".", 1))]
                    text = text.replace("${" + n + "}", replacement)
                return {"Fn::Sub": text if isinstance(arg, str) else [text, _replace_refs(local, refs, attrs)]}
    return {k: _replace_refs(v, refs, attrs) for k, v in value.items()}


def _numbers(value: Any, numbers: Mapping[str, int | float]) -> Any:
    """Number parameters as numbers where a property takes them (moto compares e.g. BatchSize without casting)."""
    if isinstance(value, list):
        return [_numbers(v, numbers) for v in value]
    if not isinstance(value, dict):
        return value
    if len(value) == 1 and value.get("Ref") in numbers:
        return numbers[value["Ref"]]
    return {k: v if k.startswith("Fn::") else _numbers(v, numbers) for k, v in value.items()}


_NUMERIC_MAPPING_PROPERTIES = ("BatchSize", "MaximumBatchingWindowInSeconds", "MaximumRetryAttempts")


def _numeric_mapping_properties(resources: dict[str, Any]) -> None:
    """samtranslator resolves a Number parameter to its string; moto's event source mapping needs the number."""
    for resource in resources.values():
        if resource.get("Type") != "AWS::Lambda::EventSourceMapping":
            continue
        props = resource.get("Properties", {})
        for key in _NUMERIC_MAPPING_PROPERTIES:
            if isinstance(props.get(key), str) and props[key].isdigit():
                props[key] = int(props[key])
        scaling = props.get("ScalingConfig", {})
        if isinstance(scaling.get("MaximumConcurrency"), str) and scaling["MaximumConcurrency"].isdigit():
            scaling["MaximumConcurrency"] = int(scaling["MaximumConcurrency"])


def _number_parameters(template: dict[str, Any], values: Mapping[str, str]) -> dict[str, int | float]:
    numbers: dict[str, int | float] = {}
    for name, spec in template.get("Parameters", {}).items():
        if spec.get("Type") == "Number" and name in values:
            text = values[name]
            try:
                numbers[name] = int(text) if re.fullmatch(r"-?[0-9]+", text) else float(text)
            except ValueError:
                raise StackError(f"parameter {name}: {text!r} is not a number") from None
    return numbers


def _token_function(resources: Mapping[str, Any], token: Any) -> str | None:
    """The function logical id behind a ServiceToken (a function, its alias or version, by Ref or GetAtt)."""
    target = None
    if isinstance(token, dict):
        target = token.get("Ref") or (token.get("Fn::GetAtt") or [None])[0]
    seen = 0
    while isinstance(target, str) and target in resources and seen < 3:
        resource = resources[target]
        if resource.get("Type") == "AWS::Lambda::Function":
            return target
        name = resource.get("Properties", {}).get("FunctionName")
        target = name.get("Ref") if isinstance(name, dict) else None
        seen += 1
    return None


def _create_outside_cloudformation(
    aws: EmbeddedAws,
    cfn: dict[str, Any],
    stack_name: str,
    parameters: Mapping[str, str],
    customs: list[CustomResource],
) -> tuple[dict[str, str], dict[str, str], dict[str, str], dict[tuple[str, str], str]]:
    """Create the resources moto's CloudFormation skips; returns (emr apps, model package groups, refs, attrs)."""
    refs: dict[str, str] = {**_pseudo(aws, stack_name), **parameters}
    attrs: dict[tuple[str, str], str] = {}
    emr_apps: dict[str, str] = {}
    groups: dict[str, str] = {}
    customs.clear()
    resources = cfn["Resources"]
    for logical_id in list(resources):
        resource = resources[logical_id]
        rtype = resource.get("Type", "")
        props = _resolve(resource.get("Properties", {}), refs, attrs)
        if rtype == "AWS::EMRServerless::Application":
            app_id, arn = _create_emr_application(aws, logical_id, props, stack_name)
            emr_apps[logical_id] = app_id
            refs[logical_id] = app_id
            attrs[(logical_id, "ApplicationId")] = app_id
            attrs[(logical_id, "Arn")] = arn
        elif rtype == "AWS::SageMaker::ModelPackageGroup":
            name = str(props.get("ModelPackageGroupName") or f"{stack_name}-{logical_id}")
            arn = aws.client("sagemaker").create_model_package_group(
                ModelPackageGroupName=name,
                ModelPackageGroupDescription=str(props.get("ModelPackageGroupDescription", "")),
            )["ModelPackageGroupArn"]
            groups[logical_id] = name
            refs[logical_id] = arn
            attrs[(logical_id, "ModelPackageGroupArn")] = arn
        elif rtype.startswith("Custom::") or rtype == "AWS::CloudFormation::CustomResource":
            # A custom resource would invoke a Lambda inside CloudFormation; the runtime serves it instead.
            customs.append(
                CustomResource(logical_id, rtype, _token_function(resources, props.get("ServiceToken")), props)
            )
            refs[logical_id] = logical_id
        else:
            continue
        del resources[logical_id]
    for resource in resources.values():
        depends = resource.get("DependsOn")
        if isinstance(depends, str) and depends not in resources:
            del resource["DependsOn"]
        elif isinstance(depends, list):
            resource["DependsOn"] = [d for d in depends if d in resources]
    return emr_apps, groups, refs, attrs


def _create_emr_application(
    aws: EmbeddedAws, logical_id: str, props: Mapping[str, Any], stack_name: str
) -> tuple[str, str]:
    release = str(props.get("ReleaseLabel", "")) or "emr-spark-8.1.0"
    kwargs: dict[str, Any] = {
        "name": str(props.get("Name") or f"{stack_name}-{logical_id}"),
        "releaseLabel": release if re.match(r"emr-[0-9]\.[0-9]{1,2}\.0", release) else _MOTO_ACCEPTED_LABEL,
        "type": str(props.get("Type", "SPARK")).upper(),
        "architecture": str(props.get("Architecture", "X86_64")),
    }
    capacity = props.get("MaximumCapacity")
    if isinstance(capacity, Mapping) and all(isinstance(v, str) for v in capacity.values()):
        kwargs["maximumCapacity"] = {k[0].lower() + k[1:]: v for k, v in capacity.items()}
    emr = aws.client("emr-serverless")
    created = emr.create_application(**kwargs)
    application = aws.backend("emr-serverless").applications[created["applicationId"]]
    application.release_label = release
    return str(created["applicationId"]), str(created["arn"])


def _deployed_references(aws: EmbeddedAws, stack: Stack, outside: Mapping[str, str], outside_attrs: Any) -> None:
    """Ref and GetAtt values of the deployed resources, for resolving the template's remaining intrinsics."""
    refs: dict[str, str] = {**outside}
    attrs: dict[tuple[str, str], str] = {**outside_attrs}
    sqs = aws.client("sqs")
    for logical_id, (rtype, physical) in stack.resources.items():
        refs[logical_id] = physical
        if rtype == "AWS::SQS::Queue":
            arn = sqs.get_queue_attributes(QueueUrl=_local_queue_url(aws, physical), AttributeNames=["QueueArn"])
            attrs[(logical_id, "Arn")] = arn["Attributes"]["QueueArn"]
            attrs[(logical_id, "QueueName")] = physical.rsplit("/", 1)[-1]
        elif rtype == "AWS::SNS::Topic":
            attrs[(logical_id, "TopicArn")] = physical
        elif rtype == "AWS::Lambda::Function":
            attrs[(logical_id, "Arn")] = f"arn:aws:lambda:{aws.region}:{aws.account_id}:function:{physical}"
        elif rtype == "AWS::S3::Bucket":
            attrs[(logical_id, "Arn")] = f"arn:aws:s3:::{physical}"
    stack.refs, stack.attrs = refs, attrs


def _bucket_notifications(aws: EmbeddedAws, cfn: dict[str, Any], stack: Stack) -> None:
    """moto's CloudFormation ignores a bucket's NotificationConfiguration: apply it through the API."""
    s3 = aws.client("s3")
    for logical_id, resource in cfn["Resources"].items():
        if resource.get("Type") != "AWS::S3::Bucket":
            continue
        config = stack.resolve(resource.get("Properties", {}).get("NotificationConfiguration"))
        if not config:
            continue
        api: dict[str, Any] = {}
        for cfn_key, api_key, target_key, api_target in (
            ("QueueConfigurations", "QueueConfigurations", "Queue", "QueueArn"),
            ("TopicConfigurations", "TopicConfigurations", "Topic", "TopicArn"),
            ("LambdaConfigurations", "LambdaFunctionConfigurations", "Function", "LambdaFunctionArn"),
        ):
            for item in config.get(cfn_key, []):
                if not isinstance(item.get(target_key), str):
                    raise StackError(f"{logical_id}: cannot resolve the notification target {item.get(target_key)}")
                entry: dict[str, Any] = {api_target: item[target_key], "Events": [item["Event"]]}
                rules = item.get("Filter", {}).get("S3Key", {}).get("Rules", [])
                if rules:
                    filter_rules = [{"Name": r["Name"], "Value": r["Value"]} for r in rules]
                    entry["Filter"] = {"Key": {"FilterRules": filter_rules}}
                api.setdefault(api_key, []).append(entry)
        if config.get("EventBridgeConfiguration", {}).get("EventBridgeEnabled"):
            api["EventBridgeConfiguration"] = {}
        s3.put_bucket_notification_configuration(Bucket=stack.resources[logical_id][1], NotificationConfiguration=api)


def _local_queue_url(aws: EmbeddedAws, url_or_arn: str) -> str:
    """moto reports queue URLs on sqs.<region>.amazonaws.com; clients here talk to the embedded endpoint."""
    name = url_or_arn.rsplit("/", 1)[-1].rsplit(":", 1)[-1]
    return f"{aws.endpoint_url}/{aws.account_id}/{name}"


def deploy(
    aws: EmbeddedAws,
    template_path: Path,
    stack_name: str = "dropzone-local",
    parameters: Mapping[str, str] | None = None,
) -> Stack:
    """Package, transform and create the stack; then read its wiring back from the deployed resources."""
    base_dir = template_path.parent
    sam = load_template(template_path)
    code_dirs = package(aws, sam, base_dir)
    values = _parameter_values(sam, parameters or {})
    cfn = transform(sam, values)
    customs: list[CustomResource] = []
    emr_apps, groups, refs, attrs = _create_outside_cloudformation(aws, cfn, stack_name, values, customs)
    cfn["Resources"] = _numbers(_replace_refs(cfn["Resources"], refs, attrs), _number_parameters(sam, values))
    _numeric_mapping_properties(cfn["Resources"])
    cfn["Outputs"] = _replace_refs(cfn.get("Outputs", {}), refs, attrs)
    cloudformation = aws.client("cloudformation")
    cloudformation.create_stack(
        StackName=stack_name,
        TemplateBody=json.dumps(cfn),
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in values.items()],
        Capabilities=["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"],
    )
    described = cloudformation.describe_stacks(StackName=stack_name)["Stacks"][0]
    if described["StackStatus"] != "CREATE_COMPLETE":
        raise StackError(f"stack {stack_name}: {described['StackStatus']}: {described.get('StackStatusReason', '')}")
    resources = {
        r["LogicalResourceId"]: (r["ResourceType"], r.get("PhysicalResourceId", ""))
        for r in cloudformation.describe_stack_resources(StackName=stack_name)["StackResources"]
        if "LogicalResourceId" in r
    }
    outputs = {o["OutputKey"]: o["OutputValue"] for o in described.get("Outputs", [])}
    stack = Stack(
        stack_name,
        cfn,
        resources,
        outputs,
        emr_applications=emr_apps,
        model_package_groups=groups,
        custom_resources=customs,
    )
    _read_functions(aws, stack, cfn, code_dirs)
    _read_mappings(aws, stack)
    _detach_moto_pollers(aws)
    _read_schedules(aws, stack, cfn)
    _quiet_schedule_rules(aws)
    _deployed_references(aws, stack, refs, attrs)
    _bucket_notifications(aws, cfn, stack)
    return stack


def _read_functions(aws: EmbeddedAws, stack: Stack, cfn: dict[str, Any], code_dirs: Mapping[str, Path]) -> None:
    lam = aws.client("lambda")
    for logical_id, (rtype, physical) in stack.resources.items():
        if rtype != "AWS::Lambda::Function" or logical_id not in code_dirs:
            continue
        config = lam.get_function_configuration(FunctionName=physical)
        environment = config.get("Environment", {}).get("Variables", {})
        declared = cfn["Resources"][logical_id]["Properties"].get("Environment", {}).get("Variables", {})
        missing = sorted(set(declared) - set(environment))
        if missing:
            # moto drops a variable whose value it cannot resolve (e.g. a Ref to a skipped resource).
            raise StackError(f"{logical_id}: environment variable(s) lost in the deploy: {', '.join(missing)}")
        stack.functions[logical_id] = FunctionSpec(
            logical_id=logical_id,
            name=config["FunctionName"],
            arn=config["FunctionArn"],
            code_dir=code_dirs[logical_id],
            handler=config["Handler"],
            environment=dict(environment),
            timeout=int(config.get("Timeout", 3)),
            memory_mb=int(config.get("MemorySize", 128)),
        )


def _read_mappings(aws: EmbeddedAws, stack: Stack) -> None:
    lam = aws.client("lambda")
    by_arn = {f.arn: f.logical_id for f in stack.functions.values()}
    for spec in stack.functions.values():
        for m in lam.list_event_source_mappings(FunctionName=spec.name)["EventSourceMappings"]:
            source = m.get("EventSourceArn", "")
            if not source.startswith("arn:aws:sqs:"):
                continue
            stack.mappings.append(
                QueueMapping(
                    uuid=m["UUID"],
                    function=by_arn.get(m["FunctionArn"], spec.logical_id),
                    queue_arn=source,
                    queue_url=_local_queue_url(aws, source),
                    batch_size=int(m.get("BatchSize", 10)),
                    report_batch_item_failures="ReportBatchItemFailures" in m.get("FunctionResponseTypes", []),
                    enabled=m.get("State", "Enabled") == "Enabled",
                )
            )


def _detach_moto_pollers(aws: EmbeddedAws) -> None:
    """moto invokes a mapped function itself on every send (in Docker); the runtime's pollers deliver instead.

    The mappings stay deployed and listed; only moto's in-process hook on each queue is cleared.
    """
    for queue in aws.backend("sqs").queues.values():
        queue.lambda_event_source_mappings.clear()


def _quiet_schedule_rules(aws: EmbeddedAws) -> None:
    """In AWS a scheduled rule never matches put events; moto treats its missing pattern as "match all" and
    then fails on the Lambda target. The runtime invokes scheduled functions itself (see ``runtime``)."""
    for bus in aws.backend("events").event_buses.values():
        for rule in bus.rules.values():
            if rule.scheduled_expression and not rule.event_pattern.dump():
                rule.send_to_targets = lambda *args, **kwargs: None


def _read_schedules(aws: EmbeddedAws, stack: Stack, cfn: dict[str, Any]) -> None:
    events = aws.client("events")
    by_arn = {f.arn: f.logical_id for f in stack.functions.values()}
    for rule in events.list_rules()["Rules"]:
        if not rule.get("ScheduleExpression"):
            continue
        for target in events.list_targets_by_rule(Rule=rule["Name"])["Targets"]:
            if target["Arn"] in by_arn:
                stack.schedules.append(
                    ScheduleSpec(rule["Name"], rule["ScheduleExpression"], by_arn[target["Arn"]], target.get("Input"))
                )
    # EventBridge Scheduler (SAM ScheduleV2) is not deployed by moto's CloudFormation: read the template.
    for logical_id, resource in cfn["Resources"].items():
        if resource.get("Type") != "AWS::Scheduler::Schedule":
            continue
        props = resource.get("Properties", {})
        target = props.get("Target", {}).get("Arn")
        if isinstance(target, dict) and "Fn::GetAtt" in target:
            function = target["Fn::GetAtt"][0]
            if function in stack.functions:
                expression = str(props.get("ScheduleExpression"))
                stack.schedules.append(ScheduleSpec(logical_id, expression, function, props["Target"].get("Input")))
