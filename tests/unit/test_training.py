"""training/train.py run exactly as SageMaker runs it: a subprocess with the SM_* environment."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import date
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import xgboost as xgb

from dropzone.training_jobs import METRIC_DEFINITIONS

SCRIPT = Path(__file__).resolve().parents[2] / "training" / "train.py"


def _write_channel(directory: Path, seed: int, rows: int, *, regression: bool = False) -> None:
    """Customers whose recent spend and segment drive the label, split into two Spark-style part files."""
    rng = np.random.default_rng(seed)
    spend = rng.gamma(2.0, 50.0, rows)
    orders = rng.poisson(3, rows).astype("int64")
    segment = rng.choice(["consumer", "small_business", "corporate"], rows)
    signup = [date(2020, 1, 1 + int(d) % 28) for d in rng.integers(0, 28, rows)]
    score = 0.02 * spend + 0.5 * orders + np.where(segment == "corporate", 1.5, 0.0) - 4.0
    if regression:
        label = np.maximum(0.0, 10 * score + rng.normal(0, 5, rows))
    else:
        label = (rng.random(rows) < 1 / (1 + np.exp(-score))).astype("int32")
    table = pa.table(
        {
            "customer_id": [f"C{i:06d}" for i in range(rows)],
            "amount_sum_30d": spend,
            "order_id_count_30d": orders,
            "segment": segment,
            "signup_date": signup,
            "returned_rate_30d": pa.array([None if i % 7 == 0 else 0.1 for i in range(rows)], pa.float64()),
            "target": label,
        }
    )
    directory.mkdir(parents=True)
    half = rows // 2
    pq.write_table(table.slice(0, half), directory / "part-00000.parquet")
    pq.write_table(table.slice(half), directory / "part-00001.parquet")
    (directory / "_SUCCESS").write_text("")


def _run(
    tmp_path: Path, hps: dict[str, object] | None, extra_env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("SM_")},
        "SM_CHANNEL_TRAIN": str(tmp_path / "train"),
        "SM_CHANNEL_VALIDATION": str(tmp_path / "validation"),
        "SM_MODEL_DIR": str(tmp_path / "model"),
        "SM_OUTPUT_DATA_DIR": str(tmp_path / "output" / "data"),
        "SM_OUTPUT_DIR": str(tmp_path / "output"),
        **(extra_env or {}),
    }
    if hps is not None:
        env["SM_HPS"] = json.dumps(hps)
    return subprocess.run(
        [sys.executable, str(SCRIPT)], env=env, capture_output=True, text=True, timeout=300, check=False
    )


FEATURES = "amount_sum_30d,order_id_count_30d,segment,signup_date,returned_rate_30d"


@pytest.mark.filterwarnings("ignore:.*Unknown file format")  # "xgboost-model" has no extension by SageMaker's rule
def test_classifier_beats_the_prior_and_prints_every_metric_definition(tmp_path: Path) -> None:
    # GIVEN a train and a validation channel of real Parquet part files
    _write_channel(tmp_path / "train", seed=1, rows=1500)
    _write_channel(tmp_path / "validation", seed=2, rows=500)
    hps = {
        "label": "target",
        "entity": "customer_id",
        "features": FEATURES,
        "task": "classification",
        "max_depth": 3,
        "eta": 0.2,
        "num_round": 200,
        "early_stopping_rounds": 10,
        "sagemaker_program": "train.py",
    }

    # WHEN the script runs as in the container
    result = _run(tmp_path, hps)

    # THEN it succeeds, saves the model and metrics, and beats the baseline of predicting the prior
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "model" / "xgboost-model").stat().st_size > 0
    metrics = json.loads((tmp_path / "output" / "data" / "metrics.json").read_text())
    assert metrics["baseline"]["auc"] == pytest.approx(0.5)
    assert metrics["validation"]["auc"] > 0.7
    assert metrics["validation"]["logloss"] < metrics["baseline"]["logloss"]
    assert metrics["validation"]["pr_auc"] > metrics["baseline"]["pr_auc"]
    assert metrics["best_iteration"] < 200  # early stopping ended the run
    booster = xgb.Booster()
    booster.load_model(str(tmp_path / "model" / "xgboost-model"))
    assert booster.num_boosted_rounds() == metrics["best_iteration"] + 1  # only the trees up to the best round
    assert set(metrics["feature_importance"]) <= set(FEATURES.split(","))
    assert "amount_sum_30d" in metrics["feature_importance"]
    assert "sagemaker_program" not in metrics["hyperparameters"]
    # AND every printed metric is captured by a MetricDefinitions regex with the printed value
    captured = {}
    for definition in METRIC_DEFINITIONS:
        match = re.search(definition["Regex"], result.stdout)
        if match:
            captured[definition["Name"]] = float(match.group(1))
    assert captured["validation:auc"] == pytest.approx(metrics["validation"]["auc"], abs=1e-6)
    assert captured["validation:logloss"] == pytest.approx(metrics["validation"]["logloss"], abs=1e-6)
    assert captured["baseline:pr_auc"] == pytest.approx(metrics["baseline"]["pr_auc"], abs=1e-6)
    assert captured["best_iteration"] == metrics["best_iteration"]
    assert "validation:rmse" not in captured


def test_regressor_beats_the_mean_with_string_hyperparameters_from_the_file(tmp_path: Path) -> None:
    # GIVEN hyperparameters only in the container's hyperparameters.json, every value a string
    _write_channel(tmp_path / "train", seed=3, rows=1200, regression=True)
    _write_channel(tmp_path / "validation", seed=4, rows=400, regression=True)
    hp_file = tmp_path / "hyperparameters.json"
    hp_file.write_text(
        json.dumps(
            {
                "label": "target",
                "entity": "customer_id",
                "task": "regression",
                "num_round": "150",
                "early_stopping_rounds": "10",
                "max_depth": "4",
            }
        )
    )

    # WHEN the script runs without SM_HPS
    result = _run(tmp_path, None, {"SM_HYPERPARAMETERS_FILE": str(hp_file)})

    # THEN the model beats the mean on RMSE and MAE, and all non-id columns were features
    assert result.returncode == 0, result.stderr
    metrics = json.loads((tmp_path / "output" / "data" / "metrics.json").read_text())
    assert metrics["task"] == "regression"
    assert metrics["validation"]["rmse"] < 0.8 * metrics["baseline"]["rmse"]
    assert metrics["validation"]["mae"] < metrics["baseline"]["mae"]
    assert metrics["hyperparameters"]["max_depth"] == 4
    assert "customer_id" not in metrics["features"]
    assert "target" not in metrics["features"]
    rmse = next(d["Regex"] for d in METRIC_DEFINITIONS if d["Name"] == "validation:rmse")
    match = re.search(rmse, result.stdout)
    assert match
    assert float(match.group(1)) == pytest.approx(metrics["validation"]["rmse"], abs=1e-6)


def test_missing_label_column_fails_with_a_clear_reason(tmp_path: Path) -> None:
    # GIVEN data without the label the hyperparameters name
    _write_channel(tmp_path / "train", seed=5, rows=50)
    _write_channel(tmp_path / "validation", seed=6, rows=50)

    # WHEN the script runs
    result = _run(tmp_path, {"label": "active_next_30d", "features": FEATURES})

    # THEN it fails, names the column, and leaves the reason where SageMaker reports it
    assert result.returncode == 2
    assert "label column 'active_next_30d' is not in the data" in result.stderr
    assert "active_next_30d" in (tmp_path / "output" / "failure").read_text()
    assert not (tmp_path / "model" / "xgboost-model").exists()


def test_empty_channel_is_named(tmp_path: Path) -> None:
    _write_channel(tmp_path / "train", seed=7, rows=50)
    (tmp_path / "validation").mkdir()

    result = _run(tmp_path, {"label": "target"})

    assert result.returncode == 2
    assert "channel 'validation'" in result.stderr
    assert "no .parquet files" in result.stderr


def test_spark_decimals_and_dates_become_numbers_and_lists_are_refused() -> None:
    import datetime
    import decimal

    import pandas as pd

    from training.train import TrainingInputError, _prepare

    frame = pd.DataFrame(
        {
            "spend": [decimal.Decimal("1.50"), None],
            "signup": [datetime.date(1970, 1, 11), None],
            "tags": [["a"], ["b"]],
        }
    )
    prepared = _prepare(frame, ["spend", "signup"], {})
    assert prepared["spend"].tolist()[0] == 1.5
    assert prepared["signup"].tolist()[0] == 10.0  # days since 1970-01-01
    with pytest.raises(TrainingInputError, match="feature column 'tags' holds list values"):
        _prepare(frame, ["tags"], {})
