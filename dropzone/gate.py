"""The model gate: a trained model against the dataset's champion, then registration in its Model Package Group.

The champion is the newest *Approved* package of the group ``<MODEL_PACKAGE_GROUP_PREFIX>-<dataset>``; its
metrics live in the package's CustomerMetadataProperties (``metric.<name>``), written here at registration.
A model is Approved when it beats the champion on the contract's gate metric by more than the margin; the
first model of a dataset is Approved when it beats the baseline (a constant prediction: the prior or the
mean). Otherwise the contract's ``when_not_better`` policy says PendingManualApproval or Rejected.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from dropzone.contract import Gate

APPROVED = "Approved"
PENDING = "PendingManualApproval"
REJECTED = "Rejected"
HIGHER_IS_BETTER: Mapping[str, bool] = {"auc": True, "pr_auc": True, "logloss": False, "rmse": False, "mae": False}
_METRIC_KEY = "metric."
_BASELINE_KEY = "baseline."
_TOLERANCE = 1e-9  # 0.805 - 0.8 is 0.0050000000000000044 in floating point: that is not "more than 0.005"


@dataclass(frozen=True)
class Champion:
    arn: str
    metrics: Mapping[str, float]


@dataclass(frozen=True)
class Decision:
    status: str  # Approved | PendingManualApproval | Rejected
    metric: str
    value: float | None
    reference: float | None  # the champion's value, or the baseline's for a first model
    against: str  # "champion" | "baseline"
    champion_arn: str | None
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "metric": self.metric,
            "value": self.value,
            "reference": self.reference,
            "against": self.against,
            "champion_arn": self.champion_arn,
            "reason": self.reason,
        }


def _improvement(metric: str, value: float, reference: float) -> float:
    if metric not in HIGHER_IS_BETTER:
        raise ValueError(f"unknown gate metric {metric!r}: use one of {', '.join(HIGHER_IS_BETTER)}")
    return value - reference if HIGHER_IS_BETTER[metric] else reference - value


def decide(metrics: Mapping[str, Any], gate: Gate, champion: Champion | None) -> Decision:
    """Judge ``metrics`` (train.py's metrics.json) against the champion, or the baseline when there is none."""
    metric = gate.metric
    value = (metrics.get("validation") or {}).get(metric)
    not_better = PENDING if gate.when_not_better == "pending" else REJECTED
    if champion is not None:
        against, reference, margin = "champion", champion.metrics.get(metric), gate.margin
    else:
        against, reference, margin = "baseline", (metrics.get("baseline") or {}).get(metric), 0.0
    champion_arn = champion.arn if champion else None
    if value is None:
        reason = f"validation {metric} is unavailable (e.g. one class only in the validation set)"
        return Decision(not_better, metric, None, reference, against, champion_arn, reason)
    if reference is None:
        if champion is not None:  # a champion registered without this metric cannot be compared: a human decides
            reason = f"champion {champion.arn} has no {metric} to compare with"
            return Decision(PENDING, metric, float(value), None, against, champion_arn, reason)
        reason = f"no baseline {metric} in the metrics"
        return Decision(not_better, metric, float(value), None, against, champion_arn, reason)
    gain = _improvement(metric, float(value), float(reference))
    beats = gain - margin > _TOLERANCE
    verdict = "beats" if beats else "does not beat"
    reason = f"{metric} {float(value):.4f} {verdict} the {against}'s {float(reference):.4f} by more than {margin:g}"
    status = APPROVED if beats else not_better
    return Decision(status, metric, float(value), float(reference), against, champion_arn, reason)


def _metrics_from_properties(properties: Mapping[str, str]) -> dict[str, float]:
    found = {}
    for key, value in properties.items():
        if key.startswith(_METRIC_KEY):
            try:
                found[key[len(_METRIC_KEY) :]] = float(value)
            except ValueError:
                continue
    return found


def current_champion(sagemaker: Any, group: str) -> Champion | None:
    """The newest Approved package of ``group`` with its metrics; None when the group is new or empty."""
    try:
        answer = sagemaker.list_model_packages(
            ModelPackageGroupName=group,
            ModelApprovalStatus=APPROVED,
            SortBy="CreationTime",
            SortOrder="Descending",
            MaxResults=1,
        )
    except ClientError as e:
        if e.response.get("Error", {}).get("Code") in ("ValidationException", "ResourceNotFound"):
            return None
        raise
    summaries = answer.get("ModelPackageSummaryList", [])
    if not summaries:
        return None
    arn = summaries[0]["ModelPackageArn"]
    description = sagemaker.describe_model_package(ModelPackageName=arn)
    return Champion(arn=arn, metrics=_metrics_from_properties(description.get("CustomerMetadataProperties", {})))


def find_registered(sagemaker: Any, group: str, training_job_name: str) -> str | None:
    """The package already registered for ``training_job_name`` (a crash between registering and recording)."""
    kwargs: dict[str, Any] = {
        "ModelPackageGroupName": group,
        "SortBy": "CreationTime",
        "SortOrder": "Descending",
        "MaxResults": 50,
    }
    try:
        summaries = sagemaker.list_model_packages(**kwargs).get("ModelPackageSummaryList", [])
    except ClientError as e:
        if e.response.get("Error", {}).get("Code") in ("ValidationException", "ResourceNotFound"):
            return None
        raise
    for summary in summaries:
        description = sagemaker.describe_model_package(ModelPackageName=summary["ModelPackageArn"])
        if description.get("CustomerMetadataProperties", {}).get("training_job") == training_job_name:
            return str(summary["ModelPackageArn"])
    return None


def ensure_group(sagemaker: Any, group: str, dataset: str) -> None:
    """Create the dataset's Model Package Group unless it exists."""
    try:
        sagemaker.describe_model_package_group(ModelPackageGroupName=group)
        return
    except ClientError as e:
        if e.response.get("Error", {}).get("Code") not in ("ValidationException", "ResourceNotFound"):
            raise
    try:
        sagemaker.create_model_package_group(
            ModelPackageGroupName=group,
            ModelPackageGroupDescription=f"dropzone models of dataset {dataset}",
            Tags=[{"Key": "dataset", "Value": dataset}],
        )
    except ClientError as e:  # created meanwhile by a concurrent event
        if "already exists" not in e.response.get("Error", {}).get("Message", ""):
            raise


def customer_metadata(metrics: Mapping[str, Any], decision: Decision, *, training_job_name: str) -> dict[str, str]:
    """What the package carries: validation and baseline metrics, the job, the decision (SageMaker: ≤50 entries)."""
    properties = {
        "dataset": str(metrics.get("dataset") or ""),
        "run_id": str(metrics.get("run_id") or ""),
        "training_job": training_job_name,
        "gate_against": decision.against,
        "gate_reason": decision.reason[:256],
    }
    for prefix, section in ((_METRIC_KEY, "validation"), (_BASELINE_KEY, "baseline")):
        for name, value in (metrics.get(section) or {}).items():
            if isinstance(value, int | float):
                properties[f"{prefix}{name}"] = repr(float(value))
    return {k: v for k, v in properties.items() if v}


def register(
    sagemaker: Any,
    *,
    group: str,
    dataset: str,
    image_uri: str,
    model_data_url: str,
    metrics_uri: str,
    metrics: Mapping[str, Any],
    decision: Decision,
    training_job_name: str,
) -> str:
    """Create the model package with the decision as its approval status; returns its ARN."""
    ensure_group(sagemaker, group, dataset)
    answer = sagemaker.create_model_package(
        ModelPackageGroupName=group,
        ModelPackageDescription=f"{training_job_name}: {decision.reason}"[:1024],
        InferenceSpecification={
            "Containers": [{"Image": image_uri, "ModelDataUrl": model_data_url}],
            "SupportedContentTypes": ["text/csv"],
            "SupportedResponseMIMETypes": ["text/csv"],
        },
        ModelMetrics={"ModelQuality": {"Statistics": {"ContentType": "application/json", "S3Uri": metrics_uri}}},
        ModelApprovalStatus=decision.status,
        CustomerMetadataProperties=customer_metadata(metrics, decision, training_job_name=training_job_name),
        # Same job → same token: SageMaker itself returns the first package on a repeat.
        ClientToken=hashlib.sha256(training_job_name.encode()).hexdigest()[:36],
    )
    return str(answer["ModelPackageArn"])
