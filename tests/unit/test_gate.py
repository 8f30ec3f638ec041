"""The model gate's decision: champion by the contract's margin, baseline for a first model, policy otherwise."""

from __future__ import annotations

import pytest

from dropzone.contract import Gate
from dropzone.gate import APPROVED, PENDING, REJECTED, Champion, customer_metadata, decide


def _metrics(**validation: float | None) -> dict[str, object]:
    return {
        "validation": validation,
        "baseline": {"auc": 0.5, "pr_auc": 0.2, "logloss": 0.5, "rmse": 10.0, "mae": 8.0},
        "dataset": "orders",
        "run_id": "b-1",
    }


def test_first_model_is_approved_when_it_beats_the_baseline() -> None:
    decision = decide(_metrics(auc=0.55), Gate(metric="auc", margin=0.1), champion=None)
    assert decision.status == APPROVED  # the margin applies to champions, not to the constant baseline
    assert decision.against == "baseline"
    assert decision.reference == 0.5


def test_first_model_no_better_than_the_baseline_follows_the_policy() -> None:
    assert decide(_metrics(auc=0.5), Gate(metric="auc"), None).status == REJECTED
    assert decide(_metrics(auc=0.49), Gate(metric="auc", when_not_better="pending"), None).status == PENDING


@pytest.mark.parametrize(
    ("value", "expected"),
    [(0.806, APPROVED), (0.805, REJECTED), (0.80, REJECTED), (0.79, REJECTED)],
)
def test_champion_must_be_beaten_by_more_than_the_margin(value: float, expected: str) -> None:
    champion = Champion(arn="arn:champion", metrics={"auc": 0.8})
    decision = decide(_metrics(auc=value), Gate(metric="auc", margin=0.005), champion)
    assert decision.status == expected
    assert decision.champion_arn == "arn:champion"


def test_lower_is_better_for_losses_and_errors() -> None:
    champion = Champion(arn="a", metrics={"rmse": 5.0, "logloss": 0.4})
    assert decide(_metrics(rmse=4.0), Gate(metric="rmse", margin=0.5), champion).status == APPROVED
    assert decide(_metrics(rmse=4.6), Gate(metric="rmse", margin=0.5), champion).status == REJECTED
    assert decide(_metrics(logloss=0.45), Gate(metric="logloss"), champion).status == REJECTED
    assert decide(_metrics(rmse=9.0), Gate(metric="rmse"), None).status == APPROVED  # beats the mean's 10.0


def test_unavailable_metric_is_never_approved() -> None:
    decision = decide(_metrics(auc=None), Gate(metric="auc", when_not_better="pending"), None)
    assert decision.status == PENDING
    assert "unavailable" in decision.reason


def test_champion_without_the_metric_goes_to_a_human() -> None:
    decision = decide(_metrics(pr_auc=0.7), Gate(metric="pr_auc"), Champion(arn="a", metrics={"auc": 0.9}))
    assert decision.status == PENDING


def test_customer_metadata_carries_metrics_as_strings() -> None:
    decision = decide(_metrics(auc=0.7), Gate(metric="auc"), None)
    properties = customer_metadata(_metrics(auc=0.7), decision, training_job_name="dz-orders-1")
    assert properties["metric.auc"] == "0.7"
    assert properties["baseline.rmse"] == "10.0"
    assert properties["training_job"] == "dz-orders-1"
    assert all(isinstance(v, str) and len(v) <= 256 for v in properties.values())
    assert len(properties) <= 50
