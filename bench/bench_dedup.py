"""Benchmark of the face 1:N search and of end-to-end intake + decision.

Prints, in one run:
  1. faiss IndexFlatIP search time per query at several gallery sizes and batch sizes, with
     distance_compute_blas_threshold = 1 (our setting) against this faiss's default: ratio.
  2. Enrolments per second through the HTTP app (TestClient, SQLite file, one worker):
     validation, signature check, encryption, storage, 1:N search and IDCS issuance.
Run: .venv/bin/python bench/bench_dedup.py
"""

from __future__ import annotations

import base64
import os
import tempfile
import time
from pathlib import Path

import cv2
import faiss
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
FAISS_DEFAULT = faiss.cvar.distance_compute_blas_threshold  # read before our code changes it


def search_timings() -> None:
    rng = np.random.default_rng(0)
    print(
        f"faiss {faiss.__version__} IndexFlatIP, 128-d, exact, k=10; ms per query (median of 5);"
        f" default blas threshold = {FAISS_DEFAULT}"
    )
    print(f"{'gallery':>8} {'batch':>6} {'blas=1':>9} {'default':>9} {'speed-up':>9}")
    for n in (10_000, 100_000, 500_000):
        xb = rng.normal(size=(n, 128)).astype(np.float32)
        xb /= np.linalg.norm(xb, axis=1, keepdims=True)
        index = faiss.IndexFlatIP(128)
        index.add(xb)
        index.search(xb[:4], 10)  # warm-up (first call pays one-off costs)
        for batch in (1, 8, 64, 512):
            q = xb[rng.integers(0, n, batch)] + 0.01
            per_query = {}
            for threshold in (1, FAISS_DEFAULT):
                faiss.cvar.distance_compute_blas_threshold = threshold
                runs = []
                for _ in range(5):
                    t = time.perf_counter()
                    index.search(q, 10)
                    runs.append((time.perf_counter() - t) / batch)
                per_query[threshold] = float(np.median(runs)) * 1e3
            base = per_query[FAISS_DEFAULT]
            print(
                f"{n:>8} {batch:>6} {per_query[1]:>9.3f} {base:>9.3f} {base / per_query[1]:>8.1f}x"
            )
    faiss.cvar.distance_compute_blas_threshold = 1


def intake_throughput(count: int = 300) -> None:
    """Sealed packets of ``count`` distinct random persons through the whole intake (gate,
    decryption, signature, validation, capture policy, store) and the dedup, sequentially.
    The policy's face check recomputes every template from the photo (one face encoding per
    packet); the persons are the photo's template plus a random vector twice as long (about
    0.45 from the photo, 0.2 from each other), and the check's threshold is lowered to let
    them through: its cost is all there."""
    from fastapi.testclient import TestClient

    from central_api.config import Settings
    from central_api.db import make_engine, make_session_factory, migrate, transaction
    from central_api.enrolment.schemas import seal
    from central_api.enrolment.service import register_kiosk
    from central_api.main import create_app
    from kiosk.client import KioskIdentity, build_packet

    faces = Path(os.environ.get("RNP_FACES_DIR", ROOT.parent / "shared/data/faces"))
    img = cv2.imread(str(faces / "obama__obama.jpg"))
    img = cv2.resize(img, (480, 600))
    jpeg = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()
    from _evidence import demographics, evidence  # bench/, beside this script

    demo = demographics()

    from biometrics import face

    base = face.encode(face.decode_image(jpeg), thresholds=None)
    rng = np.random.default_rng(1)
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/bench.db"
        migrate(url)
        kiosk = KioskIdentity.generate("KIOSK-BENCH")
        data_key = os.urandom(32)
        engine = make_engine(url)
        with transaction(make_session_factory(engine, data_key)) as s:
            register_kiosk(s, kiosk.kiosk_id, base64.b64decode(kiosk.public_key_b64()), "bench")
        engine.dispose()
        packet_key, signing_key = os.urandom(32), os.urandom(32)
        settings = Settings(
            database_url=url,
            data_key=base64.b64encode(data_key).decode(),
            packet_key=base64.b64encode(packet_key).decode(),
            signing_key=base64.b64encode(signing_key).decode(),
            face_template_agreement=0.2,  # random persons beside one photo (see above)
            refusals_per_minute=10**6,
        )
        registry_pub = settings.packet_private_key().public_key().public_bytes_raw()
        bodies = []
        for i in range(count):
            noise = rng.normal(size=128).astype(np.float32)
            t = base + 2 * noise / np.linalg.norm(noise)  # distinct random persons
            t /= np.linalg.norm(t)
            p = build_packet(kiosk.kiosk_id, demo, [t], jpeg, **evidence(i))
            bodies.append(p.model_dump_json().encode())
        with TestClient(create_app(settings)) as client:
            t0 = time.perf_counter()
            statuses = []
            for body in bodies:
                r = client.post(
                    "/v1/enrolments",
                    content=seal(body, kiosk.kiosk_id, kiosk.key.sign, registry_pub),
                    headers={"content-type": "application/json", "x-kiosk-id": kiosk.kiosk_id},
                )
                statuses.append(r.json().get("status"))
            dt = time.perf_counter() - t0
    issued = statuses.count("issued")
    print(
        f"\nintake + dedup + issuance, SQLite, sequential: {count} enrolments in {dt:.2f} s "
        f"= {count / dt:.1f} enrolments/s, {dt / count * 1e3:.1f} ms each ({issued} issued)"
    )


if __name__ == "__main__":
    search_timings()
    intake_throughput()
