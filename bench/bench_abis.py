"""The registry's multi-modal dedup (ABIS): score calibration and fused decisions.

- ``calibrate``: the genuine and impostor score distributions of each matcher on real data,
  fitted to log-likelihood ratios (linear logistic regression, both classes weighted equally,
  as speaker-recognition calibration does), printed as the constants of
  ``central_api/dedup/fusion.py``. Fingers: the four FVC2004 B sets, the project's extractor
  (templates cached under bench/.cache/fvc), FVC protocol pairs (genuine: every pair of
  impressions of one finger; impostor: every pair of two different fingers), scores in bits.
  Faces: every photo of ../shared/data/faces (dlib templates), all pairs.
- ``fused``: the fused decision on the real sets: persons built from FVC fingers (each FVC
  finger stands for one finger position of a person) and face photos, mated and non-mated
  searches scored as the registry scores them.

Run: .venv/bin/python bench/bench_abis.py calibrate
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import math
import multiprocessing
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from biometrics import face
from biometrics import fingerprint as fp

ROOT = Path(__file__).resolve().parents[1]
FVC = ROOT.parent / "shared/data/fingerprints/fvc2004"
FVC_DPI = {"DB1_B": 500, "DB2_B": 500, "DB3_B": 512, "DB4_B": 500}
CACHE = Path(__file__).parent / ".cache" / "fvc"


def _extract(job: tuple[str, str]) -> tuple[str, bytes]:
    name, path = job
    image = cv2.imread(path, cv2.IMREAD_GRAYSCALE)
    try:
        return path, fp.extract(image, dpi=FVC_DPI[name]).to_iso19794_2()
    except fp.FingerprintError:
        return path, b""


def fvc_templates(name: str) -> dict[tuple[int, int], fp.FingerprintTemplate | None]:
    """The project's templates of one FVC2004 B set, keyed (finger, impression); extracted on
    every core once and cached (None: failed to extract)."""
    folder = CACHE / name
    folder.mkdir(parents=True, exist_ok=True)
    images = sorted((FVC / name).glob("*.png"))
    todo = [(name, str(p)) for p in images if not (folder / f"{p.stem}.iso").exists()]
    if todo:
        cores = len(os.sched_getaffinity(0))
        with multiprocessing.get_context("spawn").Pool(max(1, (cores + 1) // 2)) as pool:
            for path, record in pool.imap_unordered(_extract, todo):
                (folder / f"{Path(path).stem}.iso").write_bytes(record)
    out: dict[tuple[int, int], fp.FingerprintTemplate | None] = {}
    for p in images:
        record = (folder / f"{p.stem}.iso").read_bytes()
        key = tuple(int(x) for x in p.stem.split("_"))
        out[key] = fp.FingerprintTemplate.from_iso19794_2(record) if record else None  # type: ignore[index]
    return out


def finger_scores(names: Sequence[str] = tuple(FVC_DPI)) -> tuple[np.ndarray, np.ndarray]:
    """Genuine and impostor scores (bits) of FVC2004 B sets (default: all four), FVC protocol,
    pooled; pairs with a failed extraction are left out (the registry never compares those)."""
    per_set = [
        _protocol_scores({k: t for k, t in fvc_templates(name).items() if t is not None})
        for name in names
    ]
    return np.concatenate([g for g, _ in per_set]), np.concatenate([i for _, i in per_set])


def face_scores() -> tuple[np.ndarray, np.ndarray]:
    """Genuine and impostor cosine similarities of every pair of the shared face photos."""
    from bench_face import scored_pairs  # bench/, beside this script

    gen, imp, _, _ = scored_pairs()
    return gen, imp


def fit_llr(gen: np.ndarray, imp: np.ndarray) -> tuple[float, float]:
    """Linear logistic calibration ``llr = slope * score + offset`` (natural log), both
    classes weighted equally so that the output is a likelihood ratio, not a posterior
    (Brümmer's prior-weighted logistic regression, the BOSARIS/FoCal recipe). Newton's
    method on the two parameters (Laplace-smoothed, as BOSARIS's ``optimal_llr``)."""
    # Laplace's rule of succession as BOSARIS applies it: one more genuine and one more
    # impostor score at each end of the range, so that classes the data separates perfectly
    # (the few shared face photos) still get a finite slope
    ends = np.array([min(gen.min(), imp.min()), max(gen.max(), imp.max())])
    gen, imp = np.concatenate([gen, ends]), np.concatenate([imp, ends])
    x = np.concatenate([gen, imp])
    y = np.concatenate([np.ones(len(gen)), np.zeros(len(imp))])
    w = np.where(y == 1, 0.5 / len(gen), 0.5 / len(imp))
    scale = float(np.std(x)) or 1.0
    z = np.stack([x / scale, np.ones_like(x)], axis=1)
    theta = np.zeros(2)
    for _ in range(100):
        p = 1 / (1 + np.exp(-(z @ theta)))
        grad = z.T @ (w * (p - y))
        hess = (z * (w * p * (1 - p))[:, None]).T @ z + 1e-9 * np.eye(2)
        step = np.linalg.solve(hess, grad)
        theta -= step
        if np.abs(step).max() < 1e-10:
            break
    return float(theta[0] / scale), float(theta[1])


def calibrated_range(
    gen: np.ndarray, imp: np.ndarray, slope: float, offset: float
) -> tuple[float, float]:
    """Scores outside this range are clamped to it. Where the classes overlap, it runs from
    where genuine scores begin (1st percentile) to where impostor scores end (the highest):
    past those ends one class has no data. And no score may claim more evidence than the
    pairs measured can show: the LLR stays within [-ln(genuine pairs), ln(impostor pairs)]
    (the only bound for classes the data separates, as the shared face photos)."""
    lo = (-math.log(len(gen)) - offset) / slope
    hi = (math.log(len(imp)) - offset) / slope
    start, end = float(np.percentile(gen, 1)), float(imp.max())
    if start < end:
        lo, hi = max(lo, start), min(hi, end)
    return lo, hi


def describe(name: str, gen: np.ndarray, imp: np.ndarray) -> None:
    """Print a matcher's distributions and its calibration."""
    slope, offset = fit_llr(gen, imp)
    lo, hi = calibrated_range(gen, imp, slope, offset)
    print(f"{name}: {len(gen)} genuine, {len(imp)} impostor pairs")
    print(
        f"  genuine  p1 {np.percentile(gen, 1):.4f} median {np.median(gen):.4f}; "
        f"impostor median {np.median(imp):.4f} p99 {np.percentile(imp, 99):.4f} "
        f"p99.9 {np.percentile(imp, 99.9):.4f} max {imp.max():.4f}"
    )
    print(
        f"  Calibration(slope={slope:.4f}, offset={offset:.4f}, lo={lo:.4f}, hi={hi:.4f}): "
        f"LLR {slope * lo + offset:.2f} .. {slope * hi + offset:.2f}"
    )
    for s in np.linspace(lo, hi, 6):
        print(f"    score {s:8.4f}: llr {slope * s + offset:7.2f}")
    # how well calibrated: the impostor mean of the likelihood ratio should be about 1
    lr_imp = np.exp(slope * np.clip(imp, lo, hi) + offset)
    lr_gen = np.exp(-(slope * np.clip(gen, lo, hi) + offset))
    print(
        f"  E_impostor[LR] {lr_imp.mean():.3f}, E_genuine[1/LR] {lr_gen.mean():.3f} "
        "(both 1 if calibrated)"
    )


def calibrate() -> None:
    """Measure both matchers on real data and print the fusion's calibration constants."""
    describe("fingers (bits, FVC2004 B, project extractor)", *finger_scores())
    describe("faces (cosine, shared photos, dlib)", *face_scores())


STEP = 0.01  # nats: the grid the LLR distributions are convolved on


def _pmf(llrs: np.ndarray) -> tuple[float, np.ndarray]:
    """An empirical LLR distribution on the grid: (value of bin 0, probabilities). Values are
    rounded up to the grid (conservative for impostors)."""
    lo = math.floor(float(llrs.min()) / STEP) * STEP
    idx = np.ceil((llrs - lo) / STEP - 1e-9).astype(np.int64)
    return lo, np.bincount(idx) / len(llrs)


def _add(a: tuple[float, np.ndarray], b: tuple[float, np.ndarray]) -> tuple[float, np.ndarray]:
    """The distribution of the sum of two independent LLRs (FFT convolution)."""
    n = len(a[1]) + len(b[1]) - 1
    size = 1 << (n - 1).bit_length()
    p = np.fft.irfft(np.fft.rfft(a[1], size) * np.fft.rfft(b[1], size), size)[:n]
    return a[0] + b[0], np.clip(p, 0.0, None)


def _sum_of(d: tuple[float, np.ndarray], k: int) -> tuple[float, np.ndarray]:
    out = d
    for _ in range(k - 1):
        out = _add(out, d)
    return out


def _survival(d: tuple[float, np.ndarray], t: float) -> float:
    """P(LLR >= t)."""
    lo, p = d
    i = max(0, math.ceil((t - lo) / STEP - 1e-9))
    return float(p[i:].sum())


def _fpir(single: float, n: int) -> float:
    """FPIR over ``n`` enrolled persons when one non-mate passes with probability ``single``."""
    return float(-np.expm1(n * np.log1p(-min(single, 1.0))))


def fused() -> None:
    """FPIR and FNIR of the shipped decision at 10k, 100k and 1M enrolled persons, from the
    real score distributions (score-level: see the table's note)."""
    from central_api.dedup import fusion

    rng = np.random.default_rng(14)
    fg, fi = finger_scores()
    ag, ai = face_scores()
    llr_f = np.vectorize(fusion.FINGER.llr)
    llr_a = np.vectorize(fusion.FACE.llr)
    same, swap = math.log(1 - fusion.SWAP_PRIOR), math.log(fusion.SWAP_PRIOR)
    # a probe finger against a person: at its own position and, with the swap prior, at the
    # other hand's (an impostor comparison for a mate too, unless the hands were swapped)
    imp_finger = np.logaddexp(same + llr_f(fi), swap + llr_f(rng.choice(fi, len(fi))))
    gen_finger = np.logaddexp(same + llr_f(fg), swap + llr_f(rng.choice(fi, len(fg))))
    finger_i, finger_g = _pmf(imp_finger), _pmf(gen_finger)
    face_i, face_g = _pmf(llr_a(ai)), _pmf(llr_a(ag))
    modes = {
        "fused (10 fingers + face)": (
            _add(_sum_of(finger_i, 10), face_i),
            _add(_sum_of(finger_g, 10), face_g),
        ),
        "fused, 4 fingers missing": (
            _add(_sum_of(finger_i, 6), face_i),
            _add(_sum_of(finger_g, 6), face_g),
        ),
        "fingers alone (10)": (_sum_of(finger_i, 10), _sum_of(finger_g, 10)),
        "one finger alone": (finger_i, finger_g),
    }
    print(
        f"\nScore-level population: per-comparison scores drawn from the real sets ({len(fg)} "
        f"genuine / {len(fi)} impostor FVC2004 finger pairs, {len(ag)} / {len(ai)} face "
        "pairs), independent across fingers and persons; the mate is assumed pre-selected. "
        "Shipped thresholds: duplicate at ln(N / 0.001), adjudication at ln(N / 0.01)."
    )
    print(
        f"{'mode':28s} {'N':>9s} {'FPIR':>9s} {'adjud. non-mated':>16s} "
        f"{'FNIR':>9s} {'adjud. mated':>12s}"
    )
    for name, (imp, gen) in modes.items():
        for n in (10_000, 100_000, 1_000_000):
            dup, adj = math.log(n / 1e-3), math.log(n / 1e-2)
            fpir = _fpir(_survival(imp, dup), n)
            adj_rate = _fpir(_survival(imp, adj), n) - fpir
            fnir = 1 - _survival(gen, adj)  # a mate under both thresholds gets a second IDCS
            adj_mated = _survival(gen, adj) - _survival(gen, dup)
            print(f"{name:28s} {n:9,d} {fpir:9.2e} {adj_rate:16.2e} {fnir:9.2e} {adj_mated:12.2e}")
    # the face alone, as the registry decided before: one threshold on the cosine similarity;
    # impostor tail from the normal fit of the measured impostor scores (face.py's model)
    from statistics import NormalDist

    tail = NormalDist(float(ai.mean()), float(ai.std()))
    print("face alone (cosine threshold; impostor tail: normal fit of the measured pairs)")
    for thr in (0.93, face.threshold_for_fmr(1e-6)):
        for n in (10_000, 100_000, 1_000_000):
            fpir = _fpir(1 - tail.cdf(thr), n)
            print(
                f"  threshold {thr:.3f} {n:9,d}: FPIR {fpir:9.2e}, "
                f"FNIR {float((ag < thr).mean()):9.2e} (genuine pairs under it)"
            )


def _protocol_scores(
    templates: dict[tuple[int, int], fp.FingerprintTemplate], fingers_per_set: int = 10
) -> tuple[np.ndarray, np.ndarray]:
    """Genuine and impostor scores (bits) with the FVC protocol of ``finger_scores``: fingers
    taken in sets of ten, every pair of impressions within a set."""
    gen, imp = [], []
    keys = sorted(templates)
    matchers = {k: fp.FingerprintMatcher(templates[k]) for k in keys}
    fingers = sorted({f for f, _ in keys})
    for first in range(0, len(fingers), fingers_per_set):
        members = set(fingers[first : first + fingers_per_set])
        chosen = [k for k in keys if k[0] in members]
        for a, b in itertools.combinations(chosen, 2):
            (gen if a[0] == b[0] else imp).append(matchers[a].match(templates[b]))
    return np.asarray(gen), np.asarray(imp)


def population(images: int = 10, fingers: int = 200) -> None:
    """Validate the template-level population (bench/population.py) against the real sets and
    against image-based synthetic fingers: genuine and impostor score distributions, FVC
    protocol (``fingers`` synthetic fingers, 8 impressions each; impressions the extractor
    would refuse left out, as failed extractions of the real sets are). Yardstick: two real
    capture campaigns, DB1_B+DB2_B and DB3_B+DB4_B, differ by a two-sample KS statistic and an
    impostor 99.9th percentile that a p-value test on 10,000 pairs rejects, so the population
    passes against a set where it is no farther from it, on all three, than the two real
    halves are from each other. Its constants were set from DB1_B + DB2_B; DB3_B + DB4_B are
    held out. ``images``: image-based fingers (biometrics.synthetic prints, LEADER; about 2 s
    an impression). Then the face model's cosine similarities against the shared photos'."""
    import population as pop  # bench/, beside this script
    from scipy.stats import ks_2samp

    rng = np.random.default_rng(2004)
    made = [pop.finger(rng) for _ in range(fingers)]
    shots: dict[tuple[int, int], fp.FingerprintTemplate] = {}
    for f, i in itertools.product(range(fingers), range(8)):
        with contextlib.suppress(fp.FingerprintError):  # the extractor would refuse it
            shots[(f, i)] = pop.impression(made[f], rng)
    synthetic_scores = _protocol_scores(shots)
    sets = {
        "DB1_B+DB2_B (set from)": finger_scores(["DB1_B", "DB2_B"]),
        "DB3_B+DB4_B (held out)": finger_scores(["DB3_B", "DB4_B"]),
    }
    if images:
        from biometrics import synthetic

        drawn: dict[tuple[int, int], fp.FingerprintTemplate] = {}
        for f in range(images):
            master = synthetic.master_fingerprint(7000 + f)
            for i in range(8):
                with contextlib.suppress(fp.FingerprintError):  # a failed extraction: left out
                    drawn[(f, i)] = fp.extract(synthetic.fingerprint_impression(master, i))
        sets[f"image-based synthetic ({images} fingers, LEADER)"] = _protocol_scores(drawn)
    gen, imp = synthetic_scores
    p = [1, 50, 99, 99.9]
    print(
        f"\ntemplate-level population ({fingers} fingers, {len(shots)} impressions kept of "
        f"{8 * fingers}): {len(gen)} genuine, {len(imp)} impostor pairs; genuine p1/50/99/99.9 "
        f"{np.percentile(gen, p).round(1)}, impostor {np.percentile(imp, p).round(2)} bits"
    )

    def distance(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> tuple:
        tails = float(np.percentile(a[1], 99.9)), float(np.percentile(b[1], 99.9))
        return ks_2samp(a[0], b[0]).statistic, ks_2samp(a[1], b[1]).statistic, *tails

    real = list(sets.values())
    yardstick = distance(real[1], real[0])
    print("| compared | genuine KS | impostor KS | impostor p99.9 (first / second) | verdict |")
    print("|---|---|---|---|---|")
    rows = [(f"population / {label}", synthetic_scores, scores) for label, scores in sets.items()]
    if images:
        rows.append((f"{list(sets)[2]} / DB1_B+DB2_B", real[2], real[0]))
    rows.append(("DB3_B+DB4_B / DB1_B+DB2_B: the yardstick", real[1], real[0]))
    for label, a, b in rows:
        kg, ki, ta, tb = distance(a, b)
        passed = (
            kg <= yardstick[0]
            and ki <= yardstick[1]
            and abs(ta - tb) <= abs(yardstick[2] - yardstick[3])
        )
        print(
            f"| {label} | {kg:.3f} | {ki:.3f} | {ta:.2f} / {tb:.2f} | "
            f"{'-' if a is real[1] and b is real[0] else 'pass' if passed else 'FAIL'} |"
        )
    # faces: the model's cosine similarities against the shared photos' (dlib)
    persons = [pop.face(rng) for _ in range(600)]
    first = np.stack([pop.face_capture(f, rng) for f in persons])
    second = np.stack([pop.face_capture(f, rng) for f in persons])
    model = (first * second).sum(axis=1), (first @ second.T)[np.triu_indices(len(persons), 1)]
    photos = face_scores()
    print("| faces | mean | sd | p0.1 / p99.9 | KS (model / photos) |")
    print("|---|---|---|---|---|")
    for kind, m, ph in (("genuine", model[0], photos[0]), ("impostor", model[1], photos[1])):
        print(
            f"| {kind}: model / photos | {m.mean():.3f} / {ph.mean():.3f} | {m.std():.4f} / "
            f"{ph.std():.4f} | {np.percentile(m, 0.1):.3f} / {np.percentile(ph, 0.1):.3f}, "
            f"{np.percentile(m, 99.9):.3f} / {np.percentile(ph, 99.9):.3f} | "
            f"{ks_2samp(m, ph).statistic:.3f} |"
        )


def _hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamming distances between every row of packed codes ``a`` and of ``b``."""
    return np.unpackbits(a[:, None, :] ^ b[None, :, :], axis=2).sum(axis=2)


def _cosine(q: np.ndarray, g: np.ndarray, centre: np.ndarray) -> np.ndarray:
    a, b = g - centre, q - centre
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    b /= np.linalg.norm(b, axis=1, keepdims=True)
    return b @ a.T


def _code_scores(
    q: np.ndarray, g: np.ndarray, centre: np.ndarray, planes: np.ndarray
) -> np.ndarray:
    gc = np.packbits((g - centre) @ planes.T > 0, axis=1)
    qc = np.packbits((q - centre) @ planes.T > 0, axis=1)
    return -_hamming(qc, gc).astype(float)


def fit_index() -> None:
    """Write the finger index's centre (biometrics/fingerprint/mcc_centre.npy): the mean
    cylinder descriptor of FVC2004 DB1_B and DB2_B (DB3_B and DB4_B stay held out)."""
    ts = [t for name in ("DB1_B", "DB2_B") for t in fvc_templates(name).values() if t]
    centre = np.mean([fp.descriptor(t) for t in ts], axis=0).astype(np.float32)
    out = ROOT / "biometrics/fingerprint/mcc_centre.npy"
    np.save(out, centre)
    print(f"{out.relative_to(ROOT)}: the mean of {len(ts)} templates' descriptors")


def index() -> None:
    """Hit rate against penetration rate of the finger pre-selection (FVC-onGoing style), on
    the FVC2004 B sets: the gallery holds the first impression of every finger, each other
    impression searches it, and the mate's rank gives the penetration at which it is hit."""
    from biometrics.fingerprint._mcc import _code_basis

    centre, planes256 = _code_basis()
    planes512 = np.random.default_rng(99).standard_normal((512, fp.DESCRIPTOR_SIZE))
    for label, names in (
        ("all four sets (40 fingers)", list(FVC_DPI)),
        (
            "held out: DB3_B + DB4_B (20 fingers; the centre was fitted on DB1_B + DB2_B)",
            ["DB3_B", "DB4_B"],
        ),
    ):
        gallery: list[fp.FingerprintTemplate] = []
        probes: list[tuple[int, fp.FingerprintTemplate]] = []
        for name in names:
            ts = fvc_templates(name)
            for finger in sorted({f for f, _ in ts}):
                shots = [ts[(finger, i)] for i in range(1, 9) if ts.get((finger, i))]
                gallery.append(shots[0])  # type: ignore[arg-type]
                probes += [(len(gallery) - 1, t) for t in shots[1:]]  # type: ignore[misc]
        g = np.stack([fp.descriptor(t) for t in gallery])
        q = np.stack([fp.descriptor(t) for _, t in probes])
        mate = np.array([m for m, _ in probes])

        started = time.perf_counter()
        full = np.array([[fp.FingerprintMatcher(t).match(c) for c in gallery] for _, t in probes])
        full_ms = (time.perf_counter() - started) / full.size * 1e3
        methods = {
            "descriptor, centred on the gallery (before)": _cosine(q, g, g.mean(axis=0)),
            "descriptor, fixed centre": _cosine(q, g, centre),
            "index code, 256 bits (shipped)": _code_scores(q, g, centre, planes256),
            "index code, 512 bits": _code_scores(q, g, centre, planes512),
            f"full matcher, every finger ({full_ms:.1f} ms a comparison)": full,
        }
        n = len(gallery)
        cuts = sorted({1, 2, 4, max(1, n // 5), max(1, n * 3 // 10)})
        print(f"\n{label}: {len(probes)} searches of {n} fingers; hit rate at penetration")
        print("| method | " + " | ".join(f"{c / n:.1%}" for c in cuts) + " | mean rank |")
        print("|---|" + "---|" * (len(cuts) + 1))
        for name, sc in methods.items():
            mated = sc[np.arange(len(probes)), mate]
            rank = (sc > mated[:, None]).sum(axis=1) + 0.5 * (
                (sc == mated[:, None]).sum(axis=1) - 1
            )
            hits = " | ".join(f"{np.mean(rank < c):.1%}" for c in cuts)
            print(f"| {name} | {hits} | {rank.mean() + 1:.2f} |")
    _index_at_scale(centre, planes256)


def _index_at_scale(centre: np.ndarray, planes: np.ndarray, depth: int = 256) -> None:
    """How often a mate finger is among the ``depth`` nearest codes of the N fingers held at
    its position (the gallery has an index per position), extrapolated: the genuine Hamming
    distances of the FVC2004 B sets (every mated pair) against the impostor distances' normal
    fit (every non-mated pair), the fit's tail checked against the data; ten fingers: a person
    is pre-selected when at least two of the ten are (fingers taken as independent)."""
    from math import comb
    from statistics import NormalDist

    gen, imp = [], []
    for name in FVC_DPI:
        ts = {k: t for k, t in fvc_templates(name).items() if t is not None}
        keys = sorted(ts)
        codes = np.stack([np.packbits(planes @ (fp.descriptor(ts[k]) - centre) > 0) for k in keys])
        d = _hamming(codes, codes)
        for i, j in itertools.combinations(range(len(keys)), 2):
            (gen if keys[i][0] == keys[j][0] else imp).append(int(d[i, j]))
    g, m = np.asarray(gen), np.asarray(imp)
    fit = NormalDist(float(m.mean()), float(m.std()))
    print(
        f"\nHamming distances of {fp.CODE_BITS}-bit codes, FVC2004 B: genuine mean {g.mean():.1f} "
        f"(sd {g.std():.1f}, {len(g)} pairs), impostor mean {m.mean():.1f} (sd {m.std():.1f}, "
        f"{len(m)} pairs); impostor tail, data / normal fit: "
        + ", ".join(
            f"P(d<={fit.inv_cdf(q):.0f}) {np.mean(m <= fit.inv_cdf(q)):.1e}/{q:.0e}"
            for q in (1e-2, 1e-3)
        )
    )
    print(f"| persons (10 fingers) | a mate finger in the {depth} nearest | >= 2 of 10 mates |")
    print("|---|---|---|")
    for persons in (10_000, 100_000, 1_000_000):
        cut = fit.inv_cdf(depth / persons)
        p = float(np.mean(g < cut))
        two = 1 - sum(comb(10, k) * p**k * (1 - p) ** (10 - k) for k in (0, 1))
        print(f"| {persons:,} | {p:.1%} (distance < {cut:.0f}) | {two:.2%} |")


def _rss() -> int:
    """This process's resident memory in bytes."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _moved(t: fp.FingerprintTemplate, rng: np.random.Generator) -> fp.FingerprintTemplate:
    """The template turned and shifted at random (another finger, for speed figures)."""
    a, dx, dy = rng.uniform(-0.35, 0.35), rng.uniform(-30, 30), rng.uniform(-30, 30)
    cx, cy = t.width / 2, t.height / 2
    ms = []
    for m in t.minutiae:
        x = cx + math.cos(a) * (m.x - cx) - math.sin(a) * (m.y - cy) + dx
        y = cy + math.sin(a) * (m.x - cx) + math.cos(a) * (m.y - cy) + dy
        if 0 <= x < t.width and 0 <= y < t.height:
            ms.append(fp.Minutia(int(x), int(y), (m.angle - a) % (2 * math.pi), m.kind, m.quality))
    return fp.FingerprintTemplate(t.width, t.height, tuple(ms), t.dpi, t.quality, t.position)


def speed(persons: int = 100_000, probes: int = 20) -> None:
    """Time to decide one enrolment (ten fingers + face) against ``persons`` enrolled, memory
    per person, and throughput with batches of 1, 16 and 64 enrolments, with the registry's
    galleries and fusion (the database's part is not counted). The ``probes`` persons searched
    for have real FVC2004 templates (each FVC finger used by one person only) and are searched
    with the templates turned and shifted at random; the other persons' fingers are FVC
    templates with random index codes and their faces random unit vectors: right for time and
    memory (a flat index scans every code whatever it holds), meaningless for accuracy."""
    from concurrent.futures import ThreadPoolExecutor

    from biometrics.gallery import FaceGallery, FingerGallery
    from central_api.dedup import fusion

    rng = np.random.default_rng(7)
    pool = [t for name in FVC_DPI for t in fvc_templates(name).values() if t is not None]
    rng.shuffle(pool)  # type: ignore[arg-type]
    probes = min(probes, len(pool) // 10 - 1)
    own, background = pool[: 10 * probes], pool[10 * probes :]
    before = _rss()
    started = time.perf_counter()
    faces, fingers = FaceGallery(), FingerGallery()
    people = {}
    for pid in range(persons):
        if pid < probes:
            chosen = own[10 * pid : 10 * pid + 10]
        else:
            chosen = [background[i] for i in rng.choice(len(background), 10, replace=False)]
        prints = [dataclasses.replace(t, position=pos) for pos, t in enumerate(chosen, 1)]
        face_t = rng.normal(size=(1, 128)).astype(np.float32)
        faces.add(pid, face_t)
        if pid < probes:
            fingers.add(pid, prints)
            people[pid] = (face_t, prints)
        else:
            fingers.add(pid, prints, rng.integers(0, 256, (10, fp.CODE_BITS // 8), np.uint8))
        if pid and pid % 100_000 == 0:
            print(f"  {pid:,} persons in {time.perf_counter() - started:.0f} s", flush=True)
    build = time.perf_counter() - started
    per_person = (_rss() - before) / persons
    print(
        f"\n{persons:,} persons (10 fingers + 1 face each) built in {build:.0f} s; "
        f"memory {per_person / 1024:.1f} KiB per person (RSS growth)"
    )

    threads = len(os.sched_getaffinity(0))
    comparers = ThreadPoolExecutor(threads)  # as the registry compares (dedup_compare_threads)
    print(f"full comparisons on {threads} threads")

    def batch(ids: list[int]) -> tuple[float, float, list[int]]:
        """Decide a batch as the registry does: one search of both galleries for all of
        it, then each enrolment's candidates compared in full; (search s, full s, sizes)."""
        wanted = [(people[i][0], [_moved(t, rng) for t in people[i][1]]) for i in ids]
        t0 = time.perf_counter()
        face_hits = faces.search_many([f for f, _ in wanted], 10)
        finger_hits = fingers.search_many([p for _, p in wanted], 10)
        t1 = time.perf_counter()
        sizes = []
        for pid, (face_t, probe), fh, gh in zip(ids, wanted, face_hits, finger_hits, strict=True):
            cands = {h.person_id for h in fh} | {h.person_id for h in gh}
            matchers = {t.position: fp.FingerprintMatcher(t) for t in probe}
            persons = [(c, fingers.templates(c), faces.templates(c)) for c in sorted(cands)]
            best = max(
                comparers.map(
                    lambda p: fusion.compare(p[0], matchers, face_t, p[1], p[2]),  # noqa: B023
                    persons,
                ),
                key=lambda c: c.llr,
            )
            assert best.person_id == pid, "the mate was not found"
            sizes.append(len(cands))
        return t1 - t0, time.perf_counter() - t1, sizes

    pre, full, sizes = [], [], []
    for pid in range(probes):
        p, f, n = batch([pid])
        pre.append(p)
        full.append(f)
        sizes += n
    p, f = float(np.median(pre)), float(np.median(full))
    print(
        f"decide one enrolment: {(p + f) * 1e3:.0f} ms median = pre-selection {p * 1e3:.0f} ms "
        f"(faces exact + finger codes, linear in N) + full comparisons of "
        f"{np.median(sizes):.0f} candidates {f * 1e3:.0f} ms (independent of N); "
        f"the mate ranked first in {probes}/{probes}"
    )
    print("| batch | search per enrolment | full comparisons per enrolment | enrolments/s |")
    print("|---|---|---|---|")
    rates = {}
    for size in (1, 16, 64):
        ids = [i % probes for i in range(max(size, 16))]  # probes repeat past their number
        p = f = 0.0
        for at in range(0, len(ids), size):
            dp, df, _ = batch(ids[at : at + size])
            p, f = p + dp, f + df
        rates[size] = len(ids) / (p + f)
        print(
            f"| {size} | {p / len(ids) * 1e3:.0f} ms | {f / len(ids) * 1e3:.0f} ms | "
            f"{rates[size]:.2f} ({rates[size] / rates[1]:.2f}x batch 1) |"
        )


SEED = 14  # the accuracy population's seed: person p is the same in every run


def _person(pid: int) -> tuple[list, np.ndarray]:
    """Person ``pid`` of the population: ten synthetic fingers (positions 1-10) and a face."""
    import population as pop  # bench/, beside this script

    rng = np.random.default_rng([SEED, pid])
    return [pop.finger(rng) for _ in range(10)], pop.face(rng)


def _visit(pid: int, visit: int) -> tuple[list[fp.FingerprintTemplate], np.ndarray]:
    """What one visit of person ``pid`` captures (visit 0: the enrolment): the finger
    templates (a finger the extractor would refuse is missing, as the registry treats it) and
    a face template, each visit its own captures."""
    import population as pop

    fingers, person = _person(pid)
    rng = np.random.default_rng([SEED, pid, visit])
    prints = []
    for position, f in enumerate(fingers, 1):
        with contextlib.suppress(fp.FingerprintError):
            prints.append(pop.impression(f, rng, position))
    return prints, pop.face_capture(person, rng)


def _enrolments(pids: range) -> list[tuple[int, dict[int, bytes], np.ndarray, np.ndarray]]:
    """Enrolment visits of ``pids``: (person, ISO records by position, index codes, face),
    made in a pool's process."""
    out = []
    for pid in pids:
        prints, face_t = _visit(pid, 0)
        codes = np.stack([fp.index_code(t) for t in prints]) if prints else None
        out.append((pid, {t.position: t.to_iso19794_2() for t in prints}, codes, face_t))
    return out


def _upper(errors: int, n: int) -> float:
    """One-sided 95 % upper bound of a rate seen ``errors`` times in ``n`` (Clopper-Pearson)."""
    from scipy.stats import beta

    return 1.0 if errors >= n else float(beta.ppf(0.95, errors + 1, n - errors))


def accuracy(persons: int = 10_000, searches: int = 1_000) -> None:
    """FPIR and FNIR of the decision the registry ships (its galleries' pre-selection, full
    comparisons, fusion and thresholds at the default target FPIR) with ``persons`` enrolled,
    ``searches`` mated searches (a second visit of an enrolled person: new captures of all ten
    fingers and the face) and as many non-mated ones (persons never enrolled); fused, fingers
    alone and face alone. Fingers: the template-level population (bench/population.py), faces:
    the model of the shared photos' statistics; both synthetic, validated by ``population``."""
    from concurrent.futures import ThreadPoolExecutor

    from biometrics.gallery import FaceGallery, FingerGallery
    from central_api.config import Settings
    from central_api.dedup import fusion

    fields = Settings.model_fields
    target = float(fields["dedup_target_fpir"].default)
    adjudication = float(fields["dedup_adjudication_fpir"].default)
    k = int(fields["dedup_candidates"].default)
    thresholds = fusion.Thresholds(persons, target, adjudication)
    face_duplicate = face.threshold_for_fmr(max(target / persons, 1e-9))
    face_adjudication = face.threshold_for_fmr(max(adjudication / persons, 1e-9))
    started = time.perf_counter()
    faces, fingers = FaceGallery(), FingerGallery()
    chunks = [range(a, min(a + 200, persons)) for a in range(0, persons, 200)]
    cores = len(os.sched_getaffinity(0))
    with multiprocessing.get_context("fork").Pool(cores) as pool:
        for done in pool.imap(_enrolments, chunks):
            for pid, records, codes, face_t in done:
                prints = [
                    dataclasses.replace(fp.FingerprintTemplate.from_iso19794_2(r), position=i)
                    for i, r in records.items()
                ]
                fingers.add(pid, prints, codes)
                faces.add(pid, face_t[None])
            if (done[-1][0] + 1) % max(persons // 10 // 200 * 200, 200) == 0:
                print(f"  {done[-1][0] + 1:,} enrolled, {time.perf_counter() - started:.0f} s")
    print(
        f"\n{persons:,} persons enrolled in {time.perf_counter() - started:.0f} s "
        f"(template-level fingers, modelled faces); thresholds: duplicate at fused LLR "
        f">= {thresholds.duplicate:.2f}, adjudication at >= {thresholds.adjudication:.2f} "
        f"(target FPIR {target:g}, adjudication {adjudication:g}); {k} candidates a gallery; "
        f"face alone: cosine >= {face_duplicate:.3f} / {face_adjudication:.3f} (FMR = "
        "rate / N under face.py's impostor model)"
    )
    comparers = ThreadPoolExecutor(cores)
    modes = ("fused (10 fingers + face)", "fingers alone (10)", "face alone (cosine)")
    tally = {
        (m, mated): dict.fromkeys(("mate", "other", "adjudication", "unique"), 0)
        for m in modes
        for mated in (True, False)
    }
    found = dict.fromkeys(("face gallery", "finger gallery", "either"), 0)
    ranks: list[int] = []  # the mate's rank in the finger gallery's search
    times = []
    jobs = [(pid, True) for pid in range(searches)]
    jobs += [(persons + j, False) for j in range(searches)]
    for pid, mated in jobs:
        prints, face_t = _visit(pid, 1)
        t0 = time.perf_counter()
        # the finger gallery searched deeper than the decision's k (the same scores, ranked
        # further) for the mates' ranks: ten fingers' hit rate against penetration
        ranked = [h.person_id for h in fingers.search(prints, max(k, persons // 100))]
        face_hits = {h.person_id for h in faces.search(face_t[None], k)}
        finger_hits = set(ranked[:k])
        matchers = {t.position: fp.FingerprintMatcher(t) for t in prints}
        probe_face = face_t[None]
        compared = list(
            comparers.map(
                lambda c, m=matchers, f=probe_face: fusion.compare(
                    c, m, f, fingers.templates(c), faces.templates(c)
                ),
                sorted(face_hits | finger_hits),
            )
        )
        times.append(time.perf_counter() - t0)
        if len(times) % 250 == 0:
            print(f"  {len(times):,} searches, {time.perf_counter() - started:.0f} s", flush=True)
        if mated:
            found["face gallery"] += pid in face_hits
            found["finger gallery"] += pid in finger_hits
            found["either"] += pid in face_hits | finger_hits
            ranks.append(ranked.index(pid) + 1 if pid in ranked else len(ranked) + 1)
        for mode in modes:
            if mode == modes[0]:
                pool_of = compared
            elif mode == modes[1]:
                pool_of = [
                    fusion.Comparison(c.person_id, c.llr - c.face_llr, c.fingers)
                    for c in compared
                    if c.person_id in finger_hits
                ]
            else:  # the face's own cosine threshold at FMR = target / N (its LLR's range,
                # clamped to what 12 people's photos show, never reaches the fused thresholds)
                pool_of = [
                    fusion.Comparison(
                        c.person_id, -1.0 if c.face_score is None else c.face_score, ()
                    )
                    for c in compared
                    if c.person_id in face_hits
                ]
            best = max(pool_of, key=lambda c: (c.llr, -c.person_id), default=None)
            dup, adj = (
                (thresholds.duplicate, thresholds.adjudication)
                if mode != modes[2]
                else (face_duplicate, face_adjudication)
            )
            if best is None or best.llr < adj:
                result = "unique"
            elif best.llr < dup:
                result = "adjudication"
            else:
                result = "mate" if best.person_id == pid else "other"
            tally[(mode, mated)][result] += 1
    n = searches
    print(
        f"{2 * n:,} searches, {float(np.median(times)) * 1e3:.0f} ms median each (search + "
        f"full comparisons); mate pre-selected: "
        + ", ".join(f"{name} {v / n:.1%}" for name, v in found.items())
    )
    depths = sorted({1, k, max(k, persons // 1000), max(k, persons // 100)})
    print(
        "ten fingers combined, the finger gallery alone (mated searches): the mate among the "
        + ", ".join(
            f"first {d} ({d / persons:.2%} penetration) {np.mean(np.array(ranks) <= d):.1%}"
            for d in depths
        )
    )
    print(
        "| mode | FPIR: non-mated decided duplicate (95 % bound) | non-mated adjudicated "
        "| FNIR: mated not decided duplicate of the mate (95 % bound) | of which adjudicated "
        "| of which unique (a second IDCS) |"
    )
    print("|---|---|---|---|---|---|")
    for mode in modes:
        non, mat = tally[(mode, False)], tally[(mode, True)]
        fp_n = non["mate"] + non["other"]
        fn_n = n - mat["mate"]
        print(
            f"| {mode} | {fp_n / n:.2%} (<= {_upper(fp_n, n):.2%}) | "
            f"{non['adjudication'] / n:.2%} | {fn_n / n:.2%} (<= {_upper(fn_n, n):.2%}) | "
            f"{mat['adjudication'] / n:.2%} | {mat['unique'] / n:.2%} |"
        )


if __name__ == "__main__":
    commands = {
        "calibrate": calibrate,
        "fused": fused,
        "speed": speed,
        "index": index,
        "fit-index": fit_index,
        "population": population,
        "accuracy": accuracy,
    }
    if sys.argv[1:2] and sys.argv[1] in commands:
        commands[sys.argv[1]](*(int(a) for a in sys.argv[2:]))  # type: ignore[operator]
    else:
        print(__doc__)
        sys.exit(2)
