"""The training script SageMaker runs in script mode on the XGBoost framework container.

Reads the Parquet features of a Spark run from SM_CHANNEL_TRAIN / SM_CHANNEL_VALIDATION, trains XGBoost with
early stopping on the validation channel, writes the model to SM_MODEL_DIR and ``metrics.json`` (validation
metrics, the baseline of a constant prediction, feature importance) to SM_OUTPUT_DATA_DIR, and prints one line
per metric for the training job's MetricDefinitions (dropzone/training_jobs.py holds the regexes).

Runs the same on a laptop: ``SM_CHANNEL_TRAIN=... SM_CHANNEL_VALIDATION=... SM_MODEL_DIR=...
SM_OUTPUT_DATA_DIR=... SM_HPS='{"label": ...}' python training/train.py``. Kept to Python 3.9 syntax and to
the xgboost API shared by 1.7 (the container) and 3.x (the local venv). Only the container's own packages:
xgboost, numpy, pandas, pyarrow, scikit-learn.
"""

from __future__ import annotations

import datetime
import json
import math
import numbers
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xgboost as xgb
from sklearn.metrics import average_precision_score, log_loss, mean_absolute_error, mean_squared_error, roc_auc_score

HYPERPARAMETERS_FILE = "/opt/ml/input/config/hyperparameters.json"
MODEL_FILE = "xgboost-model"  # the name the SageMaker XGBoost serving stack loads
METRIC_PREFIX = "[dropzone]"
CLASSIFICATION = "classification"
REGRESSION = "regression"
# Hyperparameters that describe the data, not XGBoost.
DATA_KEYS = ("dataset", "label", "entity", "features", "task", "run_id", "num_round", "early_stopping_rounds")
DEFAULT_XGB = {"max_depth": 6, "eta": 0.1, "subsample": 1.0, "min_child_weight": 1}


class TrainingInputError(ValueError):
    """The channels or hyperparameters cannot be trained on; says what is wrong."""


def _decode(value: Any) -> Any:
    # SageMaker hands hyperparameters over as strings (JSON-encoded by framework estimators).
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value


def read_hyperparameters(environ: dict[str, str] | None = None) -> dict[str, Any]:
    """SM_HPS when set (the container and the local runtime), else the hyperparameters file; values decoded."""
    env = os.environ if environ is None else environ
    if env.get("SM_HPS"):
        raw = json.loads(env["SM_HPS"])
    else:
        path = Path(env.get("SM_HYPERPARAMETERS_FILE", HYPERPARAMETERS_FILE))
        raw = json.loads(path.read_text()) if path.exists() else {}
    if not isinstance(raw, dict):
        raise TrainingInputError("hyperparameters must be a JSON object")
    return {k: _decode(v) for k, v in raw.items() if not str(k).startswith("sagemaker_")}


def read_channel(directory: str, name: str) -> pd.DataFrame:
    """All Parquet files under a channel directory (Spark writes part-*.parquet plus marker files)."""
    root = Path(directory)
    files = sorted(p for p in root.rglob("*.parquet") if not p.name.startswith(("_", ".")))
    if not files:
        raise TrainingInputError(f"channel {name!r} ({directory}) holds no .parquet files")
    return pd.concat([pd.read_parquet(p) for p in files], ignore_index=True)


def _feature_columns(frame: pd.DataFrame, hps: dict[str, Any], label: str, entity: str | None) -> list[str]:
    listed = hps.get("features")
    if isinstance(listed, str):
        names = [n.strip() for n in listed.split(",") if n.strip()]
    elif isinstance(listed, list):
        names = [str(n) for n in listed]
    else:
        names = [c for c in frame.columns if c not in (label, entity) and not str(c).startswith("_")]
    missing = [n for n in names if n not in frame.columns]
    if missing:
        raise TrainingInputError(f"feature column(s) missing from the training data: {', '.join(missing)}")
    if not names:
        raise TrainingInputError("no feature columns to train on")
    return names


