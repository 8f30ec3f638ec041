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
from dropzone.contract import ContractError, feature_names, load_contract, load_contracts, parse_contract

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


def _append(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(document: dict[str, Any]) -> None:
        node: Any = document
        for key in path.split("."):
            node = node[int(key)] if isinstance(node, list) else node[key]
        node.append(value)

    return mutate


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
    (
        "deeper than the parsers read",
        _set("limits.max_nesting_depth", 501),
        "limits.max_nesting_depth: must be at most 500 (deeper JSON is more than the validator's and the Spark job's"
        " parsers read), got 501",
    ),
    (
        "JSON line longer than Spark reads",
        _set("limits.max_line_length", "32 MiB"),
        "limits.max_line_length: must be at most 20000000 bytes with a JSON Lines format",
    ),
    ("label kind", _set("label.kind", "churn"), "label.kind: 'churn' is not one of: active_in_horizon"),
    ("horizon", _set("label.horizon_days", "30"), "label.horizon_days: must be an integer, got string '30'"),
    ("gate metric", _set("training.gate.metric", "rmse"), "training.gate.metric: 'rmse' is not one of: auc"),
    ("negative gate margin", _set("training.gate.margin", -1), "training.gate.margin: must be at least 0, got -1"),
    (
        "depth in words",
        _set("training.hyperparameters.max_depth", "five"),
        "training.hyperparameters.max_depth: must be an integer, got string 'five'",
    ),
    (
        "fractional rounds",
        _set("training.hyperparameters.num_round", 2.5),
        "training.hyperparameters.num_round: must be an integer, got number 2.5",
    ),
    (
        "no rounds",
        _set("training.hyperparameters.num_round", 0),
        "training.hyperparameters.num_round: must be at least 1",
    ),
    (
        "learning rate in words",
        _set("training.hyperparameters.eta", "fast"),
        "training.hyperparameters.eta: must be a number, got string 'fast'",
    ),
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
    # Contracts the Spark job could not run: two output columns of one name, a name the pipeline writes itself.
    (
        "feature twice",
        _append("features.aggregations", {"column": "amount", "functions": ["max", "sum"]}),
        "features: two features would be named 'amount_max_30d' (the naming rule is in docs/features.md)",
    ),
    (
        "label named like a feature",
        _set("label.name", "gap_days_mean"),
        "label.name: 'gap_days_mean' is the name of a feature: give the label its own",
    ),
    (
        "label named like the entity",
        _set("label.name", "customer_id"),
        "label.name: 'customer_id' is the name of the entity column",
    ),
    ("label named cutoff", _set("label.name", "cutoff"), "label.name: 'cutoff' is reserved: it is the feature tables'"),
    (
        "partition column",
        _set("columns.event_date", {"type": "date"}),
        "columns.event_date: 'event_date' is reserved: it is the curated table's partition column",
    ),
    # Spark ignores the case of column names: these ran into "[COLUMN_ALREADY_EXISTS] The column `event_date`
    # already exists" or an ambiguous reference in the feature job after the validator had accepted the files.
    (
        "partition column in capitals",
        _set("columns.Event_Date", {"type": "date"}),
        "columns.Event_Date: 'Event_Date' is reserved: it is the curated table's partition column (Spark ignores case)",
    ),
    (
        "label named Cutoff",
        _set("label.name", "Cutoff"),
        "label.name: 'Cutoff' is reserved: it is the feature tables' cutoff column (Spark ignores case)",
    ),
    (
        "columns differing in case",
        _set("columns.Amount", {"type": "double"}),
        "columns.Amount: 'Amount' and 'amount' differ only in case: Spark, which ignores case, would take them as one",
    ),
    (
        "label named like a feature in capitals",
        _set("label.name", "Gap_Days_Mean"),
        "label.name: 'Gap_Days_Mean' is the name of a feature: give the label its own",
    ),
    (
        "features without a feature",
        _set("features", {"windows": [30]}),
        "features: defines no feature: give it aggregations, joins, text or sequence",
    ),
    (
        "underscore column",
        _set("columns._id", {"type": "string"}),
        "columns._id: '_id': names starting with an underscore are reserved for the pipeline's own columns",
    ),
    (
        "window too long",
        _set("features.windows", [30, 40_000]),
        "features.windows[1]: must be at most 36500, got 40000",
    ),
    (
        "horizon too long",
        _set("label.horizon_days", 10**9),
        "label.horizon_days: must be at most 36500, got 1000000000",
    ),
    (
        "dataset joined twice",
        _append("features.joins", {"dataset": "products", "key": "product_id", "attributes": ["list_price"]}),
        "features.joins[2].dataset: products is joined already (features.joins[0]): join each reference dataset once",
    ),
    (
        # a contract without a label is a reference dataset: its batches were curated and its features never computed
        "features without a label",
        lambda document: [document.pop(k) for k in ("label", "training")],
        "label: is required when the contract has features (a contract without one is a reference dataset)",
    ),
    (
        "dataset joined to itself",
        _append("features.joins", {"dataset": "orders", "key": "product_id", "attributes": ["amount"]}),
        "features.joins[2].dataset: orders joins itself: joins take reference datasets",
    ),
    (
        "aggregation over the entity's own row",
        _set("features.joins.1.aggregations", [{"column": "segment", "functions": ["count"]}]),
        "features.joins[1].aggregations: a join on the entity (customer_id) gives one customers row per entity: "
        "it takes attributes only",
    ),
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


def test_json_ceilings_are_limits_a_contract_may_reach() -> None:
    # the deepest nesting both JSON parsers read; without a JSON Lines format, lines as long as the contract says
    document = copy.deepcopy(ORDERS)
    document["limits"] = {**document.get("limits", {}), "max_nesting_depth": 500, "max_line_length": "19 MiB"}
    assert parse_contract(document, "orders.yaml").limits.max_nesting_depth == 500
    document["limits"]["max_line_length"] = "32 MiB"
    document["formats"] = ["csv", "csv.gz", "parquet"]
    assert parse_contract(document, "orders.yaml").limits.max_line_length == 32 * 2**20


def test_hyperparameters_the_project_does_not_know_go_to_xgboost_as_they_are() -> None:
    # GIVEN XGBoost parameters that train.py does not read itself: strings where XGBoost takes strings, any name
    document = copy.deepcopy(ORDERS)
    extra = {"booster": "dart", "objective": "binary:logistic", "rate_drop": 0.1, "grow_policy": "lossguide"}
    document["training"]["hyperparameters"].update(extra)
    # WHEN the contract is read THEN they are kept, as are the numbers it knows
    training = parse_contract(document, "orders.yaml").training
    assert training is not None
    assert dict(training.hyperparameters) == {**ORDERS["training"]["hyperparameters"], **extra}


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


def test_feature_names_follow_the_documented_rule() -> None:
    """Every kind of feature, each name written out by hand from the table in docs/features.md."""
    stores = parse_contract(
        {
            "dataset": "stores",
            "entity": "store_id",
            "columns": {
                "store_id": {"type": "string", "unique": True},
                "format": {"type": "string", "allowed": ["mall", "street"]},
                "opened": {"type": "date"},
            },
        }
    )
    visitors = parse_contract(
        {
            "dataset": "visitors",
            "entity": "visitor_id",
            "columns": {
                "visitor_id": {"type": "string", "unique": True},
                "vip": {"type": "bool"},
                "born": {"type": "timestamp"},
            },
        }
    )
    visits = parse_contract(
        {
            "dataset": "visits",
            "entity": "visitor_id",
            "timestamp": "ts",
            "columns": {
                "visitor_id": {"type": "string"},
                "store_id": {"type": "string"},
                "ts": {"type": "timestamp"},
                "spend": {"type": "double"},
                "note": {"type": "string"},
            },
            "features": {
                "windows": [90, 7],
                "aggregations": [{"column": "spend", "functions": ["sum", "p50"]}],
                "joins": [
                    {"dataset": "visitors", "key": "visitor_id", "attributes": ["born", "vip"]},
                    {
                        "dataset": "stores",
                        "key": "store_id",
                        "attributes": ["opened", "format"],
                        "aggregations": [{"column": "format", "functions": ["distinct"]}],
                        "shares": [{"column": "format", "measure": "spend"}],
                    },
                ],
                "text": {"column": "note", "method": "word2vec", "num_features": 2},
                "sequence": {"short_window_days": 3},
            },
            "label": {"kind": "sum_in_horizon", "name": "spend_next", "measure": "spend", "horizon_days": 14},
        },
        references={"stores": stores, "visitors": visitors},
    )
    assert visits.features is not None
    assert feature_names(visits.features, "visitor_id", {"stores": stores, "visitors": visitors}) == (
        "spend_sum_7d",
        "spend_p50_7d",
        "spend_sum_90d",
        "spend_p50_90d",
        "stores_format_distinct_7d",
        "stores_format_distinct_90d",
        "stores_format_mall_spend_share_7d",
        "stores_format_street_spend_share_7d",
        "stores_format_mall_spend_share_90d",
        "stores_format_street_spend_share_90d",
        "stores_opened_last_days",
        "stores_format_last",
        "days_since_last",
        "tenure_days",
        "events_last_3d",
        "events_prev_3d",
        "gap_days_mean",
        "gap_days_std",
        "gap_days_max",
        "note_word2vec_0",
        "note_word2vec_1",
        "visitors_born_days",
        "visitors_vip",
    )


def test_a_contract_read_without_its_references_is_still_checked_for_clashing_names(tmp_path: Path) -> None:
    """`dropzone validate --contract` and the ingest function read one contract alone: the names that do not
    depend on a joined dataset are checked there already."""
    document = copy.deepcopy(ORDERS)
    document["features"]["aggregations"].append({"column": "quantity", "functions": ["sum"]})
    path = tmp_path / "orders.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    with pytest.raises(ContractError, match=r"orders.yaml: features: two features would be named 'quantity_sum_30d'"):
        load_contract(path)


# A reference contract that the orders contract cannot join as it is (orders.yaml itself unchanged).
BROKEN_REFERENCE: list[tuple[str, str, Callable[[dict[str, Any]], None], str]] = [
    (
        # a string key joined to an int one made the feature job fail on the first key that is not a number
        "join key of another type",
        "products",
        _set("columns.product_id", {"type": "int", "required": True, "unique": True}),
        "features.joins[0].key: product_id is string here but int in products: the join needs one type",
    ),
    (
        # a share's name holds its value with each run of characters other than letters, digits and _ as one _
        "share values that differ only in punctuation",
        "products",
        _set("columns.category.allowed", ["home & garden", "toys", "home-garden"]),
        "features: two features would be named 'products_category_home_garden_amount_share_30d' (the naming rule",
    ),
    (
        # the curated table of a reference without a unique key kept every delivery of a key; one of them joined
        "join key not unique in the reference",
        "products",
        _set("columns.product_id", {"type": "string", "required": True}),
        "features.joins[0].key: product_id is not unique in products: mark it unique: true there (one products row "
        "per key)",
    ),
    (
        # a dataset with a label is a fact table, never curated as a reference: its "latest row per key" is no snapshot
        "joined dataset with a label",
        "customers",
        lambda document: document.update(
            timestamp="signup_date",
            features={"aggregations": [{"column": "region", "functions": ["count"]}]},
            label={"kind": "active_in_horizon", "name": "active", "horizon_days": 30},
        ),
        "features.joins[1].dataset: customers has a label: joins take reference datasets (contracts without a label)",
    ),
]


@pytest.mark.parametrize(
    ("label", "reference", "mutate", "message"), BROKEN_REFERENCE, ids=[b[0] for b in BROKEN_REFERENCE]
)
def test_a_reference_the_dataset_cannot_join_is_named_in_its_error(
    tmp_path: Path, label: str, reference: str, mutate: Callable[[dict[str, Any]], None], message: str
) -> None:
    for name in ("products", "customers"):
        document = yaml.safe_load((CONTRACTS / f"{name}.yaml").read_text())
        if name == reference:
            mutate(document)
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(document, sort_keys=False))
    (tmp_path / "orders.yaml").write_text(yaml.safe_dump(ORDERS, sort_keys=False))

    with pytest.raises(ContractError) as caught:
        load_contracts(tmp_path)

    assert str(caught.value).startswith(f"{tmp_path / 'orders.yaml'}: {message}"), str(caught.value)
