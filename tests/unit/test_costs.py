"""EMR Serverless run cost from billedResourceUtilization, SageMaker training cost from billable time, at the
configured prices."""

from __future__ import annotations

import pytest

from dropzone.costs import (
    PRICES,
    TRAINING_PRICES,
    prices_for,
    prices_from_settings,
    run_cost,
    training_cost,
    training_prices_from_settings,
)
from dropzone.settings import Settings

BILLED = {"vCPUHour": 4.0, "memoryGBHour": 16.0, "storageGBHour": 100.0}


def test_arm64_list_prices() -> None:
    # 4 x 0.042094 + 16 x 0.004628 + 100 x 0.000111 = 0.168376 + 0.074048 + 0.0111
    cost = run_cost(BILLED, prices_for("ARM64"))
    assert cost.cost_usd == pytest.approx(0.253524, abs=1e-9)
    assert (cost.vcpu_hours, cost.memory_gb_hours, cost.storage_gb_hours) == (4.0, 16.0, 100.0)


def test_x86_list_prices() -> None:
    # 4 x 0.052624 + 16 x 0.0057785 + 100 x 0.000111 = 0.210496 + 0.092456 + 0.0111
    assert run_cost(BILLED, prices_for("X86_64")).cost_usd == pytest.approx(0.314052, abs=1e-9)
    assert prices_for("x86") == prices_for("x86_64") == PRICES["X86_64"]


def test_settings_override_the_table() -> None:
    settings = Settings(emr_architecture="X86_64", price_vcpu_hour="0.1", price_gb_hour="0.01")
    prices = prices_from_settings(settings)
    assert (prices.vcpu_hour, prices.gb_hour, prices.storage_gb_hour) == (0.1, 0.01, 0.000111)
    assert run_cost(BILLED, prices).cost_usd == pytest.approx(0.4 + 0.16 + 0.0111)


def test_missing_utilization_costs_nothing() -> None:
    assert run_cost(None, prices_for("ARM64")).cost_usd == 0.0


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (Settings(emr_architecture="SPARC"), "unknown EMR Serverless architecture 'SPARC'"),
        (Settings(price_gb_hour="cheap"), "PRICE_GB_HOUR='cheap' is not a price"),
        (Settings(price_vcpu_hour="-1"), "PRICE_VCPU_HOUR='-1' cannot be negative"),
    ],
)
def test_bad_configuration_is_named(settings: Settings, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        prices_from_settings(settings)


def test_negative_utilization_is_refused() -> None:
    with pytest.raises(ValueError, match="vCPUHour is negative"):
        run_cost({"vCPUHour": -1}, prices_for("ARM64"))


# ---- SageMaker training jobs -----------------------------------------------------------------------------


def _job(seconds: int | None, **config: object) -> dict[str, object]:
    job: dict[str, object] = {"ResourceConfig": config or {"InstanceType": "ml.m5.large", "InstanceCount": 1}}
    if seconds is not None:
        job["BillableTimeInSeconds"] = seconds
    return job


def test_a_training_job_costs_its_billable_time_on_each_instance() -> None:
    # 1800 s = 0.5 h on 2 x ml.m5.xlarge at $0.23: 0.23
    cost = training_cost(_job(1800, InstanceType="ml.m5.xlarge", InstanceCount=2), TRAINING_PRICES)
    assert cost is not None
    assert (cost.instances, cost.billable_seconds, cost.instance_hours) == ("2 x ml.m5.xlarge", 1800, 1.0)
    assert cost.cost_usd == pytest.approx(0.23, abs=1e-9)


def test_a_heterogeneous_cluster_sums_its_instance_groups() -> None:
    groups = [
        {"InstanceGroupName": "a", "InstanceType": "ml.m5.xlarge", "InstanceCount": 2},
        {"InstanceGroupName": "b", "InstanceType": "ml.c5.xlarge", "InstanceCount": 1},
    ]
    cost = training_cost(_job(1800, InstanceGroups=groups), TRAINING_PRICES)
    assert cost is not None
    # 0.5 h x (2 x 0.23 + 1 x 0.204) = 0.332
    assert (cost.instances, cost.instance_hours) == ("2 x ml.m5.xlarge + 1 x ml.c5.xlarge", 1.5)
    assert cost.cost_usd == pytest.approx(0.332, abs=1e-9)


def test_an_instance_type_without_a_price_has_no_cost_until_price_training_names_it() -> None:
    job = _job(3600, InstanceType="ml.g4dn.xlarge", InstanceCount=1)
    cost = training_cost(job, TRAINING_PRICES)
    assert cost is not None
    assert (cost.cost_usd, cost.unpriced, cost.instance_hours) == (None, ("ml.g4dn.xlarge",), 1.0)
    prices = training_prices_from_settings(Settings(price_training="ml.g4dn.xlarge=0.736, ml.m5.large=0.2"))
    assert training_cost(job, prices).cost_usd == pytest.approx(0.736)  # type: ignore[union-attr]
    assert training_cost(_job(3600), prices).cost_usd == pytest.approx(0.2)  # type: ignore[union-attr]


def test_a_job_sagemaker_has_not_billed_yet_has_no_cost() -> None:
    assert training_cost(_job(None), TRAINING_PRICES) is None


@pytest.mark.parametrize("value", ["ml.m5.large", "ml.m5.large=cheap", "=0.1", "ml.m5.large=-1", "ml.m5.large=nan"])
def test_a_bad_price_training_pair_is_named(value: str) -> None:
    with pytest.raises(ValueError, match=f"PRICE_TRAINING: '{value}' is not <instance type>=<USD per hour>"):
        training_prices_from_settings(Settings(price_training=value))