def _prepare(frame: pd.DataFrame, features: list[str], categories: dict[str, list[Any]]) -> pd.DataFrame:
    """Numbers stay, booleans become 0/1, dates become epoch days, strings become categories (train's levels)."""
    out = pd.DataFrame(index=frame.index)
    for name in features:
        column = frame[name]
        if pd.api.types.is_bool_dtype(column):
            out[name] = column.astype("float64")
        elif pd.api.types.is_datetime64_any_dtype(column):
            out[name] = (column - pd.Timestamp("1970-01-01", tz=getattr(column.dt, "tz", None))).dt.days.astype(
                "float64"
            )
        elif pd.api.types.is_numeric_dtype(column):
            out[name] = column.astype("float64")
        elif _holds_text(column) or name in categories:
            levels = categories.setdefault(name, sorted(str(v) for v in column.dropna().unique()))
            out[name] = pd.Categorical(column.astype("object").where(column.notna(), None), categories=levels)
        else:
            out[name] = _objects_as_numbers(name, column)
    return out


def _objects_as_numbers(name: str, column: pd.Series) -> pd.Series:
    """Decimals (Spark DecimalType) as floats, dates (Spark DateType) as epoch days; anything else is an error."""
    present = column.dropna()
    sample = present.iloc[0] if len(present) else None
    if sample is None or isinstance(sample, numbers.Number):
        return pd.to_numeric(column, errors="coerce").astype("float64")
    if isinstance(sample, datetime.date):
        return (pd.to_datetime(column) - pd.Timestamp("1970-01-01")).dt.days.astype("float64")
    raise TrainingInputError(
        f"feature column {name!r} holds {type(sample).__name__} values, which cannot be trained on"
    )


def _holds_text(column: pd.Series) -> bool:
    present = column.dropna()
    return bool(len(present)) and isinstance(present.iloc[0], str)


def _label_values(frame: pd.DataFrame, label: str, task: str) -> np.ndarray:
    if label not in frame.columns:
        raise TrainingInputError(
            f"label column {label!r} is not in the data (columns: {', '.join(map(str, frame.columns))})"
        )
    values = frame[label]
    if values.isna().any():
        raise TrainingInputError(f"label column {label!r} has {int(values.isna().sum())} missing value(s)")
    y = values.astype("float64").to_numpy()
    if task == CLASSIFICATION and not set(np.unique(y)) <= {0.0, 1.0}:
        raise TrainingInputError(f"label column {label!r} must hold 0/1 (or booleans) for classification")
    return y


def _safe(metric: Any, *args: Any) -> float | None:
    try:
        value = float(metric(*args))
    except ValueError:  # e.g. AUC with one class in the validation set
        return None
    return None if math.isnan(value) else value


def classification_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float | None]:
    p = np.clip(p, 1e-7, 1 - 1e-7)
    return {
        "auc": _safe(roc_auc_score, y, p),
        "pr_auc": _safe(average_precision_score, y, p),
        "logloss": _safe(lambda a, b: log_loss(a, b, labels=[0.0, 1.0]), y, p),
    }


def regression_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float | None]:
    return {"rmse": float(math.sqrt(mean_squared_error(y, p))), "mae": float(mean_absolute_error(y, p))}


