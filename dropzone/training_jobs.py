"""The SageMaker training job of a successful feature run: name, request, creation.

The name is deterministic (docs/ledger.md) so a repeated completion event finds the job it already started:
``ResourceInUse`` means "exists", the job is described and work carries on. The XGBoost framework image per
region comes from ``XGBOOST_IMAGE_ACCOUNTS``; tests/unit/test_training_jobs.py keeps it equal to the
``sagemaker`` SDK's ``image_uris`` answer.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from dropzone.contract import Contract

XGBOOST_VERSION = "1.7-1"
# Account of the sagemaker-xgboost framework image per region (sagemaker SDK image_uri_config/xgboost.json).
XGBOOST_IMAGE_ACCOUNTS: Mapping[str, str] = {
    "af-south-1": "510948584623",
    "ap-east-1": "651117190479",
    "ap-northeast-1": "354813040037",
    "ap-northeast-2": "366743142698",
    "ap-northeast-3": "867004704886",
    "ap-south-1": "720646828776",
    "ap-southeast-1": "121021644041",
    "ap-southeast-2": "783357654285",
    "ca-central-1": "341280168497",
    "eu-central-1": "492215442770",
    "eu-north-1": "662702820516",
    "eu-south-1": "978288397137",
    "eu-west-1": "141502667606",
    "eu-west-2": "764974769150",
    "eu-west-3": "659782779980",
    "me-south-1": "801668240914",
    "sa-east-1": "737474898029",
    "us-east-1": "683313688378",
    "us-east-2": "257758044811",
    "us-west-1": "746614075791",
    "us-west-2": "246618743249",
}

# What training/train.py prints, captured by SageMaker into CloudWatch metrics and FinalMetricDataList.
_NUMBER = r"([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)"
METRIC_DEFINITIONS: tuple[dict[str, str], ...] = (
    *tuple(
        {"Name": f"{split}:{name}", "Regex": rf"\[dropzone\] {split}:{name}={_NUMBER}"}
        for split in ("validation", "baseline")
        for name in ("auc", "pr_auc", "logloss", "rmse", "mae")
    ),
    {"Name": "best_iteration", "Regex": rf"\[dropzone\] best_iteration={_NUMBER}"},
)

_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
MAX_NAME = 63


class TrainingQuotaError(RuntimeError):
    """SageMaker refused the job for a quota (often 0 on new accounts); names the quota to raise."""


class UnknownRegion(ValueError):
    """No XGBoost training image is known for the region."""


def xgboost_image_uri(region: str, version: str = XGBOOST_VERSION) -> str:
    """ECR URI of the SageMaker XGBoost framework image in ``region``."""
    if region not in XGBOOST_IMAGE_ACCOUNTS:
        raise UnknownRegion(
            f"no SageMaker XGBoost image known for region {region!r}; "
            f"known: {', '.join(sorted(XGBOOST_IMAGE_ACCOUNTS))}"
        )
    domain = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
    return f"{XGBOOST_IMAGE_ACCOUNTS[region]}.dkr.ecr.{region}.{domain}/sagemaker-xgboost:{version}"


def _slug(text: str) -> str:
    """SageMaker names allow letters, digits and hyphens only (dataset names have underscores)."""
    return re.sub(r"-+", "-", re.sub(r"[^A-Za-z0-9]", "-", text)).strip("-")


def training_job_name(prefix: str, dataset: str, job_run_id: str) -> str:
    """``<prefix>-<dataset>-<10 hex of sha256(jobRunId)>``, at most 63 characters, same input → same name."""
    digest = hashlib.sha256(job_run_id.encode()).hexdigest()[:10]
    head = f"{_slug(prefix)}-{_slug(dataset)}"[: MAX_NAME - len(digest) - 1].strip("-")
    name = f"{head}-{digest}"
    if not _NAME.match(name):
        raise ValueError(f"cannot build a SageMaker job name from prefix {prefix!r} and dataset {dataset!r}")
    return name


def model_package_group_name(prefix: str, dataset: str) -> str:
    """``<MODEL_PACKAGE_GROUP_PREFIX>-<dataset>`` in SageMaker's name alphabet."""
    return f"{_slug(prefix)}-{_slug(dataset)}"[:MAX_NAME].strip("-")


@dataclass(frozen=True)
class TrainingInputs:
    """What a successful run hands to training, from its ``_manifest.json``."""

    dataset: str
    run_id: str
    job_run_id: str
    train_uri: str
    validation_uri: str
    label: str
    task: str  # classification | regression
    entity: str
    features: tuple[str, ...]


def inputs_from_manifest(
    manifest: Mapping[str, Any], *, dataset: str, run_id: str, job_run_id: str, run_prefix: str
) -> TrainingInputs:
    """Check the Spark run's manifest and pick what training needs; relative output paths join ``run_prefix``."""
    missing = [k for k in ("label", "features", "outputs") if k not in manifest]
    if missing:
        raise ValueError(f"run manifest of {dataset} run {run_id} lacks {', '.join(missing)}")
    outputs = manifest["outputs"]
    for channel in ("train", "validation"):
        if not outputs.get(channel):
            raise ValueError(f"run manifest of {dataset} run {run_id} has no outputs.{channel}")

    def uri(value: str) -> str:
        return value if value.startswith("s3://") else f"{run_prefix.rstrip('/')}/{value.lstrip('/')}"

    label = manifest["label"]
    kind = label.get("kind", "active_in_horizon")
    return TrainingInputs(
        dataset=dataset,
        run_id=run_id,
        job_run_id=job_run_id,
        train_uri=uri(outputs["train"]),
        validation_uri=uri(outputs["validation"]),
        label=str(label["name"]),
        task="classification" if kind == "active_in_horizon" else "regression",
        entity=str(manifest.get("entity", "")),
        features=tuple(str(f["name"]) for f in manifest["features"]),
    )


