"""EMR Serverless run cost from billedResourceUtilization at the configured prices."""

from __future__ import annotations

import pytest

from dropzone.costs import PRICES, prices_for, prices_from_settings, run_cost
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
