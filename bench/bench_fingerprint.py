"""Fingerprint benchmark: FVC-style accuracy on synthetic fingers, speed, 1:N search.

- N fingers x 8 impressions (SFinGe-style, biometrics.synthetic): all genuine pairs
  (N x 28) and FVC impostor pairs (first impression of every finger against every other),
  score distributions, EER, FMR100, FMR1000, FNMR at FMR 1e-4 (raw LSS-R scores and bits).
- Extraction time per image, matches per second (one core), cylinder-building time.
- 1:N: a gallery of the first impressions plus template-level distractors, searched with
  and without descriptor pre-selection: hit rate of the mate and speed-up.
- Quality falls as images are degraded (noise, blur, partial).
Synthetic accuracy is an upper bound on real accuracy.
Run: .venv/bin/python bench/bench_fingerprint.py [fingers] [distractors]
"""

from __future__ import annotations

import math
import sys
import time

import cv2
import numpy as np

from biometrics import fingerprint as fp
from biometrics import synthetic


def rates(gen: np.ndarray, imp: np.ndarray) -> dict[str, float]:
    thresholds = np.unique(np.concatenate([gen, imp]))
    fmr = np.array([(imp >= t).mean() for t in thresholds])
    fnmr = np.array([(gen < t).mean() for t in thresholds])
    i = int(np.argmin(np.abs(fmr - fnmr)))
    out = {"EER": float((fmr[i] + fnmr[i]) / 2)}
    for name, target in (("FMR100", 1e-2), ("FMR1000", 1e-3), ("FNMR@FMR1e-4", 1e-4)):
        ok = fmr <= target
        out[name] = float(fnmr[ok].min()) if ok.any() else float("nan")
    return out


