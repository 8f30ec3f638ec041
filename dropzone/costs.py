"""What an EMR Serverless job run cost, from GetJobRun's ``billedResourceUtilization``, and what a SageMaker
training job cost, from DescribeTrainingJob's ``BillableTimeInSeconds`` and instances.

``PRICES`` is the one table of list prices (us-east-1, USD, checked 2026; docs/completion.md, "Run cost"). It
supplies the defaults of template.yaml's price parameters and of the local runtime; deployed functions read the
prices from the PRICE_* variables, so an operator in another region overrides them without touching code.

AWS bills vCPU-hours and memory GB-hours with a 1-minute minimum per worker, and storage only beyond the 20 GB
every worker gets for free; ``billedResourceUtilization`` already applies both rules, so the cost is a plain
sum of quantity times price.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from dropzone.settings import Settings


@dataclass(frozen=True)
class Prices:
    """USD per vCPU-hour, per memory GB-hour and per billed storage GB-hour."""

    vcpu_hour: float
    gb_hour: float
    storage_gb_hour: float


# EMR Serverless list prices in us-east-1 by worker architecture (the application's `architecture`).
# Source: https://aws.amazon.com/emr/pricing/ (the EMR Serverless tab).
PRICES: Mapping[str, Prices] = {
    "ARM64": Prices(vcpu_hour=0.042094, gb_hour=0.004628, storage_gb_hour=0.000111),
    "X86_64": Prices(vcpu_hour=0.052624, gb_hour=0.0057785, storage_gb_hour=0.000111),
}


# SageMaker training, on-demand USD per instance-hour in us-east-1, for the CPU instance types an XGBoost script-mode
# job runs on. Source: https://aws.amazon.com/sagemaker/pricing/ (on-demand, Training). Another type or region: the
# PRICE_TRAINING variable ("ml.g4dn.xlarge=0.736,ml.m5.large=0.13") adds or replaces prices.
TRAINING_PRICES: Mapping[str, float] = {
    "ml.m5.large": 0.115,
    "ml.m5.xlarge": 0.23,
    "ml.m5.2xlarge": 0.461,
    "ml.m5.4xlarge": 0.922,
    "ml.c5.xlarge": 0.204,
    "ml.c5.2xlarge": 0.408,
    "ml.c5.4xlarge": 0.816,
}


@dataclass(frozen=True)
class RunCost:
    vcpu_hours: float
    memory_gb_hours: float
    storage_gb_hours: float
    cost_usd: float

    def to_dict(self) -> dict[str, float]:
        return {
            "vcpu_hours": self.vcpu_hours,
            "memory_gb_hours": self.memory_gb_hours,
            "storage_gb_hours": self.storage_gb_hours,
            "cost_usd": self.cost_usd,
        }


def prices_for(architecture: str) -> Prices:
    """The list prices of an architecture (``ARM64`` or ``X86_64``; ``x86`` and ``arm`` spellings accepted)."""
    key = architecture.strip().upper().replace("-", "_")
    key = {"ARM": "ARM64", "AARCH64": "ARM64", "X86": "X86_64", "AMD64": "X86_64"}.get(key, key)
    if key not in PRICES:
        raise ValueError(f"unknown EMR Serverless architecture {architecture!r}: use one of {', '.join(PRICES)}")
    return PRICES[key]


def prices_from_settings(settings: Settings) -> Prices:
    """PRICE_* variables when set, else the table's prices for EMR_ARCHITECTURE."""
    default = prices_for(settings.emr_architecture)

    def price(value: str | None, fallback: float, name: str) -> float:
        if value is None:
            return fallback
        try:
            number = float(value)
        except ValueError:
            raise ValueError(f"{name}={value!r} is not a price in USD") from None
        if number < 0:
            raise ValueError(f"{name}={value!r} cannot be negative")
        return number

    return Prices(
        vcpu_hour=price(settings.price_vcpu_hour, default.vcpu_hour, "PRICE_VCPU_HOUR"),
        gb_hour=price(settings.price_gb_hour, default.gb_hour, "PRICE_GB_HOUR"),
        storage_gb_hour=price(settings.price_storage_gb_hour, default.storage_gb_hour, "PRICE_STORAGE_GB_HOUR"),
    )


