"""The synthetic data generator: valid against the contracts, deterministic, realistic, learnable."""

from __future__ import annotations

import hashlib
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pytest

from dropzone.cli import main as cli_main
from dropzone.contract import load_contracts
from dropzone.generate import NEGATIVE_WORDS, POSITIVE_WORDS, generate
from dropzone.validation import validate_path

CONTRACTS = Path(__file__).resolve().parents[2] / "contracts"
END = "2026-06-01"


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return generate(tmp_path_factory.mktemp("gen"), 20_000, seed=11, files=4, end_date=END)


def _digest(paths: list[str]) -> str:
    h = hashlib.sha256()
    for p in sorted(paths):
        h.update(Path(p).read_bytes())
    return h.hexdigest()


def test_layout_and_counts(data: dict) -> None:
    assert len(data["orders"]) == 4
    assert all(Path(p).parent.name == "orders" for p in data["orders"])
    rows = sum(pacsv.read_csv(p).num_rows for p in data["orders"])
    assert rows == 20_000
    assert Path(data["products"]).name == "products.csv"
    assert Path(data["customers"]).name == "customers.csv"


def test_every_file_passes_the_validator(data: dict) -> None:
    contracts = load_contracts(CONTRACTS)
    uploaded = datetime(2026, 6, 1, tzinfo=UTC)
    checks = [(p, "orders") for p in data["orders"]] + [
        (data["products"], "products"),
        (data["customers"], "customers"),
    ]
    for path, dataset in checks:
        report = validate_path(path, contracts[dataset], uploaded_at=uploaded)
        assert report.accepted, (path, report.reasons, report.rule_counts)
        assert report.bad_rows == 0, (path, report.rule_counts)


def test_deterministic_per_seed(tmp_path: Path, data: dict) -> None:
    again = generate(tmp_path / "a", 20_000, seed=11, files=4, end_date=END)
    other = generate(tmp_path / "b", 20_000, seed=12, files=4, end_date=END)
    assert _digest(again["orders"]) == _digest(data["orders"])
    assert _digest(other["orders"]) != _digest(data["orders"])


def _times(path: str) -> np.ndarray:
    """Epoch seconds of order_ts, parsed from the text the file holds."""
    text = pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(column_types={"order_ts": pa.string()}))
    return pc.strptime(text["order_ts"], format="%Y-%m-%dT%H:%M:%SZ", unit="s").cast(pa.int64()).to_numpy()


def test_time_range_past_and_longer_than_a_year(data: dict) -> None:
    first, last = _times(data["orders"][0]), _times(data["orders"][-1])
    end = int(datetime(2026, 6, 1, tzinfo=UTC).timestamp())
    assert last.max() < end  # strictly before the end date: no future timestamps
    assert (last.max() - first.min()) / 86_400 > 365  # 365-day windows and a 30-day horizon are meaningful
    assert first.max() <= last.min()  # files are chronological parts


def test_realistic_spend_returns_and_reviews(data: dict) -> None:
    orders = pacsv.read_csv(data["orders"][0])
    amount = orders["amount"].to_numpy()
    # heavy tail: the mean well above the median, the top 1% far above the median
    assert np.mean(amount) > 1.2 * np.median(amount)
    assert np.quantile(amount, 0.99) > 8 * np.median(amount)
    returned = orders["returned"].drop_null().to_numpy(zero_copy_only=False)
    assert 0.01 < returned.mean() < 0.3
    reviews = [r for r in orders["review_text"].to_pylist() if r]
    assert 0.1 < len(reviews) / orders.num_rows < 0.7
    # words follow satisfaction: returned orders' reviews carry more negative words
    neg = set(NEGATIVE_WORDS)
    pos = set(POSITIVE_WORDS)

    def negativity(texts: list[str]) -> float:
        words = [w for t in texts for w in t.split()]
        return sum(w in neg for w in words) / max(1, sum(w in neg or w in pos for w in words))

    rows = orders.to_pylist()
    bad = negativity([r["review_text"] for r in rows if r["review_text"] and r["returned"]])
    good = negativity([r["review_text"] for r in rows if r["review_text"] and r["returned"] is False])
    assert bad > good + 0.1


def test_behaviour_predicts_the_label(data: dict) -> None:
    """Customers who ordered in the 30 days before a cutoff are far more often active in the next 30 days."""
    orders = pa.concat_tables([pacsv.read_csv(p) for p in data["orders"]])
    ts = np.concatenate([_times(p) for p in data["orders"]])
    cust = orders["customer_id"].to_numpy(zero_copy_only=False)
    cutoff = int(datetime(2026, 5, 2, tzinfo=UTC).timestamp())
    day = 86_400
    recent = set(cust[(ts >= cutoff - 30 * day) & (ts < cutoff)])
    seen = set(cust[ts < cutoff])
    active = set(cust[(ts >= cutoff) & (ts < cutoff + 30 * day)])
    rate_recent = len(active & recent) / len(recent)
    rate_lapsed = len(active & (seen - recent)) / len(seen - recent)
    assert rate_recent > 2 * rate_lapsed


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = cli_main(
        ["generate", "--rows", "500", "--out", str(tmp_path), "--seed", "3", "--files", "2", "--end-date", END]
    )
    assert code == 0
    assert len(list((tmp_path / "orders").glob("*.csv"))) == 2
    assert '"rows": 500' in capsys.readouterr().out


def test_cli_rejects_bad_arguments(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["generate", "--rows", "0", "--out", str(tmp_path)]) == 2
    assert "rows must be at least 1" in capsys.readouterr().err


def test_cli_refuses_an_end_date_after_today(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Orders after now would all be quarantined (order_ts.future): the help says the files pass the contracts."""
    today = datetime.now(UTC).date()
    later = date.fromordinal(today.toordinal() + 1)
    assert cli_main(["generate", "--rows", "50", "--out", str(tmp_path / "g"), "--end-date", str(later)]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"dropzone generate: error: --end-date {later}: after today ({today}, UTC): the last orders would be in the "
        "future, which the orders contract quarantines (order_ts.future); give today or an earlier date\n"
    )
    assert not (tmp_path / "g").exists()
    assert cli_main(["generate", "--rows", "50", "--out", str(tmp_path / "g"), "--end-date", str(today)]) == 0


def test_cli_replaces_an_earlier_generates_files_and_nothing_else(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "g2"
    assert cli_main(["generate", "--rows", "60", "--files", "5", "--out", str(out), "--end-date", END]) == 0
    (out / "notes.txt").write_text("mine")
    capsys.readouterr()
    assert cli_main(["generate", "--rows", "30", "--files", "2", "--out", str(out), "--end-date", END]) == 0
    assert sorted(p.name for p in (out / "orders").iterdir()) == [
        "orders-001.csv",
        "orders-002.csv",
    ]  # no stale 003-005
    assert (out / "notes.txt").read_text() == "mine"
    assert "the earlier generate's 7 file(s) replaced" in capsys.readouterr().err


def test_cli_refuses_a_folder_that_is_not_its_own(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "orders").mkdir()
    (tmp_path / "orders" / "orders-001.csv").write_text("mine")
    assert cli_main(["generate", "--rows", "30", "--out", str(tmp_path)]) == 2
    assert "not empty and not the output of an earlier `dropzone generate`" in capsys.readouterr().err
    assert (tmp_path / "orders" / "orders-001.csv").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["orders"]
