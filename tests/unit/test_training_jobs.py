"""CreateTrainingJob request building, the deterministic name, the image map and AWS errors moto does not fake."""

from __future__ import annotations

import json
import subprocess
from dataclasses import replace
from pathlib import Path

import boto3
import pytest
from botocore.stub import Stubber

from dropzone.contract import load_contract
from dropzone.training_jobs import (
    XGBOOST_IMAGE_ACCOUNTS,
    XGBOOST_VERSION,
    TrainingInputs,
    TrainingQuotaError,
    UnknownRegion,
    build_training_job_request,
    create_training_job,
    inputs_from_manifest,
    model_package_group_name,
    training_job_name,
    xgboost_image_uri,
)

ROOT = Path(__file__).resolve().parents[2]
TOOLS_PYTHON = ROOT / ".venv-tools" / "bin" / "python"
ORDERS = load_contract(ROOT / "contracts" / "orders.yaml")
MANIFEST = {
    "entity": "customer_id",
    "label": {"name": "active_next_30d", "kind": "active_in_horizon"},
    "features": [{"name": "amount_sum_30d", "type": "double"}, {"name": "segment", "type": "string"}],
    "outputs": {"train": "train/", "validation": "s3://b/features/orders/run=abc-1/validation/", "score": "score/"},
    "rows": {"train": 80, "validation": 20},
}


def _inputs() -> TrainingInputs:
    return inputs_from_manifest(
        MANIFEST, dataset="orders", run_id="abc-1", job_run_id="00f1", run_prefix="s3://b/features/orders/run=abc-1/"
    )


def test_name_is_deterministic_short_and_in_sagemakers_alphabet() -> None:
    a = training_job_name("dz", "orders", "00fabc123")
    assert a == training_job_name("dz", "orders", "00fabc123")
    assert a != training_job_name("dz", "orders", "00fabc124")
    assert a.startswith("dz-orders-")
    assert len(a) == len("dz-orders-") + 10
    long = training_job_name("dropzone-prod", "a_very_long_dataset_name_" + "x" * 38, "run")
    assert len(long) <= 63
    assert "_" not in long
    assert model_package_group_name("dropzone", "web_events") == "dropzone-web-events"


def test_manifest_outputs_resolve_against_the_run_prefix() -> None:
    inputs = _inputs()
    assert inputs.train_uri == "s3://b/features/orders/run=abc-1/train/"
    assert inputs.validation_uri == "s3://b/features/orders/run=abc-1/validation/"
    assert inputs.task == "classification"
    assert inputs.features == ("amount_sum_30d", "segment")
    with pytest.raises(ValueError, match=r"lacks outputs"):
        inputs_from_manifest(
            {"label": {}, "features": []}, dataset="orders", run_id="r", job_run_id="j", run_prefix="s3://b/"
        )


def test_request_is_script_mode_with_contract_hyperparameters() -> None:
    request = build_training_job_request(
        _inputs(),
        ORDERS,
        name="dz-orders-1",
        region="eu-west-1",
        role_arn="arn:aws:iam::1:role/sm",
        source_uri="s3://b/assets/training/source.tar.gz",
        output_uri="s3://b/models/orders/",
    )
    hps = {k: json.loads(v) for k, v in request["HyperParameters"].items()}
    assert hps["sagemaker_program"] == "train.py"
    assert hps["sagemaker_submit_directory"] == "s3://b/assets/training/source.tar.gz"
    assert hps["max_depth"] == 5
    assert hps["early_stopping_rounds"] == 20
    assert hps["label"] == "active_next_30d"
    assert hps["features"] == "amount_sum_30d,segment"
    assert request["AlgorithmSpecification"]["TrainingImage"] == (
        f"141502667606.dkr.ecr.eu-west-1.amazonaws.com/sagemaker-xgboost:{XGBOOST_VERSION}"
    )
    assert [c["ChannelName"] for c in request["InputDataConfig"]] == ["train", "validation"]
    assert "EnableManagedSpotTraining" not in request
    assert "MaxWaitTimeInSeconds" not in request["StoppingCondition"]
    # the request is valid for botocore's model of the API
    client = boto3.client("sagemaker", region_name="eu-west-1", aws_access_key_id="x", aws_secret_access_key="x")
    with Stubber(client) as stub:
        stub.add_response(
            "create_training_job", {"TrainingJobArn": "arn:aws:sagemaker:eu-west-1:1:training-job/x"}, request
        )
        client.create_training_job(**request)