def untrainable(manifest: Mapping[str, Any]) -> str | None:
    """Why the run's features cannot train a model, or None. A young dataset has no entity with an event before
    the training cutoff (the as-of date less the label horizon) until its history is longer than the horizon; a
    SageMaker job on those features would only fail, once per batch."""
    counts = manifest.get("row_counts")
    if not isinstance(counts, Mapping):
        return None  # a manifest without counts: the trainer checks its channels itself
    train, validation = int(counts.get("train_rows") or 0), int(counts.get("validation_rows") or 0)
    if train + validation == 0:
        cutoffs = ", ".join((manifest.get("cutoffs") or {}).get("train") or []) or "?"
        return (
            f"no training rows: no entity has an event before the training cutoff {cutoffs} (the as-of date less the "
            f"{manifest.get('horizon_days', '?')}-day label horizon); training starts once the history is longer"
        )
    if train == 0 or validation == 0:
        return f"{train} training and {validation} validation rows: each split needs at least one entity"
    label = manifest.get("label") or {}
    fraction = label.get("positive_fraction")
    if label.get("kind") == "active_in_horizon" and fraction in (0, 1):
        return f"{label.get('name')} is {int(fraction)} for every training row: there is nothing to learn"
    return None


def build_training_job_request(
    inputs: TrainingInputs,
    contract: Contract,
    *,
    name: str,
    region: str,
    role_arn: str,
    source_uri: str,
    output_uri: str,
) -> dict[str, Any]:
    """The CreateTrainingJob request: script mode on the XGBoost framework image, contract hyperparameters."""
    training = contract.training
    if training is None:
        raise ValueError(f"dataset {contract.dataset} has no training section: nothing to train")
    hyperparameters: dict[str, Any] = {
        **dict(training.hyperparameters),
        "dataset": inputs.dataset,
        "run_id": inputs.run_id,
        "label": inputs.label,
        "entity": inputs.entity,
        "task": inputs.task,
        "features": ",".join(inputs.features),
        "sagemaker_program": "train.py",
        "sagemaker_submit_directory": source_uri,
        "sagemaker_region": region,
    }
    # Framework containers JSON-decode every value, as the sagemaker SDK JSON-encodes them.
    encoded = {k: json.dumps(v) for k, v in hyperparameters.items()}
    too_long = [k for k, v in encoded.items() if len(v) > 2500]
    if too_long:
        raise ValueError(f"hyperparameter(s) longer than SageMaker's 2500 characters: {', '.join(too_long)}")
    stopping: dict[str, int] = {"MaxRuntimeInSeconds": training.max_runtime_seconds}
    request: dict[str, Any] = {
        "TrainingJobName": name,
        "AlgorithmSpecification": {
            "TrainingImage": xgboost_image_uri(region),
            "TrainingInputMode": "File",
            "MetricDefinitions": [dict(m) for m in METRIC_DEFINITIONS],
        },
        "RoleArn": role_arn,
        "HyperParameters": encoded,
        "InputDataConfig": [
            {
                "ChannelName": channel,
                "DataSource": {
                    "S3DataSource": {
                        "S3DataType": "S3Prefix",
                        "S3Uri": uri,
                        "S3DataDistributionType": "FullyReplicated",
                    }
                },
                "ContentType": "application/x-parquet",
            }
            for channel, uri in (("train", inputs.train_uri), ("validation", inputs.validation_uri))
        ],
        "OutputDataConfig": {"S3OutputPath": output_uri},
        "ResourceConfig": {
            "InstanceType": training.instance_type,
            "InstanceCount": training.instance_count,
            "VolumeSizeInGB": 30,
        },
        "StoppingCondition": stopping,
        "Tags": [
            {"Key": "dataset", "Value": inputs.dataset},
            {"Key": "run_id", "Value": inputs.run_id},
            {"Key": "job_run_id", "Value": inputs.job_run_id},
        ],
    }
    if training.spot:
        request["EnableManagedSpotTraining"] = True
        stopping["MaxWaitTimeInSeconds"] = training.max_wait_seconds or training.max_runtime_seconds
    return request


def create_training_job(sagemaker: Any, request: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
    """Create the job, or describe it when it exists already. Returns (description, created)."""
    name = request["TrainingJobName"]
    try:
        sagemaker.create_training_job(**request)
    except ClientError as e:
        code = e.response.get("Error", {}).get("Code", "")
        message = e.response.get("Error", {}).get("Message", "")
        if code in ("ResourceInUse", "ResourceInUseException"):
            return sagemaker.describe_training_job(TrainingJobName=name), False
        if code == "ResourceLimitExceeded":
            instance = request["ResourceConfig"]["InstanceType"]
            kind = "spot training job usage" if request.get("EnableManagedSpotTraining") else "training job usage"
            raise TrainingQuotaError(
                f"SageMaker quota '{instance} for {kind}' is too low to start {name}: request an increase in "
                f"Service Quotas (SageMaker) or choose another training.instance_type. AWS said: {message}"
            ) from e
        raise
    return sagemaker.describe_training_job(TrainingJobName=name), True
