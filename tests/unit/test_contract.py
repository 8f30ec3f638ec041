"""The contract module: shipped contracts load; a broken contract names its file, the field path and the problem."""

from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from dropzone.cli import main
from dropzone.contract import ContractError, load_contract, load_contracts

CONTRACTS = Path(__file__).resolve().parents[2] / "contracts"
ORDERS: dict[str, Any] = yaml.safe_load((CONTRACTS / "orders.yaml").read_text())


def test_shipped_contracts_load_and_cross_check() -> None:
    contracts = load_contracts(CONTRACTS)
    assert set(contracts) >= {"orders", "products", "customers"}
    orders = contracts["orders"]
    assert orders.prefix == "incoming/orders/"
    assert orders.unique_columns == ("order_id",)
    assert orders.limits.max_line_length == 2**20
    assert orders.limits.future_tolerance == timedelta(hours=1)
    assert orders.limits.earliest_timestamp == datetime(2000, 1, 1, tzinfo=UTC)
    assert orders.column("amount").min == 0.0
    assert contracts["products"].is_reference
    assert not orders.is_reference


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(document: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = document
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value

    return mutate


def _drop(key: str) -> Callable[[dict[str, Any]], None]:
    return lambda document: document.pop(key)


BROKEN: list[tuple[str, Callable[[dict[str, Any]], None], str]] = [
    ("no dataset", _drop("dataset"), "dataset: is required"),
    ("dataset name", _set("dataset", "Orders!"), "dataset: 'Orders!' must match ^[a-z][a-z0-9_]{0,62}$"),
    ("format", _set("formats", ["csv", "xlsx"]), "formats[1]: 'xlsx' is not one of: csv, csv.gz, jsonl"),
    ("column type", _set("columns.amount.type", "float"), "columns.amount.type: 'float' is not one of: string, int"),
    ("min > max", _set("columns.amount.max", -1), "columns.amount.min: min 0.0 is greater than max -1.0"),
    ("nan bound", _set("columns.amount.min", float("nan")), "columns.amount.min: must be a finite number, got nan"),
    (
        "range on text",
        _set("columns.order_id.min", 1),
        "columns.order_id.min: only int and double columns take a range",
    ),
    (
        "bad regex",
        _set("columns.order_id.regex", "^O[0-9"),
        "columns.order_id.regex: is not a valid regular expression",
    ),
    (
        "RE2 regex",
        _set("columns.order_id.regex", "^(?!X)O[0-9]+$"),
        "columns.order_id.regex: uses lookaround or a backreference",
    ),
    (
        "unknown field",
        _set("columns.amount.nullable", True),
        "columns.amount.nullable: unknown field (allowed: type, required",
    ),
    ("required text", _set("columns.amount.required", "yes"), "columns.amount.required: must be true or false"),
    ("entity", _set("entity", "client_id"), "entity: 'client_id' is not one of the columns"),
    ("timestamp type", _set("timestamp", "amount"), "timestamp: 'amount' must be a timestamp or date column"),
    ("fraction", _set("limits.max_bad_row_fraction", 1.5), "limits.max_bad_row_fraction: must be between 0 and 1"),
    ("size", _set("limits.max_bytes", "5 GB please"), "limits.max_bytes: '5 GB please' is not a size"),
    ("zero line", _set("limits.max_line_length", 0), "limits.max_line_length: must be at least 1 byte"),
    ("duration", _set("limits.future_tolerance", "soon"), "limits.future_tolerance: 'soon' is not a duration"),
    (
        "earliest",
        _set("limits.earliest_timestamp", "yesterday"),
        "limits.earliest_timestamp: 'yesterday' is not an ISO 8601",
    ),
    ("depth", _set("limits.max_nesting_depth", 0), "limits.max_nesting_depth: must be at least 1, got 0"),
    ("label kind", _set("label.kind", "churn"), "label.kind: 'churn' is not one of: active_in_horizon"),
    ("horizon", _set("label.horizon_days", "30"), "label.horizon_days: must be an integer, got string '30'"),
    ("gate metric", _set("training.gate.metric", "rmse"), "training.gate.metric: 'rmse' is not one of: auc"),
    (
        "aggregation",
        _set("features.aggregations.1.functions", ["sum", "median"]),
        "features.aggregations[1].functions[1]: 'median' is not an aggregation",
    ),
    (
        "join column",
        _set("features.joins.0.aggregations.0.column", "colour"),
        "features.joins[0].aggregations[0].column: 'colour' is not a column of products",
    ),
    ("top-level typo", _set("owner", "me"), "owner: unknown field (allowed: dataset, description"),
]


@pytest.mark.parametrize(("label", "mutate", "message"), BROKEN, ids=[b[0] for b in BROKEN])
def test_broken_contract_names_file_field_and_problem(
    tmp_path: Path, label: str, mutate: Callable[[dict[str, Any]], None], message: str
) -> None:
    document = copy.deepcopy(ORDERS)
    mutate(document)
    for name in ("products", "customers"):
        (tmp_path / f"{name}.yaml").write_text((CONTRACTS / f"{name}.yaml").read_text())
    path = tmp_path / "orders.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    with pytest.raises(ContractError) as caught:
        load_contracts(tmp_path)
    assert str(caught.value).startswith(f"{path}: {message}"), str(caught.value)


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "orders.yaml"
    path.write_text("dataset: orders\ncolumns: [1, 2\n")
    with pytest.raises(ContractError, match=r"orders.yaml: line 3: is not valid YAML"):
        load_contract(path)


def test_dataset_must_match_file_name(tmp_path: Path) -> None:
    path = tmp_path / "sales.yaml"
    path.write_text((CONTRACTS / "orders.yaml").read_text())
    with pytest.raises(ContractError, match=r"sales.yaml: dataset: 'orders' must equal the file name 'sales'"):
        load_contract(path)


def test_cli_with_a_broken_contract_exits_2_without_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    document = copy.deepcopy(ORDERS)
    document["columns"]["amount"]["type"] = "float"
    contract = tmp_path / "orders.yaml"
    contract.write_text(yaml.safe_dump(document))
    data = tmp_path / "o.csv"
    data.write_text("order_id\nO1\n")
    assert main(["validate", "--contract", str(contract), str(data)]) == 2
    err = capsys.readouterr().err
    assert err.strip() == (
        f"dropzone validate: error: {contract}: columns.amount.type: 'float' is not one of: "
        "string, int, double, bool, date, timestamp"
    )
    assert "Traceback" not in err


def test_cli_with_a_missing_contract_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "o.csv"
    data.write_text("order_id\nO1\n")
    assert main(["validate", "--contract", str(tmp_path / "nope.yaml"), str(data)]) == 2
    assert "nope.yaml: cannot be read: No such file or directory" in capsys.readouterr().err
