"""Fingerprint benchmark: FVC-style accuracy on synthetic fingers, speed, 1:N search.

- N fingers x 8 impressions (SFinGe-style, biometrics.synthetic): all genuine pairs
  (N x 28) and FVC impostor pairs (first impression of every finger against every other),
  score distributions, EER, FMR100, FMR1000, FNMR at FMR 1e-4 (raw LSS-R scores and bits).
- Extraction time per image, matches per second (one core), cylinder-building time.
- 1:N accuracy on a gallery of image-based fingers (the mates' first impressions plus other
  generated fingers, extracted like any capture and cached under bench/.cache): rank-1 of an
  exhaustive search, and the pre-selection's hit rate against its penetration rate (share of
  the gallery kept for full matching), the FVC-onGoing indexing measure.
- 1:N speed at the gallery size asked for (default 100k), with and without pre-selection; past
  the image-based fingers the gallery repeats their prepared templates (speed only: generating
  100k image-based fingers takes hours on this machine).
- Quality falls as images are degraded (noise, blur, partial).
- `fvc`: the four FVC2004 "B" sets side by side with NIST mindtct + bozorth3 (and the SDK
  records shipped with them), then the generator's own prints, hard cases included, as one more
  set of the same table (its score distributions beside the real sets').
Synthetic accuracy is a check of the generator, never the claim: the real sets are.
Run: .venv/bin/python bench/bench_fingerprint.py [fingers] [image_distractors] [gallery_size]
     .venv/bin/python bench/bench_fingerprint.py fvc [DB1_B ... synthetic]
"""

from __future__ import annotations

import hashlib
import math
import multiprocessing
import os
import sys
import time
from pathlib import Path

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


CACHE = Path(__file__).parent / ".cache"


def _distractor(seed: int) -> bytes:
    """ISO 19794-2 record of one generated finger that is nobody's mate (b"" if it fails)."""
    img = synthetic.fingerprint_impression(synthetic.master_fingerprint(seed), 0)
    try:
        return fp.extract(img).to_iso19794_2()
    except fp.FingerprintError:
        return b""


def image_distractors(count: int) -> list[fp.FingerprintTemplate]:
    """``count`` image-based distractor templates, generated on all cores and cached on disk
    (keyed by the generator's and the extractor's source, so a change regenerates them)."""
    src = b"".join(Path(m.__file__).read_bytes() for m in (synthetic, fp))  # type: ignore[arg-type]
    folder = CACHE / f"fp-distractors-{hashlib.sha256(src).hexdigest()[:12]}"
    folder.mkdir(parents=True, exist_ok=True)
    seeds = [5_000_000 + d for d in range(count)]
    todo = [s for s in seeds if not (folder / f"{s}.iso").exists()]
    if todo:
        t = time.perf_counter()
        ctx = multiprocessing.get_context("spawn")
        with ctx.Pool(os.cpu_count() or 1) as pool:
            for seed, record in zip(todo, pool.imap(_distractor, todo, chunksize=8), strict=True):
                tmp = folder / f"{seed}.tmp"
                tmp.write_bytes(record)
                tmp.replace(folder / f"{seed}.iso")
        print(f"generated {len(todo)} image-based distractors in {time.perf_counter() - t:.0f} s")
    records = [(folder / f"{s}.iso").read_bytes() for s in seeds]
    return [fp.FingerprintTemplate.from_iso19794_2(r) for r in records if r]


