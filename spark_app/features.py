"""Point-in-time features and labels, all derived from the contract's ``features`` and ``label`` sections.

Shape of the computation (one shuffle for everything windowed):
  events ─(join, a broadcast for a small table: reference attributes of each event, e.g. product category)
         ─(text: per-event term counts (TF-IDF) or Word2Vec vector; Word2Vec is fitted before the first cutoff)
         ─(repartition by entity: the only shuffle, of raw events, not of aggregation buffers)
         ─(window lag per entity: gap to the previous event, when there are sequence features; no shuffle of its own)
         ─(distinct counts: each event's next event of the same value, window functions per entity and value ordered by
           time; a local sort, no shuffle)
         ─(percentiles: each event's rank among each cutoff's window values, window functions per entity ordered by
           the value; a local sort, no shuffle)
         ─(explode: one copy per cutoff, keeping events before the cutoff and, for training cutoffs, the label window)
         ─(one group-by per entity+cutoff with conditional aggregates for every window: no second shuffle)
         ─(join, a broadcast for a small table: entity attributes, e.g. customer segment)
         ─(TF-IDF: the IDF weights from document counts the group-by also took, applied to the cached result)

Features for a cutoff use only events strictly before it; window ``w`` is ``[cutoff - w days, cutoff)``; the
label uses ``[cutoff, cutoff + horizon)``. Column names follow the rule in docs/features.md.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta

from pyspark.ml.feature import HashingTF, NGram, RegexTokenizer, Word2Vec
from pyspark.ml.functions import vector_to_array
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from dropzone.contract import (
    CUTOFF,
    DATED_TYPES,
    PERCENTILE,
    Contract,
    attribute_feature,
    feature_names,
    sequence_features,
    share_feature,
    text_features,
    window_feature,
)

ROLE = "_role"  # "train" or "score"
DAY_US = 86_400 * 1_000_000
TEXT_FIT_ROWS = 200_000
# Percentiles are exact, by nearest rank: ``pK`` of the n values in a window is the ceil(K * n / 100)-th smallest, i.e.
# the smallest value with at least K % of the values at or below it (SQL's percentile_disc: a value of the window,
# never interpolated). Each event gets, per cutoff and window, its rank among the window's values from window functions
# per entity ordered by the column (on the partitioning of the single shuffle, before the copies per cutoff); the
# group-by then keeps the value whose rank is the target. No per-group object (digest, list) is built, so the
# group-by stays a hash aggregate of fixed-size buffers.
# Distinct counts are exact: a value is in a window before a cutoff when its latest event before the cutoff is, and an
# event is that latest one when the entity's next event with the same value (a window function per entity and value
# ordered by time, once per event before the copies per cutoff) is at or after the cutoff, or there is none; the
# group-by counts those events in the window. Not approx_count_distinct: HyperLogLog++ is an imperative aggregate, and
# one in the group-by takes the whole group-by out of whole-stage code generation (10M events, windowed aggregates
# only: 22.4 s this way, 27-28 s with the sketches or with a group-by per entity and value; issue #3).
_DESCRIBE = {
    "count": "number of non-null",
    "sum": "sum (0 when none) of",
    "mean": "mean of",
    "min": "minimum of",
    "max": "maximum of",
    "stddev": "sample standard deviation of",
    "distinct": "number of distinct",
    "rate": "share of true among non-null",
}
_AGE = "_age_us"  # microseconds from the event to the cutoff: > 0 means strictly before the cutoff
_GAP = "_gap_days"
_TEXT = "_text_vec"
_TEXT_FIT = "_text_fit"  # TF-IDF: the event's text is one of the documents the IDF weights are fitted on
_IDF_DOCS = "_idf_docs"
_CI = "_ci"  # index of the event copy's cutoff in the list of (cutoff, role, end)


@dataclass(frozen=True)
class FeatureSpec:
    """One output feature: its name, Spark SQL type and a one-line description (for the manifest)."""

    name: str
    type: str
    description: str


@dataclass
class FeatureResult:
    frame: DataFrame  # entity, cutoff, _role, features..., label (null for score rows)
    features: list[FeatureSpec]
    missing_references: list[str] = field(default_factory=list)
    counters: list[str] = field(default_factory=list)  # internal per-row counter columns, summed into the manifest
    text_fit_rows: int = 0  # events the text model was fitted on
    cached: DataFrame | None = None  # persisted frame ``frame`` is read from (TF-IDF): unpersist it when done


@dataclass(frozen=True)
class Cutoffs:
    train: tuple[date, ...]
    score: date

    @staticmethod
    def for_as_of(as_of: date, horizon_days: int, count: int = 1) -> Cutoffs:
        """Training cutoffs whose label window ends by ``as_of`` (fully observed), spaced by the horizon."""
        return Cutoffs(tuple(as_of - timedelta(days=horizon_days * i) for i in range(count, 0, -1)), as_of)


def _days(expr: Column) -> Column:
    return expr.cast("double") / F.lit(float(DAY_US))


def _safe_ratio(num: Column, den: Column) -> Column:
    return F.when(den != 0, num / den)


def latest_per_key(ref: DataFrame, key: str) -> DataFrame:
    """A reference table with one row per key. The curated table of a reference holds one already (a joined key is
    ``unique`` in its contract, and the curated merge keeps the newest delivery); should it hold more, the larger
    batch id, then content hash, wins: a stable choice, not the newest (batch ids are hashes)."""
    order = [F.col(c) for c in ("_batch_id",) if c in ref.columns]
    w = Window.partitionBy(key).orderBy(*[o.desc() for o in order], F.xxhash64(*ref.columns).desc())
    return ref.filter(F.col(key).isNotNull()).withColumn("_rn", F.row_number().over(w)).filter("_rn = 1").drop("_rn")


def _text_vectors(events: DataFrame, contract: Contract, fit_before: date) -> tuple[DataFrame, int]:
    """Adds a per-event text vector (array<double>, null for an empty text); only events before ``fit_before``
    inform the text model.

    ``tfidf``: the words and n-grams hashed straight into ``num_features`` buckets (HashingTF): the vector holds the
    term counts, and ``_text_fit`` flags the texts the IDF is fitted on (every non-empty text before
    ``fit_before``). The IDF weights are per bucket, so the mean of the weighted vectors is the weight times the mean
    of the counts: the weights are applied after the feature pass (``_apply_idf``), from document counts that pass
    takes too, rather than fitted in a pass of their own (no second scan and tokenization of the events). The
    returned fit rows are 0 then. ``word2vec``: the Word2Vec document vector, fitted on a deterministic sample of at
    most ``TEXT_FIT_ROWS`` of those texts.
    """
    assert contract.features is not None
    assert contract.features.text is not None
    assert contract.timestamp
    text = contract.features.text
    k = text.num_features
    has_text = F.col(text.column).isNotNull() & (F.length(F.trim(F.col(text.column))) > 0)
    tok = RegexTokenizer(inputCol="_t", outputCol="_tokens", pattern="[^\\p{L}\\p{N}']+", toLowercase=True)
    prepared = tok.transform(events.withColumn("_t", F.when(has_text, F.col(text.column)).otherwise(F.lit(""))))
    grams = [F.col("_tokens")]
    for n in range(2, text.ngrams + 1):
        prepared = NGram(n=n, inputCol="_tokens", outputCol=f"_g{n}").transform(prepared)
        grams.append(F.col(f"_g{n}"))
    prepared = prepared.withColumn("_terms", F.concat(*grams) if len(grams) > 1 else grams[0])
    fit = has_text & (F.col(contract.timestamp) < F.lit(fit_before).cast("timestamp"))
    fit_rows = 0
    if text.method == "word2vec":
        history = prepared.filter(fit)
        fit_rows = history.count()
        if fit_rows < 2:  # too little text to fit: text features stay null
            return events.withColumn(_TEXT, F.lit(None).cast("array<double>")), fit_rows
        # Deterministic content-based sample: the same events always give the same model.
        buckets = 1_000_000
        keep = max(1, min(buckets, buckets * TEXT_FIT_ROWS // fit_rows))
        sample = history.filter(
            F.pmod(F.xxhash64(F.col(text.column), F.col(contract.timestamp)), F.lit(buckets)) < keep
        ).select("_terms")
        w2v = Word2Vec(vectorSize=k, minCount=1, seed=42, inputCol="_terms", outputCol="_vec", maxIter=1)
        vectors = w2v.fit(sample.coalesce(1)).transform(prepared)
    else:
        vectors = HashingTF(numFeatures=k, inputCol="_terms", outputCol="_vec").transform(prepared)
        vectors = vectors.withColumn(_TEXT_FIT, fit)
    vectors = vectors.withColumn(_TEXT, F.when(has_text, vector_to_array(F.col("_vec"))))
    return vectors.drop("_t", "_tokens", "_terms", "_vec", *[f"_g{n}" for n in range(2, text.ngrams + 1)]), fit_rows


def _apply_idf(frame: DataFrame, names: list[str], counts: list[str]) -> tuple[DataFrame, int, DataFrame]:
    """The TF-IDF features: each bucket's mean term count (column of ``names``) times MLlib's IDF weight
    ``log((m + 1) / (df + 1))``, m the fitted texts and df those with a term in the bucket (Spark's IDF doc), from
    the ``counts`` columns (``_idf_docs``, then ``_idf_df<i>`` per name); null when fewer than two texts were
    fitted. Persists the frame (the feature pass runs once, here) and returns (weighted frame without the counts,
    m, the persisted frame)."""
    cached = frame.persist()
    sums = cached.agg(*[F.coalesce(F.sum(c), F.lit(0)) for c in counts]).collect()[0]
    docs = int(sums[0])
    weights = {n: math.log((docs + 1) / (int(df) + 1)) for n, df in zip(names, sums[1:], strict=True)}

    def weighted(n: str) -> Column:
        if docs < 2:  # too little text to weigh terms: text features stay null
            return F.lit(None).cast("double").alias(n)
        return (F.col(n) * F.lit(weights[n])).alias(n)

    out = cached.select(*[weighted(c) if c in weights else F.col(c) for c in frame.columns if c not in counts])
    return out, docs, cached


def compute_features(
    contract: Contract,
    events: DataFrame,
    references: Mapping[str, DataFrame | None],
    reference_contracts: Mapping[str, Contract],
    cutoffs: Cutoffs,
) -> FeatureResult:
    """Features (and the label for training cutoffs) per entity and cutoff from the curated events."""
    spec, label = contract.features, contract.label
    assert spec is not None
    assert label is not None
    assert contract.timestamp is not None
    entity, ts = contract.entity, contract.timestamp
    if dict(events.dtypes).get(ts) == "date":  # a contract may time its events by day: midnight (session time zone)
        events = events.withColumn(ts, F.col(ts).cast("timestamp"))
    windows = sorted(spec.windows)
    features: list[FeatureSpec] = []
    aggs: list[Column] = []
    missing: list[str] = []
    counters: list[str] = []

    def add(name: str, expr: Column, type_: str, description: str) -> None:
        features.append(FeatureSpec(name, type_, description))
        aggs.append(expr.cast(type_).alias(name))

    following: list[str] = []  # columns with distinct counts: each event gets the time of the next one of its value

    def distinct_count(name: str, column: str, w: int, description: str) -> None:
        """The exact number of distinct non-null values of ``column`` in window ``w``: the events in the window that
        are the latest of their value before the cutoff."""
        if column not in following:
            following.append(column)
        nxt = F.col(_next(column))
        latest = nxt.isNull() | (nxt >= F.col(CUTOFF).cast("timestamp"))
        add(name, F.count_if(in_window(w) & F.col(column).isNotNull() & latest), "bigint", description)

    # --- event-level enrichment from reference datasets joined on a non-entity key (e.g. product -> category)
    event_joins = [j for j in spec.joins if j.key != entity]
    for j in event_joins:
        needed = sorted({a.column for a in j.aggregations} | {s.column for s in j.shares} | set(j.attributes))
        ref = references.get(j.dataset)
        ref_contract = reference_contracts[j.dataset]
        if ref is None:
            missing.append(j.dataset)
            for c in needed:
                events = events.withColumn(f"_{j.dataset}_{c}", F.lit(None).cast(_spark_type(ref_contract, c)))
            events = events.withColumn(f"_{j.dataset}_matched", F.lit(None).cast("boolean"))
        else:
            small = latest_per_key(ref, j.key).select(
                F.col(j.key),
                *[F.col(c).alias(f"_{j.dataset}_{c}") for c in needed],
                F.lit(True).alias(f"_{j.dataset}_matched"),
            )
            # Broadcast when Spark finds the table small (spark.sql.autoBroadcastJoinThreshold, 10 MB by default, and
            # AQE's at run time), not by a hint: a hint broadcasts a reference table of any size from the driver.
            events = events.join(small, on=j.key, how="left")

    # --- text: per-event vector; the model (IDF weights or Word2Vec) sees only events before the first cutoff
    text_fit_rows = 0
    if spec.text is not None:
        events, text_fit_rows = _text_vectors(events, contract, min(cutoffs.train))

    # One shuffle of the raw events by entity, before the copies per cutoff: the lag window and the group-by below
    # both reuse this partitioning, so no aggregation buffer crosses a shuffle. Without it Spark aggregates partially
    # before shuffling, and with a few events per entity and cutoff in each input split that partial step keeps
    # about one group per event copy, each with its buffers serialized, shuffled and merged (measured 2-3x the CPU of
    # this plan when percentiles and distinct counts were sketches, issue #3). The windows per entity below (gaps,
    # next values, percentile ranks) need this partitioning too.
    events = events.filter(F.col(entity).isNotNull() & F.col(ts).isNotNull()).repartition(entity)
    if spec.sequence is not None:
        # The gap to the entity's previous event does not depend on the cutoff (every earlier event is before the
        # cutoff too), so it is computed once per event, before the copies per cutoff, on the partitioning above.
        order = Window.partitionBy(entity).orderBy(F.col(ts))
        micros = F.unix_micros(F.col(ts))
        events = events.withColumn(_GAP, _days(micros - F.lag(micros).over(order)))
    # Window membership as boolean columns computed once per row, so the aggregates below only test a column.
    short = [spec.sequence.short_window_days, 2 * spec.sequence.short_window_days] if spec.sequence else []
    bounds = sorted({*windows, *short})
    age = F.unix_micros(F.col(CUTOFF).cast("timestamp")) - F.unix_micros(F.col(ts))
    before = F.col(_AGE) > 0

    def in_window(w: int) -> Column:
        return F.col(f"_in{w}")

    ranked: dict[str, set[int]] = {}  # column -> windows whose ranks its percentiles need (added before the group-by)

    def percentile(column: str, w: int, k: int) -> Column:
        """The exact ``k``-th percentile (nearest rank) of ``column`` over window ``w``: the value of the window whose
        rank among the window's non-null values is ceil(k * n / 100), in integers (no rounding of k * n / 100)."""
        ranked.setdefault(column, set()).add(w)
        rank, n = F.col(f"_rank_{column}_{w}"), F.col(f"_n_{column}_{w}")
        target = F.floor((n * F.lit(k) + F.lit(99)) / F.lit(100))
        return F.max(F.when(_ranks(in_window(w), column) & (rank == target), F.col(column).cast("double")))

    # --- windowed aggregates of the dataset's own columns
    for a in spec.aggregations:
        for w in windows:
            v = F.when(in_window(w), F.col(a.column))
            for fn in a.functions:
                name, what = window_feature(a.column, fn, w), f"{_describe(fn)} {a.column} over [cutoff - {w}d, cutoff)"
                if fn == "distinct":
                    distinct_count(name, a.column, w, what)
                elif PERCENTILE.match(fn):
                    add(name, percentile(a.column, w, int(fn[1:])), "double", what)
                else:
                    add(name, *_simple_agg(fn, v), what)

    # --- aggregates over attributes of joined events (e.g. distinct categories, share of spend per category)
    for j in event_joins:
        ref_contract = reference_contracts[j.dataset]
        # A reference table not curated yet: its aggregates and shares are null (unknown), not the 0 that counts,
        # sums and shares over attributes that are all null would give.
        absent = j.dataset in missing
        for a in j.aggregations:
            for w in windows:
                v = F.when(in_window(w), F.col(f"_{j.dataset}_{a.column}"))
                for fn in a.functions:
                    name = window_feature(a.column, fn, w, j.dataset)
                    what = f"{_describe(fn)} {j.dataset}.{a.column} of the events over [cutoff - {w}d, cutoff)"
                    if absent:
                        add(name, F.lit(None), "bigint" if fn in ("count", "distinct") else "double", what)
                    elif fn == "distinct":
                        distinct_count(name, f"_{j.dataset}_{a.column}", w, what)
                    elif PERCENTILE.match(fn):
                        add(name, percentile(f"_{j.dataset}_{a.column}", w, int(fn[1:])), "double", what)
                    else:
                        add(name, *_simple_agg(fn, v), what)
        for s in j.shares:
            values = ref_contract.column(s.column).allowed or ()
            for w in windows:
                total = F.sum(F.when(in_window(w), F.col(s.measure)))
                for value in values:
                    part = F.sum(
                        F.when(in_window(w) & (F.col(f"_{j.dataset}_{s.column}") == F.lit(value)), F.col(s.measure))
                    )
                    share = F.lit(None) if absent else _safe_ratio(F.coalesce(part, F.lit(0.0)), total)
                    add(
                        share_feature(j.dataset, s, value, w),
                        share,
                        "double",
                        f"share of {s.measure} on {s.column}={value} over [cutoff - {w}d, cutoff)",
                    )
        # The latest event before the cutoff; events of the same time (a contract timed by day: the same day) are
        # ordered by the join key, so that one event gives every attribute, whatever order the rows arrive in.
        latest = F.when(before, F.struct((F.col(_AGE) * -1).alias("t"), F.col(j.key).alias("k")))
        for attr in j.attributes:
            atype = ref_contract.column(attr).type
            what = f"{j.dataset}.{attr} of the entity's latest event before the cutoff"
            if atype in DATED_TYPES:
                what = f"days from {what} to the cutoff"
            value = _attribute_feature(F.col(f"_{j.dataset}_{attr}"), atype)
            name = attribute_feature(j.dataset, attr, atype, of_entity=False)
            add(name, F.max_by(value, latest), _attr_type(atype), what)
        counter = f"_unknown_{j.dataset}"
        counters.append(counter)
        aggs.append(
            F.count(F.when(F.col(j.key).isNotNull() & F.col(f"_{j.dataset}_matched").isNull() & before, 1)).alias(
                counter
            )
        )

    # --- sequence features
    if spec.sequence is not None:
        k = spec.sequence.short_window_days
        gap = F.when(before, F.col(_GAP))
        sequence = [  # in the order of sequence_features' names
            (_days(F.min(F.when(before, F.col(_AGE)))), "double", "days from the latest event to the cutoff"),
            (_days(F.max(F.when(before, F.col(_AGE)))), "double", "days from the first event to the cutoff"),
            (F.count(F.when(in_window(k), 1)), "bigint", f"events over [cutoff - {k}d, cutoff)"),
            (
                F.count(F.when(in_window(2 * k) & ~in_window(k), 1)),
                "bigint",
                f"events over [cutoff - {2 * k}d, cutoff - {k}d)",
            ),
            (F.avg(gap), "double", "mean days between consecutive events (null with one event)"),
            (F.stddev_samp(gap), "double", "standard deviation of days between events (null below three events)"),
            (F.max(gap), "double", "longest gap in days between consecutive events (null with one event)"),
        ]
        for name, (expr, type_, what) in zip(sequence_features(spec.sequence), sequence, strict=True):
            add(name, expr, type_, what)

    # --- text features: mean of the per-event vectors over the longest window
    text_names: list[str] = []
    if spec.text is not None:
        tw = windows[-1]
        for i, name in enumerate(text_features(spec.text)):
            text_names.append(name)
            add(
                name,
                F.avg(F.when(in_window(tw), F.col(_TEXT)[i])),
                "double",
                f"component {i} of the mean {spec.text.method} vector of non-empty {spec.text.column}"
                f" over [cutoff - {tw}d, cutoff)",
            )
    idf_counts: list[str] = []
    if spec.text is not None and spec.text.method == "tfidf":
        # IDF document counts, from the scoring cutoff's copy of each event: every event before the first training
        # cutoff has one (in the scoring population), so summing these over the result counts each fitted text once.
        fitted = (F.col(ROLE) == "score") & F.col(_TEXT_FIT)
        idf_counts = [_IDF_DOCS, *[f"_idf_df{i}" for i in range(len(text_names))]]
        aggs.append(F.count_if(fitted).alias(_IDF_DOCS))
        aggs += [F.count_if(fitted & (F.col(_TEXT)[i] > 0)).alias(c) for i, c in enumerate(idf_counts[1:])]

    # --- label
    in_label = F.col(_AGE) <= 0
    if label.kind == "active_in_horizon":
        label_expr = F.max(F.when(in_label, 1).otherwise(0))
        label_type = "int"
    else:
        assert label.measure is not None
        label_expr = F.coalesce(F.sum(F.when(in_label, F.col(label.measure))), F.lit(0)).cast("double")
        label_type = "double"
    population = F.max(before.cast("int"))  # entities with at least one event before the cutoff

    # Ranks for the percentiles, once per event before the copies per cutoff (half the rows to sort): per entity,
    # ordered by the column (a local sort: the partitioning by entity above already groups the rows, no shuffle), for
    # each cutoff and window the running and the total count of the window's non-null values; the running count is
    # the event's rank when the event is in the window. Each copy then carries its own cutoff's counts.
    ends = [(c, "train", c + timedelta(days=label.horizon_days)) for c in cutoffs.train]  # (cutoff, role, end)
    ends.append((cutoffs.score, "score", cutoffs.score))
    counted = [(column, w) for column, ws in ranked.items() for w in sorted(ws)]
    rank_columns = [f"_{k}_{column}_{w}" for column, w in counted for k in ("rank", "n")]  # each cutoff's copy
    # The next event of the same entity and value, for the distinct counts: like the ranks, it does not depend on the
    # cutoff, so it is taken once per event (a local sort on the partitioning by entity, no shuffle).
    for column in following:
        same_value = Window.partitionBy(entity, column).orderBy(F.col(ts))
        events = events.withColumn(_next(column), F.lead(F.col(ts)).over(same_value))
    if ranked:
        counts = []
        for column, ws in ranked.items():
            by_value = Window.partitionBy(entity).orderBy(F.col(column))
            running = by_value.rowsBetween(Window.unboundedPreceding, Window.currentRow)
            whole = by_value.rowsBetween(Window.unboundedPreceding, Window.unboundedFollowing)
            for i, (at, _, _) in enumerate(ends):
                age_c = F.unix_micros(F.lit(at).cast("timestamp")) - F.unix_micros(F.col(ts))
                for w in sorted(ws):
                    one = _ranks(_within(age_c, w), column).cast("int")
                    counts += [
                        F.sum(one).over(running).alias(f"_rank_{column}_{w}_{i}"),
                        F.sum(one).over(whole).alias(f"_n_{column}_{w}_{i}"),
                    ]
        events = events.select("*", *counts)

    # --- one copy of each event per cutoff it can inform (features before the cutoff, label window for training)
    cut = [
        F.struct(
            F.lit(i).alias("i"),
            F.lit(c).alias("c"),
            F.lit(r).alias("r"),
            F.lit(e).alias("e"),
            *[F.col(f"{name}_{i}").alias(name) for name in rank_columns],
        )
        for i, (c, r, e) in enumerate(ends)
    ]
    per_cutoff = [f"{name}_{i}" for name in rank_columns for i in range(len(ends))]
    exploded = (
        events.withColumn("_x", F.explode(F.array(*cut)))
        .drop(*per_cutoff)
        .filter(F.col(ts) < F.col("_x.e").cast("timestamp"))
        .withColumn(_CI, F.col("_x.i"))
        .withColumn(CUTOFF, F.col("_x.c"))
        .withColumn(ROLE, F.col("_x.r"))
        .select("*", *[F.col(f"_x.{name}").alias(name) for name in rank_columns])
        .drop("_x")
        .select("*", age.alias(_AGE))
        .select("*", *[_within(F.col(_AGE), w).alias(f"_in{w}") for w in bounds])
    )

    # Grouped by the cutoff's index (a small key); the cutoff and role are put back from it.
    grouped = exploded.groupBy(entity, _CI).agg(
        *aggs, label_expr.cast(label_type).alias(label.name), population.alias("_population")
    )
    result = grouped.filter(F.col("_population") == 1).drop("_population")
    position = F.col(_CI) + 1
    result = result.select(
        "*",
        F.element_at(F.array(*[F.lit(c) for c, _, _ in ends]), position).alias(CUTOFF),
        F.element_at(F.array(*[F.lit(r) for _, r, _ in ends]), position).alias(ROLE),
    )
    result = result.withColumn(label.name, F.when(F.col(ROLE) == "train", F.col(label.name)))

    # --- entity attributes from reference datasets keyed by the entity (e.g. customer segment)
    for j in spec.joins:
        if j.key != entity or not j.attributes:
            continue
        ref_contract = reference_contracts[j.dataset]
        ref = references.get(j.dataset)
        counter = f"_unknown_{j.dataset}"
        names = []
        for attr in j.attributes:
            atype = ref_contract.column(attr).type
            name = attribute_feature(j.dataset, attr, atype, of_entity=True)
            names.append((attr, name, atype))
        if ref is None:
            missing.append(j.dataset)
            for _attr, name, atype in names:
                result = result.withColumn(name, F.lit(None).cast(_attr_type(atype)))
            result = result.withColumn(counter, F.lit(0))
        else:
            small = latest_per_key(ref, j.key).select(
                F.col(j.key).alias(entity), *[F.col(a).alias(f"_a_{a}") for a, _, _ in names], F.lit(1).alias("_m")
            )
            result = result.join(small, on=entity, how="left")  # a broadcast when small, as above
            for attr, name, atype in names:
                result = result.withColumn(name, _attribute_feature(F.col(f"_a_{attr}"), atype)).drop(f"_a_{attr}")
            result = result.withColumn(counter, F.when(F.col("_m").isNull(), 1).otherwise(0)).drop("_m")
        counters.append(counter)
        for attr, name, atype in names:
            what = f"value of {j.dataset}.{attr} of the entity"
            if atype in DATED_TYPES:
                what = f"days from {j.dataset}.{attr} of the entity to the cutoff"
            features.append(FeatureSpec(name, _attr_type(atype), f"{what} (the reference table's current row)"))

    # parse_contract checked the names feature_names gives for clashes: they must be the names computed here.
    if [f.name for f in features] != list(feature_names(spec, entity, reference_contracts)):
        raise RuntimeError("spark_app.features and dropzone.contract.feature_names name the features differently")
    ordered = [entity, CUTOFF, ROLE, *[f.name for f in features], label.name, *counters]
    frame = result.select(*ordered, *idf_counts)
    cached = None
    if idf_counts:
        frame, text_fit_rows, cached = _apply_idf(frame, text_names, idf_counts)
    return FeatureResult(frame, features, sorted(missing), counters, text_fit_rows, cached)  # each dataset joined once


def _describe(fn: str) -> str:
    """The start of a windowed aggregate's description, e.g. "sum (0 when none) of"."""
    return _DESCRIBE.get(fn) or f"{fn[1:]}th percentile (exact, nearest rank) of"


def _simple_agg(fn: str, v: Column) -> tuple[Column, str]:
    if fn == "count":
        return F.count(v), "bigint"
    if fn == "rate":
        return F.avg(v.cast("double")), "double"
    if fn == "sum":
        return F.coalesce(F.sum(v), F.lit(0)), "double"
    if fn == "mean":
        return F.avg(v), "double"
    if fn == "min":
        return F.min(v), "double"
    if fn == "max":
        return F.max(v), "double"
    if fn == "stddev":
        return F.stddev_samp(v), "double"
    raise ValueError(f"unknown aggregation {fn!r}")


def _next(column: str) -> str:
    """The per-event column holding the time of the entity's next event with the same value of ``column``."""
    return f"_next_{column}"


def _within(age_us: Column, w: int) -> Column:
    """Whether an event ``age_us`` microseconds before the cutoff is in window ``w``: ``[cutoff - w days, cutoff)``."""
    return (age_us > 0) & (age_us <= F.lit(w * DAY_US))


def _ranks(in_window: Column, column: str) -> Column:
    """Whether a row counts among the window's values for a percentile: in the window, value not null."""
    return in_window & F.col(column).isNotNull()


def _spark_type(contract: Contract, column: str) -> str:
    return {
        "string": "string",
        "int": "bigint",
        "double": "double",
        "bool": "boolean",
        "date": "date",
        "timestamp": "timestamp",
    }[contract.column(column).type]


def _attribute_feature(value: Column, column_type: str) -> Column:
    """A reference attribute as a feature, whether of the entity or of its latest event: a date or time as days to
    the cutoff (an absolute date would mean something else at every cutoff), a bool as 0/1, anything else as is."""
    if column_type in DATED_TYPES:
        value = F.datediff(F.col(CUTOFF), F.to_date(value))
    return value.cast(_attr_type(column_type))


def _attr_type(column_type: str) -> str:
    return {
        "string": "string",
        "int": "bigint",
        "double": "double",
        "bool": "int",
        "date": "double",
        "timestamp": "double",
    }[column_type]