def main(fingers: int = 200, distractors: int = 5000) -> None:
    t0 = time.perf_counter()
    templates: dict[tuple[int, int], fp.FingerprintTemplate] = {}
    ext_times = []
    failures = 0
    for f in range(fingers):
        master = synthetic.master_fingerprint(10_000 + f)
        for i in range(8):
            img = synthetic.fingerprint_impression(master, i)
            t = time.perf_counter()
            try:
                templates[(f, i)] = fp.extract(img)
            except fp.FingerprintError:
                failures += 1
            ext_times.append(time.perf_counter() - t)
    print(
        f"{fingers} fingers x 8 impressions generated and extracted in "
        f"{time.perf_counter() - t0:.0f} s; extraction median "
        f"{np.median(ext_times) * 1e3:.0f} ms/image; {failures} failed to extract"
    )

    t = time.perf_counter()
    matchers = {k: fp.FingerprintMatcher(v) for k, v in templates.items()}
    cyl_ms = (time.perf_counter() - t) / len(matchers) * 1e3
    cyls = {k: m._cyl for k, m in matchers.items()}
    gen, imp = [], []
    t = time.perf_counter()
    for f in range(fingers):
        for i in range(8):
            for j in range(i + 1, 8):
                if (f, i) in matchers and (f, j) in cyls:
                    gen.append(matchers[(f, i)].match_raw(cyls[(f, j)]))
    for f in range(fingers):
        for g in range(f + 1, fingers):
            if (f, 0) in matchers and (g, 0) in cyls:
                imp.append(matchers[(f, 0)].match_raw(cyls[(g, 0)]))
    n = len(gen) + len(imp)
    dt = time.perf_counter() - t
    print(
        f"cylinders: {cyl_ms:.1f} ms/template; matching: {n} comparisons in {dt:.1f} s = "
        f"{n / dt:.0f} matches/s on one core ({dt / n * 1e3:.2f} ms each)"
    )
    g, i_ = np.asarray(gen), np.asarray(imp)
    print(
        f"genuine pairs {len(g)}: median {np.median(g):.3f}, p1 {np.percentile(g, 1):.3f}; "
        f"impostor pairs {len(i_)}: median {np.median(i_):.4f}, max {i_.max():.4f}"
    )
    r = rates(g, i_)
    print("raw LSS-R: " + ", ".join(f"{k} {v:.4%}" for k, v in r.items()))
    # calibration knots: score at which the empirical FMR is 2**-bits
    srt = np.sort(i_)[::-1]
    for bits in (1, 3, 5, 7, 9, 11, 13):
        k = int(len(srt) * 2.0**-bits)
        if k >= 1:
            print(f"  FMR 2^-{bits:<2d} (= {2.0**-bits:.5f}) at raw score {srt[k - 1]:.4f}")
    for b in (7, 10, 13.3):
        raw = next((s for s in np.linspace(0, 1, 2001) if fp.score_to_bits(s) >= b), 1.0)
        print(
            f"  threshold {b} bits (raw {raw:.3f}): FMR {(i_ >= raw).mean():.5f}, "
            f"FNMR {(g < raw).mean():.4f}"
        )

    # 1:N search
    gallery = fp.FingerprintGallery()
    rng = np.random.default_rng(7)
    t = time.perf_counter()
    for f in range(fingers):
        if (f, 0) in templates:
            gallery.add(("finger", f), templates[(f, 0)])
    base = [templates[(f, 0)] for f in range(fingers) if (f, 0) in templates]
    for d in range(distractors):  # other fingers: a real layout, re-shuffled minutiae
        src = base[d % len(base)]
        ang = rng.uniform(0, 2 * math.pi, len(src.minutiae))
        mins = tuple(
            fp.Minutia(
                int(rng.integers(20, src.width - 20)),
                int(rng.integers(20, src.height - 20)),
                float(a),
                m.kind,
                m.quality,
            )
            for m, a in zip(src.minutiae, ang, strict=True)
        )
        gallery.add(("distractor", d), fp.FingerprintTemplate(src.width, src.height, mins))
    build = time.perf_counter() - t
    probes = [(f, templates[(f, 3)]) for f in range(min(fingers, 50)) if (f, 3) in templates]
    for pre in (None, 100):
        hits, t = 0, time.perf_counter()
        run = probes[:10] if pre is None else probes  # exhaustive search is slow: 10 probes
        for f, probe in run:
            top = gallery.search(probe, top_k=1, preselect=pre)
            hits += top[0][0] == ("finger", f)
        per = (time.perf_counter() - t) / len(run)
        label = "exhaustive" if pre is None else f"pre-selecting {pre}"
        print(
            f"1:N over {len(gallery)} fingers, {label}: rank-1 hit rate "
            f"{hits / len(probes):.1%}, {per * 1e3:.0f} ms per search"
            f" (-> {per * 100_000 / len(gallery):.1f} s at 100k if linear)"
        )
    hit_pre = 0
    for f, probe in probes:
        scores = gallery.preselection_scores(fp.FingerprintMatcher(probe)._cyl.descriptor)
        hit_pre += int(np.sum(scores > scores[f]) < 100)
    print(
        f"pre-selection keeps the mate in its top 100 for {hit_pre}/{len(probes)} probes; "
        f"gallery build {build:.0f} s"
    )

    # quality falls as the image degrades
    img = synthetic.fingerprint_impression(synthetic.master_fingerprint(10_000), 0)
    rows = [("clean", img)]
    for s in (10, 25, 45):
        noisy = np.clip(img + np.random.default_rng(s).normal(0, s, img.shape), 0, 255)
        rows.append((f"noise sd {s}", noisy.astype(np.uint8)))
    for s in (1.5, 3.0):
        rows.append((f"blur sd {s}", cv2.GaussianBlur(img, (0, 0), s)))
    for keep in (0.6, 0.3):
        part = img.copy()
        part[int(img.shape[0] * keep) :] = 235
        rows.append((f"partial {keep:.0%}", part))
    print("quality: " + ", ".join(f"{name} {fp.quality(im)}" for name, im in rows))


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
