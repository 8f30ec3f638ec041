"""Synthetic retail data for demos, tests and benchmarks: order events plus the products and customers dimensions.

The data follow the contracts in ``contracts/`` and carry a learnable signal: every customer has a latent order
rate, a satisfaction score and a churn date. Orders arrive at the customer's rate (with weekly and yearly
seasonality) until churn; unhappy customers churn sooner, return more and write reviews with negative words. So
recency, frequency, returns and review words predict "active in the next 30 days" far better than a constant.

Everything is vectorised numpy (one ``numpy.random.Generator`` per call, so a seed fixes the output for a given
end date) and written with ``pyarrow.csv.write_csv``: a million orders take a few seconds.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

CATEGORIES = ("electronics", "home", "fashion", "beauty", "sports", "books", "toys", "grocery")
SEGMENTS = ("consumer", "small_business", "corporate")
REGIONS = ("north", "south", "east", "west")
# Review vocabulary: the words a review draws depend on the customer's satisfaction.
POSITIVE_WORDS = ("great", "love", "excellent", "perfect", "fast", "recommend", "happy", "quality", "works", "again")
NEGATIVE_WORDS = ("broken", "late", "poor", "refund", "disappointed", "cheap", "never", "worst", "damaged", "return")
NEUTRAL_WORDS = ("product", "order", "delivery", "item", "price", "size", "box", "color", "ok", "fine")

HISTORY_DAYS = 540  # > 1 year, so 365-day windows and a 30-day horizon are meaningful
MAX_AMOUNT = 100_000.0


def _default_end() -> datetime:
    """Midnight UTC today: every event lies strictly in the past, so the future-timestamp rule never fires."""
    now = datetime.now(UTC)
    return datetime(now.year, now.month, now.day, tzinfo=UTC)


def _as_end(end_date: date | datetime | str | None) -> datetime:
    if end_date is None:
        return _default_end()
    if isinstance(end_date, str):
        end_date = datetime.fromisoformat(end_date.replace("Z", "+00:00"))
    if isinstance(end_date, datetime):
        return end_date if end_date.tzinfo else end_date.replace(tzinfo=UTC)
    return datetime(end_date.year, end_date.month, end_date.day, tzinfo=UTC)


def _seasonal_times(rng: np.random.Generator, lo: np.ndarray, hi: np.ndarray, start_s: int) -> np.ndarray:
    """Seconds since ``start_s`` uniformly in [lo, hi) thinned by weekly and yearly seasonality (rejection)."""
    out = np.empty(lo.shape[0], dtype=np.int64)
    todo = np.arange(lo.shape[0])
    while todo.size:
        t = lo[todo] + rng.random(todo.size) * (hi[todo] - lo[todo])
        day = (start_s + t) / 86400.0
        weekday = np.floor(day + 3) % 7  # 1970-01-01 was a Thursday: 0 = Monday
        weight = 1.0 + 0.25 * np.sin(2 * np.pi * (day - 300.0) / 365.25)  # peak in November/December
        weight *= np.where(weekday >= 5, 1.2, 1.0)
        accept = rng.random(todo.size) * 1.5 < weight
        out[todo[accept]] = t[accept].astype(np.int64)
        todo = todo[~accept]
    return out


def _reviews(rng: np.random.Generator, satisfaction: np.ndarray) -> np.ndarray:
    """Short reviews (2-6 words): the share of positive vs negative words follows satisfaction in [0, 1]."""
    n = satisfaction.shape[0]
    lengths = np.asarray(rng.integers(2, 7, size=n))
    width = 6
    kind = rng.random((n, width))
    p_pos = 0.15 + 0.7 * satisfaction[:, None]
    pos = rng.integers(0, len(POSITIVE_WORDS), size=(n, width))
    neg = rng.integers(0, len(NEGATIVE_WORDS), size=(n, width))
    neu = rng.integers(0, len(NEUTRAL_WORDS), size=(n, width))
    vocab = np.array(POSITIVE_WORDS + NEGATIVE_WORDS + NEUTRAL_WORDS)
    word_index = np.where(
        kind < p_pos * 0.7,
        pos,
        np.where(kind < 0.7, len(POSITIVE_WORDS) + neg, len(POSITIVE_WORDS) + len(NEGATIVE_WORDS) + neu),
    )
    words: np.ndarray = vocab[word_index]
    words = np.asarray(np.where(np.arange(width)[None, :] < lengths[:, None], words, ""))
    text = words[:, 0]
    for j in range(1, width):
        text = np.char.add(np.char.add(text, np.where(words[:, j] == "", "", " ")), words[:, j])
    return text


def generate(
    out_dir: str | Path,
    rows: int,
    seed: int = 7,
    files: int = 5,
    end_date: date | datetime | str | None = None,
    customers: int | None = None,
    products: int | None = None,
) -> dict[str, Any]:
    """Write DIR/orders/orders-NNN.csv (``files`` chronological parts), DIR/products/products.csv and
    DIR/customers/customers.csv; return what was written (paths, counts, time range)."""
    if rows < 1:
        raise ValueError(f"rows must be at least 1, got {rows}")
    if files < 1:
        raise ValueError(f"files must be at least 1, got {files}")
    files = min(files, rows)
    rng = np.random.default_rng(seed)
    end = _as_end(end_date)
    start = end - timedelta(days=HISTORY_DAYS)
    start_s = int(start.timestamp())
    span = HISTORY_DAYS * 86400
    n_cust = customers or int(min(999_999, max(20, rows // 20)))
    n_prod = products or int(min(99_999, max(20, rows // 500)))
    if not 1 <= n_cust <= 999_999:
        raise ValueError(f"customers must be between 1 and 999999 (the id format C000000), got {n_cust}")
    if not 1 <= n_prod <= 99_999:
        raise ValueError(f"products must be between 1 and 99999 (the id format P00000), got {n_prod}")
    out = Path(out_dir)

    # Products: heavy-tailed list prices, category-dependent return propensity.
    prod_cat = rng.integers(0, len(CATEGORIES), size=n_prod)
    list_price = np.round(np.minimum(np.exp(rng.normal(3.3, 1.0, size=n_prod)), 20_000.0), 2)
    cat_return = np.array([0.10, 0.04, 0.15, 0.06, 0.07, 0.02, 0.05, 0.01])[prod_cat]
    launched_days = rng.integers(0, HISTORY_DAYS + 2000, size=n_prod)
    prod_pop = rng.pareto(1.2, size=n_prod) + 0.05

    # Customers: arrival, latent rate, satisfaction, churn (unhappy customers churn sooner).
    satisfaction = rng.beta(4, 2, size=n_cust)
    rate_per_day = np.exp(rng.normal(np.log(0.06), 0.8, size=n_cust))
    arrival = np.where(rng.random(n_cust) < 0.5, 0.0, rng.random(n_cust) * span * 0.9)
    mean_life_days = 120 + 700 * satisfaction**2
    churn = arrival + rng.exponential(mean_life_days * 86400)
    active_end = np.minimum(churn, span)
    active_len = np.maximum(active_end - arrival, 3600.0)
    weight = rate_per_day * active_len
    cust_of_order = rng.choice(n_cust, size=rows, p=weight / weight.sum())
    offsets = _seasonal_times(rng, arrival[cust_of_order], active_end[cust_of_order], start_s)
    order = np.argsort(offsets, kind="stable")
    cust_of_order, offsets = cust_of_order[order], offsets[order]

    # Orders: product by popularity, heavy-tailed spend, returns and reviews by satisfaction.
    prod_of_order = rng.choice(n_prod, size=rows, p=prod_pop / prod_pop.sum())
    bulk = (rng.random(rows) < 0.05) * rng.integers(1, 20, rows)  # occasional bulk orders
    quantity = np.minimum(rng.geometric(0.6, size=rows) + bulk, 1000)
    discount = np.where(rng.random(rows) < 0.2, rng.uniform(0.05, 0.4, rows), 0.0)
    amount = np.round(np.minimum(list_price[prod_of_order] * quantity * (1 - discount), MAX_AMOUNT), 2)
    sat = satisfaction[cust_of_order]
    p_return = np.clip(cat_return[prod_of_order] * (2.2 - 2.0 * sat) + 0.01, 0.0, 0.9)
    returned = rng.random(rows) < p_return
    returned_missing = rng.random(rows) < 0.02
    has_review = rng.random(rows) < (0.15 + 0.35 * (np.abs(sat - 0.5) * 2))
    review = np.full(rows, "", dtype=object)
    idx = np.flatnonzero(has_review)
    review[idx] = _reviews(rng, np.clip(sat[idx] - 0.4 * returned[idx], 0.0, 1.0)).astype(object)

    timestamps = pa.array(start_s + offsets, type=pa.timestamp("s", tz="UTC"))
    order_ids = np.char.add("O", np.char.zfill(np.arange(1, rows + 1).astype(str), 10))
    orders = pa.table(
        {
            "order_id": pa.array(order_ids),
            "customer_id": pa.array(np.char.add("C", np.char.zfill(cust_of_order.astype(str), 6))),
            "order_ts": pc.strftime(timestamps, format="%Y-%m-%dT%H:%M:%SZ"),
            "product_id": pa.array(np.char.add("P", np.char.zfill(prod_of_order.astype(str), 5))),
            "amount": pa.array(amount),
            "quantity": pa.array(quantity.astype(np.int64)),
            "returned": pa.array(returned, mask=returned_missing),
            "review_text": pa.array(review, type=pa.string(), mask=~has_review),
        }
    )
    (out / "orders").mkdir(parents=True, exist_ok=True)
    order_paths = []
    bounds = np.linspace(0, rows, files + 1).astype(int)
    for i in range(files):
        path = out / "orders" / f"orders-{i + 1:03d}.csv"
        pacsv.write_csv(orders.slice(bounds[i], bounds[i + 1] - bounds[i]), path)
        order_paths.append(path)

    first_order = np.full(n_cust, span, dtype=np.int64)
    np.minimum.at(first_order, cust_of_order, offsets)
    signup_s = start_s + np.minimum(first_order, arrival.astype(np.int64)) - rng.integers(0, 400, n_cust) * 86400
    customers_table = pa.table(
        {
            "customer_id": pa.array(np.char.add("C", np.char.zfill(np.arange(n_cust).astype(str), 6))),
            "segment": pa.array(np.array(SEGMENTS)[rng.choice(3, size=n_cust, p=[0.75, 0.18, 0.07])]),
            "region": pa.array(np.array(REGIONS)[rng.integers(0, 4, n_cust)]),
            "signup_date": pa.array(signup_s // 86400, type=pa.int32()).cast(pa.date32()),
            "newsletter": pa.array(rng.random(n_cust) < 0.3 + 0.4 * satisfaction, mask=rng.random(n_cust) < 0.05),
        }
    )
    products_table = pa.table(
        {
            "product_id": pa.array(np.char.add("P", np.char.zfill(np.arange(n_prod).astype(str), 5))),
            "category": pa.array(np.array(CATEGORIES)[prod_cat]),
            "list_price": pa.array(list_price),
            "launched": pa.array(
                (start_s // 86400 + HISTORY_DAYS - launched_days).astype(np.int32), type=pa.int32()
            ).cast(pa.date32()),
        }
    )
    (out / "customers").mkdir(parents=True, exist_ok=True)
    (out / "products").mkdir(parents=True, exist_ok=True)
    customers_path = out / "customers" / "customers.csv"
    products_path = out / "products" / "products.csv"
    pacsv.write_csv(customers_table, customers_path)
    pacsv.write_csv(products_table, products_path)
    return {
        "out_dir": str(out),
        "orders": [str(p) for p in order_paths],
        "products": str(products_path),
        "customers": str(customers_path),
        "rows": rows,
        "customers_count": n_cust,
        "products_count": n_prod,
        "start": start.isoformat(),
        "end": end.isoformat(),
        "seed": seed,
    }