def run_cost(billed: Mapping[str, Any] | None, prices: Prices) -> RunCost:
    """Cost of a run from ``billedResourceUtilization`` (keys vCPUHour, memoryGBHour, storageGBHour)."""
    billed = billed or {}
    vcpu = float(billed.get("vCPUHour", 0.0) or 0.0)
    memory = float(billed.get("memoryGBHour", 0.0) or 0.0)
    storage = float(billed.get("storageGBHour", 0.0) or 0.0)
    for name, value in (("vCPUHour", vcpu), ("memoryGBHour", memory), ("storageGBHour", storage)):
        if value < 0:
            raise ValueError(f"billedResourceUtilization.{name} is negative: {value}")
    cost = vcpu * prices.vcpu_hour + memory * prices.gb_hour + storage * prices.storage_gb_hour
    return RunCost(vcpu_hours=vcpu, memory_gb_hours=memory, storage_gb_hours=storage, cost_usd=round(cost, 6))


@dataclass(frozen=True)
class TrainingCost:
    """A training job's billed instance time; ``cost_usd`` is None when an instance type has no known price."""

    instances: str  # e.g. "1 x ml.m5.large"
    billable_seconds: int  # BillableTimeInSeconds: wall time per instance (managed spot: the time paid for)
    instance_hours: float  # billable time x instances
    cost_usd: float | None
    unpriced: tuple[str, ...] = ()  # instance types without a price

    def to_dict(self) -> dict[str, Any]:
        return {
            "instances": self.instances,
            "billable_seconds": self.billable_seconds,
            "instance_hours": self.instance_hours,
            "cost_usd": self.cost_usd,
        }


def training_prices_from_settings(settings: Settings) -> dict[str, float]:
    """TRAINING_PRICES, with the PRICE_TRAINING variable's ``type=price`` pairs added or replacing."""
    prices = dict(TRAINING_PRICES)
    text = (settings.price_training or "").strip()
    for pair in filter(None, (p.strip() for p in text.split(","))):
        instance, sep, value = pair.partition("=")
        try:
            number = float(value) if sep and instance.strip() else float("nan")
        except ValueError:
            number = float("nan")
        if not number >= 0:  # also NaN: not a price
            raise ValueError(f"PRICE_TRAINING: {pair!r} is not <instance type>=<USD per hour>, e.g. ml.m5.large=0.115")
        prices[instance.strip()] = number
    return prices


def training_cost(job: Mapping[str, Any], prices: Mapping[str, float]) -> TrainingCost | None:
    """Cost of a training job from its DescribeTrainingJob response; None before SageMaker reports billable time.

    SageMaker bills each instance for ``BillableTimeInSeconds`` (with managed spot training, the time paid for at the
    on-demand price's equivalent); a heterogeneous cluster lists ``InstanceGroups`` instead of one instance type."""
    billable = job.get("BillableTimeInSeconds")
    if billable is None:
        return None
    config = job.get("ResourceConfig") or {}
    groups = config.get("InstanceGroups") or [
        {"InstanceType": config.get("InstanceType"), "InstanceCount": config.get("InstanceCount", 1)}
    ]
    seconds = int(billable)
    if seconds < 0:
        raise ValueError(f"BillableTimeInSeconds is negative: {seconds}")
    hours, cost, unpriced, described = 0.0, 0.0, [], []
    for group in groups:
        instance, count = str(group.get("InstanceType")), int(group.get("InstanceCount") or 1)
        described.append(f"{count} x {instance}")
        hours += seconds * count / 3600
        if instance in prices:
            cost += seconds * count / 3600 * prices[instance]
        else:
            unpriced.append(instance)
    return TrainingCost(
        instances=" + ".join(described),
        billable_seconds=seconds,
        instance_hours=round(hours, 6),
        cost_usd=None if unpriced else round(cost, 6),
        unpriced=tuple(unpriced),
    )
