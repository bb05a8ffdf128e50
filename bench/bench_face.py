"""Benchmark of the face pipeline on this machine, and its accuracy on the shared photos.

1. Per 640x480 frame: detect, assess, encode, and the whole auto-capture decision
   (assess + feedback), over frames of a simulated camera session; frames/s against the
   kiosk's target of 5 frames/s of feedback.
2. All genuine and impostor pairs of ../shared/data/faces (templates without the quality
   gate: these are press photos, not kiosk captures), their score distributions, the normal
   fit used by threshold_for_fmr, and error rates at the registry's thresholds.
   A tiny set (a few hundred genuine pairs, a few thousand impostor pairs): the rates say
   the pipeline works, not how accurate it is.
3. The registry's face check (capture policy): each photo's template (as the kiosk computes it
   on the frame) against the registry's own encoding of its ICAO token image (JPEG, as sent):
   the same image, and every other photo's token, of the same person and of others; where the
   threshold ``face_template_agreement`` (0.95) falls between them, and what the check costs.
Run: .venv/bin/python bench/bench_face.py
"""

from __future__ import annotations

import itertools
import os
import statistics
import time
from pathlib import Path

import numpy as np

from biometrics import face
from devices.camera import feedback
from devices.simulation.camera import SimulatedCamera

ROOT = Path(__file__).resolve().parents[1]
FACES = Path(os.environ.get("RNP_FACES_DIR", ROOT.parent / "shared/data/faces"))


def per_frame() -> None:
    cam = SimulatedCamera.enrolment(
        FACES / "obama__obama.jpg", companion=FACES / "biden__biden.jpg", seed=3
    )
    frames = []
    while (f := cam.read()) is not None:
        frames.append(f.image)
    good = [f for f in frames if face.assess(f).passed]
    timings: dict[str, list[float]] = {
        "detect": [],
        "assess": [],
        "encode": [],
        "auto-capture decision": [],
    }
    for img in frames:
        t = time.perf_counter()
        face.detect(img)
        timings["detect"].append(time.perf_counter() - t)
        t = time.perf_counter()
        q = face.assess(img)
        feedback(q)
        timings["auto-capture decision"].append(time.perf_counter() - t)
    for img in good:
        t = time.perf_counter()
        face.assess(img)
        timings["assess"].append(time.perf_counter() - t)
        t = time.perf_counter()
        face.encode(img, thresholds=None)
        timings["encode"].append(time.perf_counter() - t)
    print(
        f"per 640x480 frame ({len(frames)} frames of a simulated session, "
        f"{len(good)} good ones; median / 90th percentile):"
    )
    for name, ts in timings.items():
        ms = np.asarray(ts) * 1e3
        p50, p90 = np.percentile(ms, [50, 90])
        print(f"  {name:24s} {p50:7.1f} ms  {p90:7.1f} ms   {1000 / p50:6.1f} frames/s")
    decision = np.percentile(np.asarray(timings["auto-capture decision"]) * 1e3, 50)
    print(f"  feedback rate vs target 5 frames/s: {1000 / decision / 5:.1f}x")
    cam = SimulatedCamera.enrolment(FACES / "obama__obama.jpg", prelude=False, seed=3)
    cam.prompt("blink_turn_left")
    challenge = [f.image for f in iter(cam.read, None)][:30]
    t = time.perf_counter()
    result = face.liveness(challenge)
    dt = time.perf_counter() - t
    print(
        f"  liveness over a 2 s challenge ({len(challenge)} frames): {dt * 1e3:.0f} ms, "
        f"{dt / len(challenge) * 1e3:.1f} ms per frame, passed={result.passed}"
    )