def test_spot_training_sets_max_wait() -> None:
    assert ORDERS.training is not None
    spot = replace(ORDERS, training=replace(ORDERS.training, spot=True, max_wait_seconds=7200))
    request = build_training_job_request(
        _inputs(),
        spot,
        name="n",
        region="us-east-1",
        role_arn="r",
        source_uri="s3://b/s.tar.gz",
        output_uri="s3://b/m/",
    )
    assert request["EnableManagedSpotTraining"] is True
    assert request["StoppingCondition"] == {"MaxRuntimeInSeconds": 3600, "MaxWaitTimeInSeconds": 7200}


def test_unknown_region_is_named() -> None:
    with pytest.raises(UnknownRegion, match="mars-north-1"):
        xgboost_image_uri("mars-north-1")


def _client() -> object:
    return boto3.client("sagemaker", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")


def _request() -> dict[str, object]:
    return build_training_job_request(
        _inputs(),
        ORDERS,
        name="dz-orders-abc",
        region="us-east-1",
        role_arn="arn:aws:iam::1:role/sm",
        source_uri="s3://b/s.tar.gz",
        output_uri="s3://b/models/orders/",
    )


def test_resource_in_use_means_the_job_exists_and_is_described() -> None:
    # GIVEN SageMaker answers ResourceInUse (a duplicate completion event; moto would overwrite instead)
    client = _client()
    with Stubber(client) as stub:
        stub.add_client_error("create_training_job", "ResourceInUse", "Training job names must be unique")
        stub.add_response(
            "describe_training_job",
            {
                "TrainingJobName": "dz-orders-abc",
                "TrainingJobArn": "arn:aws:sagemaker:us-east-1:1:training-job/dz-orders-abc",
                "TrainingJobStatus": "InProgress",
                "SecondaryStatus": "Training",
                "AlgorithmSpecification": {"TrainingInputMode": "File"},
                "ModelArtifacts": {"S3ModelArtifacts": ""},
                "ResourceConfig": {"VolumeSizeInGB": 30},
                "StoppingCondition": {},
                "CreationTime": "2026-01-01T00:00:00Z",
            },
            {"TrainingJobName": "dz-orders-abc"},
        )
        # WHEN the job is created
        description, created = create_training_job(client, _request())
    # THEN nothing fails and the existing job is returned
    assert created is False
    assert description["TrainingJobStatus"] == "InProgress"


def test_quota_error_names_the_quota() -> None:
    client = _client()
    with Stubber(client) as stub:
        stub.add_client_error(
            "create_training_job", "ResourceLimitExceeded", "The account-level service limit is 0 Instances"
        )
        with pytest.raises(TrainingQuotaError, match=r"'ml\.m5\.large for training job usage'.*limit is 0"):
            create_training_job(client, _request())


@pytest.mark.skipif(
    not TOOLS_PYTHON.exists(),
    reason="needs the sagemaker SDK in .venv-tools (created by `make tools`, run by make test)",
)
def test_image_map_equals_the_sagemaker_sdk() -> None:
    regions = sorted(XGBOOST_IMAGE_ACCOUNTS)
    script = (
        "import json, sys\n"
        "try:\n    from sagemaker.core import image_uris\n"
        "except ImportError:\n    from sagemaker import image_uris\n"
        "print(json.dumps({r: image_uris.retrieve('xgboost', region=r, version=sys.argv[1]) for r in sys.argv[2:]}))\n"
    )
    result = subprocess.run(
        [str(TOOLS_PYTHON), "-c", script, XGBOOST_VERSION, *regions],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    sdk = json.loads(result.stdout.strip().splitlines()[-1])
    assert {r: xgboost_image_uri(r) for r in regions} == sdk