def one_to_n(
    templates: dict[tuple[int, int], fp.FingerprintTemplate],
    fingers: int,
    n_image: int,
    gallery_size: int,
) -> None:
    """1:N accuracy on image-based fingers and speed at ``gallery_size``."""
    distractors = image_distractors(n_image)
    gallery = fp.FingerprintGallery()
    mates = [f for f in range(fingers) if (f, 0) in templates and (f, 3) in templates]
    for f in mates:
        gallery.add(("finger", f), templates[(f, 0)])
    for d, t in enumerate(distractors):
        gallery.add(("distractor", d), t)
    size = len(gallery)
    position = {key: i for i, key in enumerate(gallery.ids)}
    ranks = []
    for f in mates:
        scores = gallery.preselection_scores(templates[(f, 3)])
        ranks.append(int(np.sum(scores > scores[position[("finger", f)]])))
    ranks_a = np.asarray(ranks)
    print(
        f"1:N accuracy on {size} image-based fingers ({len(mates)} mates + "
        f"{len(distractors)} other fingers), probes = 4th impressions:"
    )
    print(
        "  pre-selection hit rate (mate kept) at penetration "
        + ", ".join(
            f"{p:.0%}: {(ranks_a < max(1, round(p * size))).mean():.1%}"
            for p in (0.01, 0.02, 0.05, 0.1, 0.2)
        )
        + f"; mean mate rank {ranks_a.mean():.1f} of {size}"
    )
    probes = mates[:50]
    for pre in (None, max(1, size // 20)):
        hits, t = 0, time.perf_counter()
        for f in probes:
            top = gallery.search(templates[(f, 3)], top_k=1, preselect=pre)
            hits += top[0][0] == ("finger", f)
        per = (time.perf_counter() - t) / len(probes)
        label = "exhaustive" if pre is None else f"pre-selecting {pre} (5 %)"
        print(
            f"  {label}: rank-1 {hits}/{len(probes)} = {hits / len(probes):.1%}, "
            f"{per * 1e3:.0f} ms per search"
        )

    # speed at gallery_size: repeat the prepared templates of the image-based fingers
    prepared = list(gallery._templates)
    while len(gallery) < gallery_size:  # the same (frozen, prepared) templates under new keys
        gallery.add(("repeat", len(gallery)), prepared[len(gallery) % len(prepared)])
    probe = templates[(mates[0], 3)]
    t = time.perf_counter()
    gallery.search(probe, top_k=10, preselect=None)
    exhaustive = time.perf_counter() - t
    gallery.preselection_scores(probe)  # stack once
    for pre in (100, 1000, max(gallery_size // 20, 1)):
        t = time.perf_counter()
        for f in probes[:10]:
            gallery.search(templates[(f, 3)], top_k=10, preselect=pre)
        per = (time.perf_counter() - t) / 10
        print(
            f"1:N speed over {len(gallery)}: exhaustive {exhaustive:.1f} s per search; "
            f"pre-selecting {pre}: {per * 1e3:.0f} ms per search ({exhaustive / per:.0f}x faster)"
        )


def main(fingers: int = 200, image_distractors: int = 2000, gallery_size: int = 100_000) -> None:
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
    gen, imp = [], []
    t = time.perf_counter()
    for f in range(fingers):
        for i in range(8):
            for j in range(i + 1, 8):
                if (f, i) in matchers and (f, j) in templates:
                    gen.append(matchers[(f, i)].match_raw(templates[(f, j)]))
    for f in range(fingers):
        for g in range(f + 1, fingers):
            if (f, 0) in matchers and (g, 0) in templates:
                imp.append(matchers[(f, 0)].match_raw(templates[(g, 0)]))
    n = len(gen) + len(imp)
    dt = time.perf_counter() - t
    print(
        f"cylinders: {cyl_ms:.1f} ms/template; matching: {n} comparisons in {dt:.1f} s = "
        f"{n / dt:.0f} matches/s on one core ({dt / n * 1e3:.2f} ms each)"
    )
    g, i_ = np.asarray(gen), np.asarray(imp)
    print(
        f"genuine pairs {len(g)}: median {np.median(g):.3f}, p5 {np.percentile(g, 5):.3f}; "
        f"impostor pairs {len(i_)}: median {np.median(i_):.4f}, p99 {np.percentile(i_, 99):.4f}"
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

    one_to_n(templates, fingers, image_distractors, gallery_size)

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


# --------------------------------------------------------------- real prints: FVC2004
FVC = Path(
    os.environ.get("RNP_FVC_DIR", Path(__file__).parents[2] / "shared/data/fingerprints/fvc2004")
)
FVC_DPI = {"DB1_B": 500, "DB2_B": 500, "DB3_B": 512, "DB4_B": 500}
SYNTHETIC = "synthetic"  # the simulated reader's prints, as one more set of the same table
SYNTHETIC_FINGERS = 20  # x 8 impressions: twice an FVC B set, for steadier figures


def synthetic_set(fingers: int = SYNTHETIC_FINGERS) -> Path:
    """An FVC-style set (``F_I.png``) of the generator's prints, with its hard cases in the
    proportions the simulated reader serves, written once under bench/.cache (keyed by the
    generator's source)."""
    src = Path(synthetic.__file__).read_bytes()  # type: ignore[arg-type]
    folder = CACHE / f"fp-synthetic-{fingers}-{hashlib.sha256(src).hexdigest()[:12]}"
    if not (folder / f"{fingers}_8.png").exists():
        folder.mkdir(parents=True, exist_ok=True)
        for f in range(fingers):
            master = synthetic.master_fingerprint(10_000 + f)
            for i in range(8):
                cv2.imwrite(
                    str(folder / f"{f + 1}_{i + 1}.png"),
                    synthetic.fingerprint_impression(master, i),
                )
    return folder


def fvc_pairs(keys: list[tuple[int, int]]) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """FVC protocol over images keyed (finger, impression): genuine = every pair of
    impressions of one finger; impostor = every pair of images of two different fingers
    (all of them, so that FMR1000 has enough pairs). Index pairs into ``keys``."""
    gen, imp = [], []
    for a in range(len(keys)):
        for b in range(a + 1, len(keys)):
            (gen if keys[a][0] == keys[b][0] else imp).append((a, b))
    return gen, imp


def fvc_rates(gen: np.ndarray, imp: np.ndarray, gen_ok: np.ndarray, imp_ok: np.ndarray) -> dict:
    """EER, FMR100, FMR1000 with failures to extract counted as non-matches (both kinds of
    pair), and EER* over the pairs where both sides were extracted (FVC's two figures)."""
    out = rates(np.where(gen_ok, gen, -np.inf), np.where(imp_ok, imp, -np.inf))
    out["EER*"] = rates(gen[gen_ok], imp[imp_ok])["EER"] if gen_ok.any() else float("nan")
    return out


def fvc_size(shape: tuple[int, ...], dpi: int) -> tuple[int, int]:
    """(width, height) of an FVC image once at 500 dpi, as the project extracts it."""
    return round(shape[1] * fp.DPI / dpi), round(shape[0] * fp.DPI / dpi)


def sdk_record(record: bytes, width: int, height: int) -> fp.FingerprintTemplate:
    """A commercial SDK's ISO record shipped with the FVC2004 images, put back into the
    image's geometry: the SDK resized every image to 300 x 400 (not keeping its aspect, and
    still writing 500 dpi), which no matcher can undo from the record alone."""
    t = fp.FingerprintTemplate.from_iso19794_2(record)
    sx, sy = width / t.width, height / t.height
    back = tuple(
        fp.Minutia(
            min(round(m.x * sx), width - 1),
            min(round(m.y * sy), height - 1),
            math.atan2(math.sin(m.angle) * sy, math.cos(m.angle) * sx) % (2 * math.pi),
            m.kind,
            m.quality,
        )
        for m in t.minutiae
    )
    return fp.FingerprintTemplate(width, height, back, fp.DPI, t.quality, t.position)


class _Peer:
    """NIST mindtct + bozorth3 (nbis-py 0.1.3, installed with the project), the open reference."""

    def __init__(self, dpi: int) -> None:
        import nbis

        self.nbis = nbis
        self.extractor = nbis.new_nbis_extractor(
            nbis.NbisExtractorSettings(
                min_quality=0.0,
                get_center=False,
                check_fingerprint=False,
                compute_nfiq2=False,
                ppi=float(dpi),
            )
        )

    def extract(self, png: bytes) -> object | None:
        try:
            m = self.extractor.extract_minutiae(png)
        except self.nbis.NbisError:
            return None
        return m if len(m.get()) >= 1 else None

    @staticmethod
    def compare(a: object, b: object) -> float:
        return float(a.compare(b))  # type: ignore[attr-defined]

    def template(
        self, minutiae: object | None, shape: tuple[int, ...], dpi: int
    ) -> fp.FingerprintMatcher | None:
        """mindtct's minutiae as this project's template (its angles are ISO's)."""
        if minutiae is None:
            return None
        kinds = {self.nbis.MinutiaKind.RIDGE_ENDING: "ending"}
        ms = tuple(
            fp.Minutia(
                int(m.x()),
                int(m.y()),
                math.radians(m.angle()),
                kinds.get(m.kind(), "bifurcation"),  # type: ignore[arg-type]
                max(1, min(100, round(m.reliability() * 100))),
            )
            for m in minutiae.get()  # type: ignore[attr-defined]
        )
        return fp.FingerprintMatcher(fp.FingerprintTemplate(shape[1], shape[0], ms, dpi))


def fvc(sets: list[str] | None = None) -> None:
    """Project vs NIST mindtct + bozorth3 on each FVC2004 "B" set, side by side."""
    try:
        import nbis  # noqa: F401
    except ImportError:
        print("FVC2004: the peer (nbis-py) is missing: run `make venv`")
        return
    print(f"FVC2004 B sets from {FVC}; FVC protocol, failures to extract count as non-matches")
    header = (
        f"{'set':6s} {'extractor':22s} {'EER':>7s} {'EER*':>7s} {'FMR100':>7s} {'FMR1000':>8s} "
        f"{'FTE':>6s} {'extract ms':>10s} {'matches/s':>9s}"
    )
    print(header)
    for name in sets or [*FVC_DPI, SYNTHETIC]:
        folder = synthetic_set() if name == SYNTHETIC else FVC / name
        files = sorted(folder.glob("*.png"))
        keys = [tuple(int(x) for x in f.stem.split("_")) for f in files]
        dpi = FVC_DPI.get(name, fp.DPI)
        gen, imp = fvc_pairs(keys)  # type: ignore[arg-type]
        peer = _Peer(dpi)
        rows = {}
        peer_made: list[object | None] = []
        peer_times: list[float] = []
        ours: list[object | None] = []
        labels = (
            "project",
            "mindtct+bozorth3",
            "mindtct+project matcher",
            "project vs SDK",
            "SDK+project matcher",
        )
        if name == SYNTHETIC:  # no SDK records of these
            labels = labels[:3]
        for label in labels:
            made: list[object | None] = []
            times = []
            for k, f in enumerate(files):
                t = time.perf_counter()
                if label == "project":
                    image = cv2.imread(str(f), cv2.IMREAD_GRAYSCALE)
                    try:
                        made.append(fp.FingerprintMatcher(fp.extract(image, dpi=dpi)))
                    except fp.FingerprintError:
                        made.append(None)
                    ours.append(made[-1])
                elif label in ("project vs SDK", "SDK+project matcher"):  # the SDK's records
                    record = f.with_suffix(".iso").read_bytes()
                    made.append(sdk_record(record, *fvc_size(cv2.imread(str(f), 0).shape, dpi)))
                elif label == "mindtct+bozorth3":
                    made.append(peer.extract(f.read_bytes()))
                    peer_made.append(made[-1])
                else:  # the extractor's share of the gap: mindtct's minutiae, this matcher
                    shape = cv2.imread(str(f), cv2.IMREAD_GRAYSCALE).shape
                    made.append(peer.template(peer_made[k], shape, dpi))
                times.append(time.perf_counter() - t)
            if label == "mindtct+bozorth3":
                peer_times = times
            elif label == "mindtct+project matcher":  # mindtct's own time counts here too
                times = [a + b for a, b in zip(times, peer_times, strict=True)]
            ok = np.array([m is not None for m in made])
            if label == "project vs SDK":  # both sides: the project's template and the record
                ok &= np.array([m is not None for m in ours])

            def score(
                a: int,
                b: int,
                made: list[object | None] = made,
                label: str = label,
                ours: list[object | None] = ours,
            ) -> float:
                x, y = made[a], made[b]
                if x is None or y is None:
                    return -np.inf
                if label == "mindtct+bozorth3":
                    return _Peer.compare(x, y)
                if label == "project vs SDK":  # the project's template of a, the SDK's of b
                    mine = ours[a]
                    return -np.inf if mine is None else mine.match_raw(y)  # type: ignore[attr-defined]
                if label == "SDK+project matcher":  # the SDK's records of both
                    return fp.FingerprintMatcher(x).match_raw(y)  # type: ignore[arg-type]
                return x.match_raw(y.probe)  # type: ignore[attr-defined]

            t = time.perf_counter()
            g = np.array([score(a, b) for a, b in gen])
            i = np.array([score(a, b) for a, b in imp])
            per_s = (len(gen) + len(imp)) / (time.perf_counter() - t)
            g_ok = np.array([ok[a] and ok[b] for a, b in gen])
            i_ok = np.array([ok[a] and ok[b] for a, b in imp])
            r = fvc_rates(g, i, g_ok, i_ok)
            r["ms"] = float(np.median(times) * 1e3)
            if label == "project":  # beside the synthetic prints' (main()), same figures
                gs, js = g[g_ok], i[i_ok]
                dist = (
                    f"genuine median {np.median(gs):.3f}, p5 {np.percentile(gs, 5):.3f}; "
                    f"impostor median {np.median(js):.4f}, p99 {np.percentile(js, 99):.4f}"
                )
            rows[label] = r
            print(
                f"{name:6s} {label:22s} {r['EER']:7.2%} {r['EER*']:7.2%} {r['FMR100']:7.2%} "
                f"{r['FMR1000']:8.2%} {1 - ok.mean():6.1%} {np.median(times) * 1e3:10.0f} "
                f"{per_s:9.0f}",
                flush=True,
            )
        print(f"{name:6s} project raw scores: {dist}")
        base = max(rows["mindtct+bozorth3"]["EER"], 1e-9)
        line = (
            f"{name:6s} EER against mindtct+bozorth3: project "
            f"{rows['project']['EER'] / base:.2f}x, mindtct+project matcher "
            f"{rows['mindtct+project matcher']['EER'] / base:.2f}x; extraction time: project "
            f"{rows['project']['ms'] / rows['mindtct+bozorth3']['ms']:.1f}x mindtct's"
        )
        if "project vs SDK" in rows:
            cross = rows["project vs SDK"]["EER"]
            line += (
                f"; cross-vendor EER {cross / max(rows['project']['EER'], 1e-9):.2f}x "
                f"project-vs-project, "
                f"{cross / max(rows['SDK+project matcher']['EER'], 1e-9):.2f}x SDK-vs-SDK"
            )
        print(line, flush=True)


if __name__ == "__main__":
    if sys.argv[1:2] == ["fvc"]:
        fvc(sys.argv[2:] or None)
    else:
        fvc()
        main(*(int(a) for a in sys.argv[1:4]))
