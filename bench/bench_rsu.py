"""Benchmark of RSU scoring: households a second one by one (``score``) and vectorised
(``score_many``), measured in the same run; a bulk re-score of 1,000,000 synthetic households in
chunks (time, peak RSS, households/s); the score distribution and the shares under each
threshold; how many households change eligibility between two threshold versions and between
two model versions.

Everything is ILLUSTRATIVE: the bundled model is not the official one, the households are
invented (``synthetic_households``), and the second model and threshold versions are
hypothetical revisions made up here. Run: .venv/bin/python bench/bench_rsu.py [households]
"""

from __future__ import annotations

import resource
import sys
import time
from datetime import date

import numpy as np

from central_api.rsu.scoring import (
    SCALE,
    Programme,
    ThresholdTable,
    eligible_many,
    load_model,
    load_thresholds,
    parse_model,
    parse_thresholds,
    points_many,
    score,
    score_many,
    synthetic_declarations,
    synthetic_households,
    to_table,
)

CHUNK = 100_000
TODAY, LATER = date(2026, 3, 1), date(2027, 6, 1)


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def revised_thresholds(current: ThresholdTable) -> ThresholdTable:
    """The bundled thresholds plus a hypothetical revision from 2027 (after the census)."""
    rows = [t.model_dump(mode="json") for t in current.versions]
    rows += [
        {
            "programme": "amo_tadamon",
            "version": "amo_tadamon-2027.1-hypothetical",
            "value": 9.38,
            "effective_from": "2027-01-01",
            "source": "hypothetical (bench)",
        },
        {
            "programme": "asd",
            "version": "asd-2027.1-hypothetical",
            "value": 9.80,
            "effective_from": "2027-01-01",
            "source": "hypothetical (bench)",
        },
    ]
    return parse_thresholds({"scale": "bench", "thresholds": rows}, "revised thresholds")


def main(total: int = 1_000_000) -> None:
    model = load_model("pmt-illustrative-2026.1")
    spec = model.spec.model_dump(mode="json")
    spec["version"] = "pmt-illustrative-2026.2-hypothetical"
    for area in spec["areas"].values():  # a made-up re-estimation
        area["intercept"] -= 0.03
        area["expenses"]["electricity"] += 0.02
        area["region"] = {k: v * 0.5 for k, v in area["region"].items()}
    model_b = parse_model(spec, "revised model")
    thresholds = load_thresholds()
    revised = revised_thresholds(thresholds)
    now = {p: thresholds.in_force(p, TODAY) for p in Programme}
    later = {p: revised.in_force(p, LATER) for p in Programme}
    print(f"model {model.version} (official: {model.official}); thresholds in force {TODAY}:")
    for p, t in now.items():
        print(f"  {p:12s} {t.value:<10} {t.version:20s} -> {later[p].version} {later[p].value}")

    # one by one against vectorised, same households, same run
    pairs = synthetic_declarations(5000, seed=1)
    t0 = time.perf_counter()
    one = np.array([score(model, d, p).value for d, p in pairs])
    one_rate = len(pairs) / (time.perf_counter() - t0)
    table = to_table([d for d, _ in pairs], [p for _, p in pairs])
    t0 = time.perf_counter()
    many = score_many(model, table)
    small_rate = len(pairs) / (time.perf_counter() - t0)
    assert np.array_equal(one, many), "score_many differs from score"
    chunk = synthetic_households(CHUNK, seed=2)
    t0 = time.perf_counter()
    score_many(model, chunk)
    chunk_rate = CHUNK / (time.perf_counter() - t0)
    print(f"\nscore, one by one:         {one_rate:>12,.0f} households/s (5,000)")
    print(f"score_many, same 5,000:    {small_rate:>12,.0f} households/s (identical values)")
    print(f"score_many, {CHUNK:,} rows: {chunk_rate:>12,.0f} households/s")
    print(f"vectorised / one by one:   {chunk_rate / one_rate:>12,.0f}x")

    # bulk re-score
    rss0 = peak_rss_mib()
    scores = np.empty(total, dtype=np.float64)
    urban = np.empty(total, dtype=bool)
    changed_thresholds = dict.fromkeys(Programme, 0)
    changed_model = dict.fromkeys(Programme, 0)
    gen_s = score_s = 0.0
    for start in range(0, total, CHUNK):
        n = min(CHUNK, total - start)
        t0 = time.perf_counter()
        part = synthetic_households(n, seed=1000 + start // CHUNK)
        t1 = time.perf_counter()
        points = points_many(model, part)
        points_b = points_many(model_b, part)
        for p in Programme:
            before = eligible_many(points, now[p])
            after_thresholds = eligible_many(points, later[p])
            after_model = eligible_many(points_b, now[p])
            changed_thresholds[p] += int(np.count_nonzero(before != after_thresholds))
            changed_model[p] += int(np.count_nonzero(before != after_model))
        score_s += time.perf_counter() - t1
        gen_s += t1 - t0
        scores[start : start + n] = points / SCALE
        urban[start : start + n] = part["urban"]
    print(
        f"\nbulk re-score of {total:,} households in chunks of {CHUNK:,} (each scored by two "
        f"models, six eligibility tests): {score_s:.2f} s, {total / score_s:,.0f} households/s"
        f" (generating them: {gen_s:.2f} s more); peak RSS {peak_rss_mib():.0f} MiB"
        f" (before the bulk run {rss0:.0f} MiB)"
    )
    print("eligibility changed:")
    for p in Programme:
        print(
            f"  {p:12s} thresholds {now[p].version} -> {later[p].version}: "
            f"{changed_thresholds[p]:>8,} ({changed_thresholds[p] / total:.1%});  model "
            f"{model.version} -> {model_b.version}: {changed_model[p]:>8,} "
            f"({changed_model[p] / total:.1%})"
        )

    print("\nscore distribution (illustrative model, invented households):")
    print(f"  {'':6s} {'p1':>6} {'p10':>6} {'p50':>6} {'p90':>6} {'p99':>6}   <= AMO   <= ASD")
    for name, mask in (("all", np.ones(total, bool)), ("urban", urban), ("rural", ~urban)):
        x = scores[mask]
        pct = " ".join(f"{v:6.2f}" for v in np.percentile(x, [1, 10, 50, 90, 99]))
        amo = (x <= now[Programme.AMO_TADAMON].value).mean()
        asd = (x <= now[Programme.ASD].value).mean()
        print(f"  {name:6s} {pct}   {amo:6.1%}   {asd:6.1%}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000)
