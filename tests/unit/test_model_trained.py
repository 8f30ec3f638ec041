"""ModelTrainedFunction: SageMaker training job state changes → gate against the champion → register once."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from moto import mock_aws

from dropzone.runs import training_sk
from tests.unit.completion_stack import BUCKET, Stack, emr_event, load_app, make_stack, training_event

GROUP = "dropzone-orders"


def _metrics(auc: float, *, baseline_auc: float = 0.5) -> dict[str, Any]:
    """A metrics.json as training/train.py writes it."""
    return {
        "task": "classification",
        "dataset": "orders",
        "run_id": "abc-1",
        "label": "active_next_30d",
        "rows": {"train": 800, "validation": 200},
        "best_iteration": 41,
        "validation": {"auc": auc, "pr_auc": 0.61, "logloss": 0.48},
        "baseline": {"auc": baseline_auc, "pr_auc": 0.33, "logloss": 0.63, "prior": 0.33},
        "feature_importance": {"amount_sum_30d": 12.5},
    }


@pytest.fixture
def stack(aws_env: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    with mock_aws():
        yield make_stack(monkeypatch)


def _trained_job(stack: Stack, lambda_context: Any, metrics: dict[str, Any], *, files_from: int = 0) -> str:
    """A feature run that succeeded and started its training job (through JobFinishedFunction), and its output."""
    stack.accept_files("orders", 2, start=files_from)
    started = stack.start_batch("orders")
    stack.write_run_manifest("orders", started.client_token)
    job_finished = load_app("job_finished")
    job_finished.handler(emr_event("emr_job_success.json", stack.app_id, started.job_run_id), lambda_context)
    name = str(stack.item("orders", f"RUN#{started.job_run_id}")["training_job"])  # type: ignore[index]
    job = stack.sagemaker.describe_training_job(TrainingJobName=name)
    stack.upload_training_output(job["ModelArtifacts"]["S3ModelArtifacts"], metrics)
    return name


def _packages(stack: Stack) -> list[dict[str, Any]]:
    summaries = stack.sagemaker.list_model_packages(ModelPackageGroupName=GROUP)["ModelPackageSummaryList"]
    return [stack.sagemaker.describe_model_package(ModelPackageName=s["ModelPackageArn"]) for s in summaries]


def test_first_model_beating_the_baseline_is_approved_with_its_metrics(stack: Stack, lambda_context: Any) -> None:
    # GIVEN a completed training job whose model beats the prior (AUC 0.81 vs 0.5)
    name = _trained_job(stack, lambda_context, _metrics(0.81))
    app = load_app("model_trained")

    # WHEN its Completed event arrives
    answer = app.handler(training_event("sagemaker_training_completed.json", name), lambda_context)

    # THEN the model is registered Approved in the dataset's group, with its metrics attached
    assert answer == {"batchItemFailures": []}
    (package,) = _packages(stack)
    assert package["ModelApprovalStatus"] == "Approved"
    assert package["CustomerMetadataProperties"]["metric.auc"] == "0.81"
    assert package["CustomerMetadataProperties"]["training_job"] == name
    metrics_uri = package["ModelMetrics"]["ModelQuality"]["Statistics"]["S3Uri"]
    assert metrics_uri == f"s3://{BUCKET}/models/orders/{name}/metrics.json"
    published = json.loads(stack.s3.get_object(Bucket=BUCKET, Key=f"models/orders/{name}/metrics.json")["Body"].read())
    assert published["validation"]["auc"] == 0.81
    container = package["InferenceSpecification"]["Containers"][0]
    assert container["ModelDataUrl"].endswith(f"/{name}/output/model.tar.gz")
    assert "sagemaker-xgboost" in container["Image"]
    # AND the ledger and the notification say so
    item = stack.item("orders", training_sk(name))
    assert item is not None
    assert item["decision"] == "Approved"
    assert item["model_package_arn"] == package["ModelPackageArn"]
    assert item["metrics"]["validation"]["auc"] == 0.81
    (note,) = stack.notifications()
    assert note["kind"] == "model_registered"
    assert note["status"] == "Approved"
    assert note["against"] == "baseline"


def test_duplicate_completed_event_registers_once(stack: Stack, lambda_context: Any) -> None:
    name = _trained_job(stack, lambda_context, _metrics(0.81))
    app = load_app("model_trained")
    event = training_event("sagemaker_training_completed.json", name)

    app.handler(event, lambda_context)
    answer = app.handler(event, lambda_context)

    assert answer == {"batchItemFailures": []}
    assert len(_packages(stack)) == 1
    assert len(stack.notifications()) == 1


def test_crash_after_registering_before_recording_does_not_register_twice(stack: Stack, lambda_context: Any) -> None:
    # GIVEN the package was registered but the ledger never got its ARN (the function died in between)
    name = _trained_job(stack, lambda_context, _metrics(0.81))
    app = load_app("model_trained")
    app.completions.training_job_finished(name, now=datetime.now(UTC))
    stack.ledger.update_with_condition("DATASET#orders", training_sk(name), remove=("model_package_arn",))

    # WHEN the event is redelivered
    app.handler(training_event("sagemaker_training_completed.json", name), lambda_context)

    # THEN the existing package is found and recorded, not registered again
    (package,) = _packages(stack)
    assert stack.item("orders", training_sk(name))["model_package_arn"] == package["ModelPackageArn"]  # type: ignore[index]


def test_model_not_beating_the_champion_by_the_margin_is_rejected(stack: Stack, lambda_context: Any) -> None:
    # GIVEN an approved champion with AUC 0.81 and a new model at 0.813 (margin in orders.yaml: 0.005)
    first = _trained_job(stack, lambda_context, _metrics(0.81))
    app = load_app("model_trained")
    app.handler(training_event("sagemaker_training_completed.json", first), lambda_context)
    second = _trained_job(stack, lambda_context, _metrics(0.813), files_from=10)
    stack.notifications()

    # WHEN the second job completes
    app.handler(training_event("sagemaker_training_completed.json", second), lambda_context)

    # THEN it is registered Rejected (the contract's when_not_better), compared with the champion
    statuses = {p["CustomerMetadataProperties"]["training_job"]: p["ModelApprovalStatus"] for p in _packages(stack)}
    assert statuses == {first: "Approved", second: "Rejected"}
    (note,) = stack.notifications()
    assert note["against"] == "champion"
    assert note["reference"] == 0.81


def test_model_beating_the_champion_by_more_than_the_margin_is_approved(stack: Stack, lambda_context: Any) -> None:
    first = _trained_job(stack, lambda_context, _metrics(0.81))
    app = load_app("model_trained")
    app.handler(training_event("sagemaker_training_completed.json", first), lambda_context)
    second = _trained_job(stack, lambda_context, _metrics(0.83), files_from=10)

    app.handler(training_event("sagemaker_training_completed.json", second), lambda_context)

    item = stack.item("orders", training_sk(second))
    assert item is not None
    assert item["decision"] == "Approved"


def test_failed_training_is_recorded_and_notified_once(
    stack: Stack, lambda_context: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a training job that SageMaker reports Failed (moto's jobs only complete: the answer is patched)
    name = _trained_job(stack, lambda_context, _metrics(0.81))
    app = load_app("model_trained")

    def failed(parsed: dict[str, Any], **_: Any) -> None:
        parsed.update(TrainingJobStatus="Failed", FailureReason="AlgorithmError: label column missing")
        parsed["BillableTimeInSeconds"] = 90  # a failed job is billed too

    app.completions.sagemaker.meta.events.register("after-call.sagemaker.DescribeTrainingJob", failed)
    event = training_event("sagemaker_training_failed.json", name)

    # WHEN its Failed event arrives twice
    app.handler(event, lambda_context)
    answer = app.handler(event, lambda_context)

    # THEN the failure and its reason are recorded, one notification goes out, nothing is registered
    assert answer == {"batchItemFailures": []}
    item = stack.item("orders", training_sk(name))
    assert item is not None
    assert item["status"] == "Failed"
    assert item["failure_reason"] == "AlgorithmError: label column missing"
    # what it cost: 90 s on the contract's one ml.m5.large at $0.115 an hour
    assert (item["instances"], item["billable_seconds"]) == ("1 x ml.m5.large", 90)
    assert float(item["cost_usd"]) == pytest.approx(90 / 3600 * 0.115, abs=1e-6)
    # AND once as the TrainingCostUSD metric, with the dataset dimension
    lines = capsys.readouterr().out.splitlines()
    documents = [json.loads(x) for x in lines if x.startswith("{") and '"TrainingCostUSD"' in x and '"_aws"' in x]
    assert [(d["TrainingCostUSD"], d["dataset"]) for d in documents] == [
        ([pytest.approx(90 / 3600 * 0.115, abs=1e-6)], "orders")
    ]
    (note,) = stack.notifications()
    assert note["kind"] == "training_failed"
    assert "label column missing" in note["reason"]
    assert _packages(stack) == []


def test_jobs_of_other_prefixes_are_ignored(stack: Stack, lambda_context: Any) -> None:
    app = load_app("model_trained")
    calls: list[str] = []
    app.completions.sagemaker.meta.events.register(
        "before-call.sagemaker.DescribeTrainingJob", lambda **_: calls.append("x")
    )

    answer = app.handler(training_event("sagemaker_training_completed.json", "someone-elses-job"), lambda_context)

    assert answer == {"batchItemFailures": []}
    assert calls == []