def train(
    train_frame: pd.DataFrame, validation_frame: pd.DataFrame, hps: dict[str, Any]
) -> tuple[xgb.Booster, dict[str, Any]]:
    """Fit with early stopping on validation; returns the booster and the metrics document."""
    label = hps.get("label")
    if not label:
        raise TrainingInputError("hyperparameter 'label' (the label column) is required")
    label = str(label)
    entity = str(hps["entity"]) if hps.get("entity") else None
    task = str(hps.get("task", CLASSIFICATION))
    if task not in (CLASSIFICATION, REGRESSION):
        raise TrainingInputError(f"hyperparameter 'task' must be {CLASSIFICATION} or {REGRESSION}, got {task!r}")
    if train_frame.empty or validation_frame.empty:
        raise TrainingInputError(
            f"need rows in both channels: train has {len(train_frame)}, validation has {len(validation_frame)}"
        )
    features = _feature_columns(train_frame, hps, label, entity)
    categories: dict[str, list[Any]] = {}
    x_train = _prepare(train_frame, features, categories)
    x_valid = _prepare(validation_frame, features, categories)
    y_train = _label_values(train_frame, label, task)
    y_valid = _label_values(validation_frame, label, task)

    params: dict[str, Any] = dict(DEFAULT_XGB)
    params.update({k: v for k, v in hps.items() if k not in DATA_KEYS})
    params.setdefault("tree_method", "hist")
    params.setdefault("seed", 0)
    if task == CLASSIFICATION:
        params.setdefault("objective", "binary:logistic")
        params.setdefault("eval_metric", ["logloss", "auc"])  # the last one drives early stopping
    else:
        params.setdefault("objective", "reg:squarederror")
        params.setdefault("eval_metric", ["rmse"])
    num_round = int(hps.get("num_round", 100))
    early_stopping = int(hps.get("early_stopping_rounds", 10))

    dtrain = xgb.DMatrix(x_train, label=y_train, enable_categorical=True)
    dvalid = xgb.DMatrix(x_valid, label=y_valid, enable_categorical=True)
    history: dict[str, Any] = {}
    booster = xgb.train(
        params,
        dtrain,
        num_boost_round=num_round,
        evals=[(dtrain, "train"), (dvalid, "validation")],
        early_stopping_rounds=early_stopping,
        evals_result=history,
        verbose_eval=False,
    )
    best = int(getattr(booster, "best_iteration", num_round - 1))
    # Keep only the trees up to the best round: the serving container predicts with every tree it loads.
    booster = booster[: best + 1]
    predictions = booster.predict(dvalid)
    if task == CLASSIFICATION:
        prior = float(y_train.mean())
        validation = classification_metrics(y_valid, predictions)
        baseline = classification_metrics(y_valid, np.full_like(y_valid, prior))
        baseline["prior"] = prior
    else:
        mean = float(y_train.mean())
        validation = regression_metrics(y_valid, predictions)
        baseline = regression_metrics(y_valid, np.full_like(y_valid, mean))
        baseline["mean"] = mean
    importance = booster.get_score(importance_type="gain")
    document = {
        "task": task,
        "dataset": hps.get("dataset"),
        "run_id": hps.get("run_id"),
        "label": label,
        "entity": entity,
        "features": features,
        "rows": {"train": len(train_frame), "validation": len(validation_frame)},
        "best_iteration": best,
        "num_round": num_round,
        "validation": validation,
        "baseline": baseline,
        "feature_importance": {
            name: importance[name] for name in sorted(importance, key=lambda n: -_gain(importance[n]))
        },
        "hyperparameters": {k: v for k, v in params.items() if k != "eval_metric"},
        "xgboost_version": xgb.__version__,
    }
    return booster, document


def _gain(value: Any) -> float:
    return float(value[0]) if isinstance(value, list) else float(value)


def metric_lines(document: dict[str, Any]) -> list[str]:
    """One ``[dropzone] <split>:<metric>=<value>`` line per known metric, as MetricDefinitions expect."""
    lines = []
    for split in ("validation", "baseline"):
        for name, value in document[split].items():
            if value is not None and name not in ("prior", "mean"):
                lines.append(f"{METRIC_PREFIX} {split}:{name}={value:.6f}")
    lines.append(f"{METRIC_PREFIX} best_iteration={document['best_iteration']}")
    return lines


def main(environ: dict[str, str] | None = None) -> int:
    env = dict(os.environ if environ is None else environ)
    try:
        hps = read_hyperparameters(env)
        for name in ("SM_CHANNEL_TRAIN", "SM_CHANNEL_VALIDATION"):
            if not env.get(name):
                raise TrainingInputError(f"environment variable {name} (the channel directory) is not set")
        train_frame = read_channel(env["SM_CHANNEL_TRAIN"], "train")
        validation_frame = read_channel(env["SM_CHANNEL_VALIDATION"], "validation")
        booster, document = train(train_frame, validation_frame, hps)
    except TrainingInputError as e:
        print(f"{METRIC_PREFIX} error: {e}", file=sys.stderr)
        failure = Path(env.get("SM_OUTPUT_DIR", "/opt/ml/output")) / "failure"
        try:
            failure.parent.mkdir(parents=True, exist_ok=True)
            failure.write_text(str(e))  # SageMaker shows this file as the job's FailureReason
        except OSError:
            pass
        return 2
    model_dir = Path(env.get("SM_MODEL_DIR", "/opt/ml/model"))
    output_dir = Path(env.get("SM_OUTPUT_DATA_DIR", "/opt/ml/output/data"))
    model_dir.mkdir(parents=True, exist_ok=True)
    output_dir.mkdir(parents=True, exist_ok=True)
    # JSON bytes: loadable by the container's xgboost 1.7 and by 3.x, whatever the file name says.
    (model_dir / MODEL_FILE).write_bytes(bytes(booster.save_raw(raw_format="json")))
    (model_dir / "features.json").write_text(json.dumps({"features": document["features"], "task": document["task"]}))
    (output_dir / "metrics.json").write_text(json.dumps(document, indent=2, default=str))
    for line in metric_lines(document):
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
