"""The end-to-end demo: a central registry on SQLite and a kiosk enrolling real faces.

Starts ``central-api serve`` as its own process (the kiosk talks to it over HTTP only),
enrols one person per identity found in the shared face photos, then re-enrols one of them
from a different photo, and prints the outcome counts as JSON on the last stdout line.
Demographics are invented; the photos are public test images (see their README).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import httpx

from central_api.enrolment.schemas import Demographics, Document
from devices.camera import SimulatedCamera
from devices.firmware import CameraConfig, by_model
from kiosk.client import CentralClient, KioskIdentity, build_packet
from kiosk.face_capture import FaceCapture, FaceCaptureFailed, capture_face

KIOSK_ID = "KIOSK-DEMO-01"
CAMERA = by_model("simulated-camera")
assert isinstance(CAMERA, CameraConfig)
_SURNAMES = [
    "El Amrani",
    "Benali",
    "Ouazzani",
    "Tazi",
    "Alaoui",
    "Berrada",
    "Chraibi",
    "Idrissi",
    "Bennani",
    "Fassi",
    "Lahlou",
    "Squalli",
    "Naciri",
    "Kettani",
]
_SURNAMES_AR = [
    "العمراني",
    "بنعلي",
    "الوزاني",
    "التازي",
    "العلوي",
    "برادة",
    "الشرايبي",
    "الإدريسي",
    "بناني",
    "الفاسي",
    "لحلو",
    "السقلي",
    "الناصري",
    "الكتاني",
]
_GIVEN = [
    "Youssef",
    "Amine",
    "Karim",
    "Omar",
    "Hamza",
    "Mehdi",
    "Rachid",
    "Said",
    "Nabil",
    "Hicham",
    "Tarik",
    "Adil",
    "Khalid",
    "Anas",
]
_GIVEN_AR = [
    "يوسف",
    "أمين",
    "كريم",
    "عمر",
    "حمزة",
    "مهدي",
    "رشيد",
    "سعيد",
    "نبيل",
    "هشام",
    "طارق",
    "عادل",
    "خالد",
    "أنس",
]
_CITIES = ["Fès", "Rabat", "Casablanca", "Marrakech", "Tanger", "Agadir", "Oujda", "Meknès"]


def find_faces_dir() -> Path:
    """The shared face photos: $RNP_FACES_DIR, else ../shared/data/faces beside the project."""
    here = Path(__file__).resolve().parents[1]
    for cand in (
        os.environ.get("RNP_FACES_DIR"),
        here.parent / "shared" / "data" / "faces",
        here / "shared" / "data" / "faces",
    ):
        if cand and Path(cand).is_dir():
            return Path(cand)
    raise SystemExit("demo: face photos not found; set RNP_FACES_DIR to shared/data/faces")


def identities(faces: Path) -> dict[str, list[Path]]:
    """Photos by identity: ``<identity>__<image>`` files and ``johns/<Name>/`` folders."""
    out: dict[str, list[Path]] = {}
    for p in sorted(faces.glob("*__*.*")):
        if "partial" in p.stem or "small" in p.stem:
            continue  # deliberately poor captures, kept for quality tests
        out.setdefault(p.name.split("__")[0], []).append(p)
    for d in sorted((faces / "johns").glob("*")):
        if d.is_dir():
            out[d.name] = sorted(d.glob("*.jpg"))
    return out


def capture(photo: Path, companion: Path, seed: int, prelude: bool = False) -> FaceCapture | None:
    """The kiosk's face stage on a simulated camera playing ``photo``; None if it fails.
    With ``prelude`` the person first does everything wrong (and is told so)."""
    camera = SimulatedCamera.enrolment(photo, companion=companion, seed=seed, prelude=prelude)
    if prelude:
        told: list[str] = []
        try:
            return capture_face(
                camera, CAMERA, on_feedback=lambda fb, _q: told.append(fb[0] if fb else "ok")
            )
        finally:
            said = [t for k, t in enumerate(told) if k == 0 or told[k - 1] != t]
            print(f"{_short(photo):45s}    kiosk said: {' > '.join(said)}", flush=True)
    try:
        return capture_face(camera, CAMERA)
    except FaceCaptureFailed as exc:
        print(f"{_short(photo):45s} -> capture failed ({exc})", flush=True)
        return None


def _first_capture(
    photos: list[Path], companion: Path, seed: int
) -> tuple[Path, FaceCapture] | None:
    for path in photos:
        if (shot := capture(path, companion, seed)) is not None:
            return path, shot
    return None


def _short(path: Path) -> str:
    return path.relative_to(path.parents[1]).as_posix()


def person(i: int, rng: random.Random) -> Demographics:
    """Invented but plausible Moroccan demographics for demo person ``i``."""
    city = rng.choice(_CITIES)
    return Demographics(
        surname_latin=_SURNAMES[i % len(_SURNAMES)],
        given_names_latin=_GIVEN[i % len(_GIVEN)],
        surname_arabic=_SURNAMES_AR[i % len(_SURNAMES_AR)],
        given_names_arabic=_GIVEN_AR[i % len(_GIVEN_AR)],
        date_of_birth=date(rng.randint(1950, 2005), rng.randint(1, 12), rng.randint(1, 28)),
        place_of_birth=city,
        sex="M",
        nationality="MAR",
        address=f"{rng.randint(1, 200)} Avenue Mohammed V, {city}",
        document=Document(type="CNIE", number=f"AB{100000 + i}", issuing_country="MAR"),
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _central(*args: str, env: dict[str, str]) -> None:
    subprocess.run(
        [sys.executable, "-m", "central_api.cli", "--log-level", "warning", *args],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )


@contextlib.contextmanager
def serve_central(env: dict[str, str], log_path: Path) -> Iterator[str]:
    """Run ``central-api serve`` in its own process on a free port until the block ends;
    yields its base URL once it answers its health check."""
    port = _free_port()
    cmd = [sys.executable, "-m", "central_api.cli", "--log-level", "warning", "serve"]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [*cmd, "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 30
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"central service exited; see {log_path}")
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(f"{url}/v1/health", timeout=1).status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"central service did not start in 30 s; see {log_path}")
                time.sleep(0.1)
            yield url
        finally:
            proc.terminate()
            proc.wait(timeout=30)


@contextlib.contextmanager
def central_service(workdir: Path, kiosk: KioskIdentity) -> Iterator[str]:
    """Run a fresh registry (SQLite) in its own process; yields its base URL."""
    env = dict(os.environ)
    env["CENTRAL_DATABASE_URL"] = f"sqlite:///{workdir / 'central.db'}"
    env["CENTRAL_DATA_KEY"] = base64.b64encode(os.urandom(32)).decode()
    _central("migrate", env=env)
    _central("kiosk-add", KIOSK_ID, "--public-key", kiosk.public_key_b64(), env=env)
    with serve_central(env, workdir / "central.log") as url:
        yield url


def _submit(
    client: CentralClient, who: Demographics, shot: FaceCapture, photo: Path, started: float
) -> str:
    packet = build_packet(KIOSK_ID, who, [shot.template], shot.token_jpeg)
    st = client.submit(packet)
    if not st.final:
        st = client.wait_final(packet.packet_id)
    print(
        f"{_short(photo):45s} -> {st.status.value:12s} IDCS={st.idcs or '-':10s} "
        f"receipt={st.receipt_number} quality={shot.quality_score} "
        f"({(time.perf_counter() - started):.1f} s)",
        flush=True,
    )
    return st.status.value


def run(workdir: Path) -> dict[str, int]:
    """Run the demo in ``workdir`` (recreated); returns the outcome counts."""
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    rng = random.Random(2026)
    people = identities(find_faces_dir())
    kiosk = KioskIdentity.generate(KIOSK_ID)
    counts: Counter[str] = Counter()
    with central_service(workdir, kiosk) as url, CentralClient(url, kiosk) as client:
        names = list(people)
        enrolled: dict[str, Path] = {}
        plan = [(i, name, path) for i, name in enumerate(names) for path in people[name]]
        for i, name, path in plan:
            if name in enrolled:
                continue
            companion = people[names[(i + 1) % len(names)]][0]
            started = time.perf_counter()
            shot = capture(path, companion, seed=i, prelude=not enrolled)
            if shot is None:
                continue  # the person tries again, with another photo standing in
            enrolled[name] = path
            counts[_submit(client, person(i, rng), shot, path, started)] += 1
        # one person comes back later, photographed anew: the registry must recognise them
        for name, first in enrolled.items():
            i = names.index(name)
            companion = people[names[(i + 1) % len(names)]][0]
            again = [p for p in people[name] if p != first]
            started = time.perf_counter()
            if (hit := _first_capture(again, companion, seed=100 + i)) is not None:
                path, shot = hit
                counts[_submit(client, person(i, rng), shot, path, started)] += 1
                break
    return {
        "enrolled": sum(counts.values()),
        "issued": counts["issued"],
        "duplicates": counts["duplicate"],
        "adjudication": counts["adjudication"],
    }


def main(workdir: Path | None = None) -> int:
    """Entry point of ``kiosk demo``: prints the summary JSON as the last stdout line."""
    started = time.perf_counter()
    try:
        summary = run(workdir or Path("var/demo"))
    except RuntimeError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 1
    print(f"demo finished in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    print(json.dumps(summary))
    return 0