def scored_pairs() -> tuple[np.ndarray, np.ndarray, int, int]:
    """Genuine and impostor cosine similarities of every pair of the shared photos (dlib
    templates; photos without a usable face are left out), with the photos and people used."""
    items = []
    for p in sorted(FACES.glob("*__*.*")) + sorted(FACES.glob("johns/*/*.jpg")):
        ident = p.name.split("__")[0] if "__" in p.name else p.parent.name
        try:
            t = face.encode(face.decode_image(p.read_bytes()), thresholds=None)
        except face.FaceError:
            continue
        items.append((ident, t))
    gen, imp = [], []
    for (ia, a), (ib, b) in itertools.combinations(items, 2):
        (gen if ia == ib else imp).append(face.compare(a, b))
    return np.asarray(gen), np.asarray(imp), len(items), len({x for x, _ in items})


def pairs() -> None:
    g, i, photos, ids = scored_pairs()
    print(f"\n{photos} photos of {ids} people: {len(g)} genuine pairs, {len(i)} impostor pairs")
    print(f"  genuine  min {g.min():.3f}  p1 {np.percentile(g, 1):.3f}  median {np.median(g):.3f}")
    print(
        f"  impostor max {i.max():.3f}  p99 {np.percentile(i, 99):.3f}  median {np.median(i):.3f}"
    )
    mu, sd = statistics.fmean(i), statistics.stdev(i)
    print(
        f"  impostor normal fit: mean {mu:.4f} sd {sd:.4f} "
        f"(face.py uses {face.IMPOSTOR_MEAN} / {face.IMPOSTOR_STD})"
    )
    print(f"  {'threshold':>22} {'FMR (empirical)':>16} {'FNMR':>8}")
    for label, thr in [
        ("adjudication 0.91", 0.91),
        ("duplicate 0.93", 0.93),
        ("threshold_for_fmr(1e-3)", face.threshold_for_fmr(1e-3)),
        ("threshold_for_fmr(1e-4)", face.threshold_for_fmr(1e-4)),
        ("threshold_for_fmr(1e-6)", face.threshold_for_fmr(1e-6)),
    ]:
        print(f"  {label:>24} = {thr:.3f} {(i >= thr).mean():>10.5f} {(g < thr).mean():>8.4f}")


def token_agreement() -> None:
    import cv2

    from central_api.config import Settings

    threshold = Settings.model_fields["face_template_agreement"].default
    items, costs = [], []
    for p in sorted(FACES.glob("*__*.*")) + sorted(FACES.glob("johns/*/*.jpg"))[:20]:
        ident = p.name.split("__")[0] if "__" in p.name else p.parent.name
        img = cv2.imread(str(p))
        scale = 640 / max(img.shape[:2])
        if scale < 1:
            img = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        rgb = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
        try:
            kiosk = face.encode(rgb, thresholds=None)
            token = face.token_image(rgb)
            jpeg = cv2.imencode(".jpg", cv2.cvtColor(token, cv2.COLOR_RGB2BGR))[1].tobytes()
            t = time.perf_counter()
            own = face.encode(face.decode_image(jpeg), thresholds=None, upsample=0)
            costs.append(time.perf_counter() - t)
        except face.FaceError:
            continue
        items.append((ident, kiosk, own))
    same = [face.compare(k, o) for _, k, o in items]
    other_person = [
        face.compare(a[1], b[2]) for a, b in itertools.permutations(items, 2) if a[0] != b[0]
    ]
    same_person = [
        face.compare(a[1], b[2]) for a, b in itertools.permutations(items, 2) if a[0] == b[0]
    ]
    print(f"\nthe registry's face check, {len(items)} photos (threshold {threshold}):")
    print(f"  kiosk template vs its own token image:  min {min(same):.4f}")
    print(f"  vs another person's token image:        max {max(other_person):.4f}")
    print(f"  vs another photo of the same person:    median {np.median(same_person):.4f}")
    print(f"  cost of the registry's encoding: {1000 * statistics.median(costs):.0f} ms per image")


if __name__ == "__main__":
    per_frame()
    pairs()
    token_agreement()
