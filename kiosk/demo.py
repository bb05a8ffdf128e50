"""The end-to-end demo: the real chain, with simulated people at the hardware boundary.

Starts a central registry (``central-api serve``, SQLite) and the device daemon (``devices
serve`` with simulated camera, fingerprint reader and emulated ID cards read through pcscd)
as their own processes, then drives the kiosk's enrolment session for one person per
identity in the shared face photos (card → face → ten fingers → review → outbox → registry),
then for one of them again with a new card: the registry must refuse a second identifier;
then for another of them under a new name, hands bandaged but for one worn thumb: the evidence
lands between the two thresholds and the case waits for an adjudicator in the operators'
console (the URL and a demo adjudicator's sign-in are printed). Prints the summary JSON as the
last stdout line. With ``--ui`` the kiosk UI then stays open
on http://127.0.0.1:8080 with a simulated citizen at the devices. Demographics are invented;
the photos are public test images (see their README).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import random
import shlex
import shutil
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from central_api.enrolment.schemas import Demographics, Document, DocumentType, Sex
from devices.bus import DeviceClient, DeviceError
from devices.icao.mrz import td1
from devices.simulation import emrtd
from kiosk.client import KioskIdentity
from kiosk.household import Draft, Row
from kiosk.outbox import Entry, Outbox, OutboxState
from kiosk.session import EnrolmentSession, KioskSettings, Operators, Step, StepError
from kiosk.web import Kiosk, assemble, browser_command, serve_ui

KIOSK_ID = "KIOSK-DEMO-01"
CENTRAL_PORT = 8081  # the registry (and its operators' console) with --ui
FRAUD_INDEX = 5  # the demo person who comes back under another identity
OPERATOR_PIN, SUPERVISOR_PIN, TECHNICIAN_PIN = "2468", "135790", "975310"
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
        sex=Sex.M,
        nationality="MAR",
        address=f"{rng.randint(1, 200)} Avenue Mohammed V, {city}",
        document=Document(type=DocumentType.CNIE, number=f"AB{100000 + i}", issuing_country="MAR"),
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _central(*args: str, env: dict[str, str]) -> str:
    """Run a ``central_api.cli`` command; returns what it printed."""
    done = subprocess.run(
        [sys.executable, "-m", "central_api.cli", "--log-level", "warning", *args],
        env=env,
        check=True,
        stdout=subprocess.PIPE,
        text=True,
    )
    return done.stdout


def explain(receipt: str, env: dict[str, str]) -> list[str]:
    """What the registry decided an enrolment on, as an operator reads it
    (``central_api.cli evidence``): the fused score against the thresholds, then each
    modality's share."""
    (found,) = json.loads(_central("evidence", receipt, env=env))
    ev = found["evidence"]
    th = ev["thresholds"]
    best = ev["candidates"][0]
    if best["llr"] >= th["duplicate"]:
        where = f">= duplicate threshold {th['duplicate']:.1f}"
    else:
        where = (
            f"between the adjudication threshold {th['adjudication']:.1f} and the duplicate "
            f"threshold {th['duplicate']:.1f}: an adjudicator decides"
        )
    lines = [
        f"    fused LLR {best['llr']:.1f} {where} "
        f"(ln of {th['gallery_size']} persons / target FPIR {th['target_fpir']:g}); "
        f"algorithms {ev['algorithms']['finger']}, {ev['algorithms']['face']}"
    ]
    if best["face"] is not None:
        lines.append(
            f"    face: similarity {best['face']['score']:.3f} -> LLR {best['face']['llr']:+.1f}"
        )
    fingers = ", ".join(
        f"{f['position']}:{f['bits']:.0f}b/{f['llr']:+.1f}" for f in best["fingers"]
    )
    lines.append(f"    fingers (position: bits/LLR): {fingers or 'none compared'}")
    return lines


@contextlib.contextmanager
def serve_central(env: dict[str, str], log_path: Path, port: int | None = None) -> Iterator[str]:
    """Run ``central-api serve`` in its own process (on ``port``, or a free one) until the
    block ends; yields its base URL once it answers its health check."""
    port = port or _free_port()
    cmd = [sys.executable, "-m", "central_api.cli", "--log-level", "warning", "serve"]
    with log_path.open("ab") as log:
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


def registry_env(workdir: Path) -> tuple[dict[str, str], tuple[bytes, bytes]]:
    """The environment of a fresh registry on SQLite in ``workdir`` (new keys), and the two
    public keys a kiosk is provisioned with: packets are sealed to the first, answers are
    verified with the second."""
    env = dict(os.environ)
    env["CENTRAL_DATABASE_URL"] = f"sqlite:///{workdir / 'central.db'}"
    env["CENTRAL_DATA_KEY"] = base64.b64encode(os.urandom(32)).decode()
    packet_key, signing_key = X25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    env["CENTRAL_PACKET_KEY"] = base64.b64encode(packet_key.private_bytes_raw()).decode()
    env["CENTRAL_SIGNING_KEY"] = base64.b64encode(signing_key.private_bytes_raw()).decode()
    public = (
        packet_key.public_key().public_bytes_raw(),
        signing_key.public_key().public_bytes_raw(),
    )
    return env, public


@contextlib.contextmanager
def central_service(
    workdir: Path, kiosk: KioskIdentity, port: int | None = None
) -> Iterator[tuple[str, tuple[bytes, bytes], dict[str, str]]]:
    """Run a fresh registry (SQLite) in its own process; yields its base URL, the public
    keys a kiosk needs and the registry's environment (see :func:`registry_env`). Its
    ``CENTRAL_*`` settings are kept in ``workdir/central.env`` (mode 0600): ``central-api
    serve`` with them opens the demo's registry again after the demo."""
    env, public = registry_env(workdir)
    settings = "".join(f"{k}={v}\n" for k, v in sorted(env.items()) if k.startswith("CENTRAL_"))
    path = workdir / "central.env"
    path.touch(mode=0o600)
    path.write_text(settings)
    _central("migrate", env=env)
    _central("kiosk-add", KIOSK_ID, "--public-key", kiosk.public_key_b64(), env=env)
    with serve_central(env, workdir / "central.log", port) as url:
        yield url, public, env


def console_operators(env: dict[str, str]) -> list[dict[str, str]]:
    """The demo's console accounts: an adjudicator and a senior adjudicator (the second eye
    of four), each with a temporary password and a TOTP secret."""
    return [
        {
            **json.loads(_central("operator-add", who, "--role", role, "--json", env=env)),
            "role": role,
        }
        for who, role in (("adj.demo", "adjudicator"), ("sen.demo", "senior_adjudicator"))
    ]


@contextlib.contextmanager
def device_daemon(workdir: Path, sbi: bool = False) -> Iterator[DeviceClient]:
    """pcscd (if none runs) and ``devices serve --simulate``, in their own processes; yields
    a client once the daemon answers. The simulated documents' CSCA is put in the kiosk's
    trust folder ``workdir/trust`` (the daemon never writes it anywhere). With ``sbi``, the
    fingerprint reader is an SBI simulated device in its own process, driven through the
    MOSIP SBI protocol (its provider's CA in ``workdir/trust/sbi-ca``)."""
    from devices.simulation import sbi_device

    pcscd = emrtd.start_pcscd()
    sockets = workdir / "devices"
    trust = workdir / "trust"
    trust.mkdir(exist_ok=True)
    cmd = [sys.executable, "-m", "devices.cli", "serve", "--simulate"]
    cmd += ["--socket-dir", str(sockets), "--trust", str(trust)]
    cmd += ["--state-dir", str(workdir / "devices-state")]
    with contextlib.ExitStack() as stack:
        if sbi:
            log = workdir / "sbi-device.log"
            port = stack.enter_context(sbi_device.running(workdir / "sbi", trust, log=log))
            cmd += ["--fingerprint", f"sbi:{port}"]
        yield stack.enter_context(_daemon(cmd, workdir, pcscd))


@contextlib.contextmanager
def _daemon(
    cmd: list[str], workdir: Path, pcscd: subprocess.Popen[bytes] | None
) -> Iterator[DeviceClient]:
    sockets = workdir / "devices"
    with (workdir / "devices.log").open("wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        client = DeviceClient(sockets)
        try:
            deadline = time.monotonic() + 60
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"device daemon exited; see {workdir / 'devices.log'}")
                try:
                    client.status(timeout=1.0)
                    break
                except DeviceError:
                    if time.monotonic() > deadline:
                        raise RuntimeError("device daemon did not start in 60 s") from None
            pem = str(client.call("simulate.csca").result["pem"])
            (workdir / "trust" / "simulated-csca.pem").write_text(pem)
            yield client
        finally:
            proc.terminate()
            proc.wait(timeout=30)
            if pcscd is not None:
                pcscd.terminate()
                pcscd.wait(timeout=10)


@dataclass
class Citizen:
    """A demo person: who they are, their photos, their card."""

    index: int
    name: str
    photos: list[Path]
    demographics: Demographics
    missing_fingers: set[int]
    visit: int = 0  # a person who comes back gives new impressions of the same fingers
    exception: str = "amputated"  # why the missing fingers are missing

    @property
    def card_mrz(self) -> str:
        d = self.demographics
        assert d.document is not None
        return td1(
            d.document.number,
            d.surname_latin,
            d.given_names_latin,
            d.date_of_birth.strftime("%y%m%d"),
            d.sex,
            "341231",
        )

    @property
    def card_can(self) -> str:
        """The card access number printed on the front of this person's CNIE (the chip is a
        PACE-CAN chip, as the real CNIE 2020)."""
        return f"{(self.index * 7919 + 104729) % 1_000_000:06d}"

    def present(self, devices: DeviceClient) -> None:
        """Step up to the kiosk: face (first photo), fingers, card (another photo on it)."""
        chip_photo, d = self.photos[-1], self.demographics
        devices.call(
            "simulate.citizen",
            {
                "photo": str(self.photos[0]),
                "finger_person": 1000 + self.index,
                "visit": self.visit,
                "missing": sorted(self.missing_fingers),
                "card": {
                    "mrz": self.card_mrz,
                    "can": self.card_can,
                    "full_name": f"{d.surname_latin} {d.given_names_latin}",
                    "photo": str(chip_photo),
                },
            },
            timeout=30,
        )


def enrol(session: EnrolmentSession, devices: DeviceClient, who: Citizen, language: str) -> Entry:
    """Drive one enrolment through the session, as the UI does; returns the outbox entry."""
    who.present(devices)
    d = who.demographics
    assert d.document is not None
    session.start()
    session.choose_language(language)
    # the card reader needs a moment to see the inserted card
    for attempt in range(20):
        try:
            session.read_card_can(who.card_can)  # the 6 digits on the front (PACE-CAN)
            break
        except StepError as exc:
            if exc.code != "card_no_card" or attempt == 19:
                raise
            time.sleep(0.25)
    for photo in who.photos:  # a person who cannot pass tries again (another photo stands in)
        try:
            session.capture_face()
            break
        except StepError as exc:
            print(f"  {_short(photo):42s} face: {exc.code} ({exc.detail})", flush=True)
            nxt = who.photos[who.photos.index(photo) + 1 :]
            if not nxt:
                raise
            devices.call("simulate.face", {"photo": str(nxt[0])})
    while session.step == Step.FINGERS:
        try:
            session.capture_finger()
        except StepError as exc:
            if exc.code not in ("finger_no_finger", "finger_unusable"):
                raise
            session.finger_exception(
                who.exception if exc.code == "finger_no_finger" else "unusable",
                "op-01",
                OPERATOR_PIN,
            )
    return session.submit(
        d.address, d.place_of_birth, d.surname_arabic or "", d.given_names_arabic or ""
    )


def ui_instructions(guest: Citizen) -> str:
    """What a first-time tester does at the kiosk UI, as the demo prints it."""
    d = guest.demographics
    assert d.document is not None
    born = d.date_of_birth.strftime("%d/%m/%Y")
    return "\n".join(
        [
            "",
            "kiosk UI: http://127.0.0.1:8080  (Ctrl-C to stop)",
            f"  as the kiosk shows it: {shlex.join(browser_command())}",
            "  standing at the kiosk: a person the registry has never seen, with a card on the "
            "reader. To enrol them:",
            "   1. touch a language on the welcome page;",
            "   2. touch 'Read my card': the document camera reads the card's MRZ, nothing to "
            f"type (typed by hand: the card access number {guest.card_can} from the card's "
            f"front, or number {d.document.number}, born {born}, expires 31/12/2034);",
            "   3. touch 'Take the photo', then follow the spoken and written instructions;",
            "   4. touch 'Scan this finger' for each of the ten fingers the hands show;",
            "   5. type a place of birth and an address, confirm: the receipt shows the IDCS "
            "once the registry has decided (a few seconds);",
            "   6. a receipt can be checked later from the welcome page (its number and the "
            f"date of birth, {born}).",
            f"  agents: open http://127.0.0.1:8080/agent and start a shift: op-01 PIN "
            f"{OPERATOR_PIN} (agent), sup-01 PIN {SUPERVISOR_PIN} (supervisor)",
            "  technicians: http://127.0.0.1:8080/technician (devices, test captures, "
            f"calibration, firmware): tech-01 PIN {TECHNICIAN_PIN}",
        ]
    )


def wait_final(outbox: Outbox, entry: Entry, timeout: float = 60.0) -> Entry:
    """Wait for the registry's decision on a queued packet (the sync worker fetches it); an
    adjudication case counts as decided (its outcome waits for a person)."""
    deadline = time.monotonic() + timeout
    e = outbox.get(entry.packet_id) or entry
    while (
        e.state != OutboxState.FINAL and e.status != "adjudication" and time.monotonic() < deadline
    ):
        time.sleep(0.2)
        e = outbox.get(entry.packet_id) or e
    return e


# The demo's two households (illustrative model): a rural day labourer's family with small
# bills and no durable goods, eligible for both programmes, and an urban employer's with a
# villa, large bills and a car, eligible for neither. Bills are monthly, as the form asks.
@dataclass(frozen=True)
class DemoHousehold:
    """A household the demo declares: the language at the desk, the two members' ages, the
    second member's relation to the declarant, and the rest of the form as typed."""

    language: str
    ages: tuple[str, str]
    relation: str
    home: dict[str, Any]


HOUSEHOLDS = (
    DemoHousehold(
        "ar",
        ("38", "35"),
        "spouse",
        {
            "housing": "rural_dwelling",
            "rooms": "2",
            "area": "rural",
            "region": "7",
            "occupation": "casual_worker",
            "expenses": {"electricity": "25", "water": "8", "telecom": "15", "butane": "50"},
        },
    ),
    DemoHousehold(
        "fr",
        ("52", "24"),
        "child",
        {
            "housing": "villa",
            "rooms": "6",
            "area": "urban",
            "region": "6",
            "occupation": "employer",
            "expenses": {"electricity": "750", "water": "250", "telecom": "500", "butane": "100"},
            "goods": {"fridge", "television", "car", "computer", "air_conditioner"},
        },
    ),
)


def register_households(
    kiosk: Kiosk, devices: DeviceClient, issued: list[tuple[Citizen, str]]
) -> list[dict[str, object]]:
    """Two households declared at the kiosk's household desk by people just enrolled: each
    declarant types their IDCS and shows their face (checked 1:1 by the registry), fills the
    form and sends it; prints each household's reference, scores and decisions with why."""
    desk = kiosk.desk
    assert desk is not None
    out: list[dict[str, object]] = []
    for spec, pair in zip(HOUSEHOLDS, (issued[0:2], issued[2:4]), strict=True):
        if len(pair) < 2:
            break
        (declarant, idcs), (_, member) = pair
        declarant.present(devices)  # the declarant at the camera
        kiosk.session.cancel()
        desk.begin()
        kiosk.session.set_language(spec.language)
        try:
            desk.identify(idcs)
            rows = [Row(idcs, spec.ages[0], "declarant"), Row(member, spec.ages[1], spec.relation)]
            desk.check(Draft(rows=rows, **spec.home))
            desk.submit()
        except StepError as exc:
            print(f"household of {declarant.name:16s} -> not declared ({exc.code})", flush=True)
            desk.wipe()
            continue
        h = desk.household
        assert h is not None
        decisions = {d.programme.value: d for d in h.decisions}
        print(
            f"household {h.reference} (declared by {declarant.name}, 2 members, "
            f"in {spec.language}): "
            + "; ".join(
                f"{p} score {d.score:.3f} vs {d.threshold:.3f} -> "
                f"{'eligible' if d.eligible else 'not eligible'}"
                for p, d in decisions.items()
            ),
            flush=True,
        )
        if h.explanation is not None:
            print(f"  {h.explanation.text}", flush=True)
        out.append(
            {
                "reference": h.reference,
                "eligible": {p: d.eligible for p, d in decisions.items()},
                "model": h.decisions[0].model_version if h.decisions else None,
            }
        )
        desk.wipe()
        kiosk.session.cancel()
    return out


def print_console(url: str, operators: list[dict[str, str]], workdir: Path, ui: bool) -> None:
    """Where the operators' console is and how the demo's adjudicators sign in."""
    lines = [f"\noperators' console: {url}/console/"]
    if not ui:
        lines.append(
            "  it closes with the demo; to open it again: "
            f"set -a; . {workdir}/central.env; set +a; "
            f".venv/bin/central-api serve --port {CENTRAL_PORT}  (then "
            f"http://127.0.0.1:{CENTRAL_PORT}/console/), or keep it up: make demo DEMO_ARGS=--ui"
        )
    for o in operators:
        lines.append(
            f"  {o['role'].replace('_', ' ')} {o['operator']}: temporary password "
            f"{o['password']} (choose your own at first sign-in), TOTP secret {o['totp_secret']}"
        )
    secret = operators[0]["totp_secret"]
    lines.append(
        "  a code: add the secret to any authenticator app, or run "
        f".venv/bin/central-api totp-code {secret}"
    )
    print("\n".join(lines), flush=True)


def run(workdir: Path, ui: bool = False, sbi: bool = False) -> dict[str, object]:
    """Run the demo in ``workdir`` (recreated); returns the summary."""
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    rng = random.Random(2026)
    people = identities(find_faces_dir())
    names = list(people)
    citizens = [
        Citizen(i, name, people[name], person(i, rng), {7} if i == 2 else set())
        for i, name in enumerate(names)
    ]
    # with the UI, the last person is kept out of the batch: the first-time tester stands at
    # the kiosk as someone the registry has never seen, and must reach an issued IDCS
    guest = citizens.pop() if ui else None
    identity = KioskIdentity.generate(KIOSK_ID)
    operators = Operators(workdir / "operators.json")
    operators.add("op-01", "operator", OPERATOR_PIN)
    operators.add("sup-01", "supervisor", SUPERVISOR_PIN)
    operators.add("tech-01", "technician", TECHNICIAN_PIN)
    counts: Counter[str] = Counter()
    timings: list[float] = []
    with (
        central_service(workdir, identity, CENTRAL_PORT if ui else None) as (
            url,
            registry_keys,
            central_env,
        ),
        device_daemon(workdir, sbi) as devices,
    ):
        console = console_operators(central_env)
        kiosk = assemble(
            KioskSettings(
                KIOSK_ID, centre="Arrondissement Agdal, Rabat", trust_dir=workdir / "trust"
            ),
            workdir / "kiosk",
            url,
            registry_keys,
            identity,
            devices,
            operators,
        )
        session = kiosk.session
        languages = ("ar", "fr", "zgh", "en")
        # everyone once, then one of them comes back with a new card (a new document number):
        # the registry must recognise the face and refuse a second identifier
        returning = citizens[1]
        again = Citizen(
            returning.index,
            returning.name,
            list(reversed(returning.photos)),
            returning.demographics.model_copy(
                update={
                    "document": Document(
                        type=DocumentType.CNIE,
                        number=f"ZX{900000 + returning.index}",
                        issuing_country="MAR",
                    )
                }
            ),
            set(),
            visit=1,
        )
        # another comes back under a new name and birth date, both hands bandaged: the face
        # alone (LLR 7.5) lands between the two thresholds (7.1 and 9.4 at this gallery's
        # size), and a face alone never makes a duplicate: a person decides
        impostor = citizens[FRAUD_INDEX]
        fraud = Citizen(
            impostor.index,
            impostor.name,
            list(reversed(impostor.photos)),
            impostor.demographics.model_copy(
                update={
                    "surname_latin": "Idrissi",
                    "given_names_latin": "Salma",
                    "surname_arabic": "الإدريسي",
                    "given_names_arabic": "سلمى",
                    "date_of_birth": date(1993, 6, 21),
                    "document": Document(
                        type=DocumentType.CNIE, number="ZT771203", issuing_country="MAR"
                    ),
                }
            ),
            set(range(1, 11)),
            visit=1,
            exception="bandaged",
        )
        # the kiosk goes on to the next person while the registry decides (it makes its own
        # templates from the images first): the decisions are read as they come, in order
        sent: list[tuple[Citizen, Entry, float]] = []
        for k, who in enumerate([*citizens, again, fraud]):
            started = time.perf_counter()
            try:
                entry = enrol(session, devices, who, languages[k % 4])
            except StepError as exc:
                session.cancel()
                print(f"{who.name:28s} -> not enrolled ({exc.code})", flush=True)
                counts["not_enrolled"] += 1
                continue
            kiosk_s = time.perf_counter() - started
            timings.append(kiosk_s)
            sent.append((who, entry, kiosk_s))
        issued: list[tuple[Citizen, str]] = []
        for who, entry, kiosk_s in sent:
            final = wait_final(kiosk.outbox, entry, timeout=600)
            counts[final.status or final.state] += 1
            if final.status == "issued" and final.idcs and who.visit == 0:
                issued.append((who, final.idcs))
            print(
                f"{who.name:28s} -> {final.status or final.state:12s} IDCS={final.idcs or '-':10s} "
                f"receipt={final.receipt_number} "
                f"(kiosk {kiosk_s:.1f} s)",
                flush=True,
            )
            if final.status in ("duplicate", "adjudication"):
                print("\n".join(explain(final.receipt_number, central_env)), flush=True)
        # the social registry: two of them declare their households at the household desk
        households = register_households(kiosk, devices, issued)
        print_console(url, console, workdir, ui)
        if guest is not None:
            guest.present(devices)
            session.cancel()  # the welcome page, neutral
            print(ui_instructions(guest), flush=True)
            with contextlib.suppress(KeyboardInterrupt):
                serve_ui(kiosk)
        assert kiosk.worker is not None
        kiosk.worker.stop()
        outbox = kiosk.outbox.counts()
    return {
        "enrolled": sum(v for k, v in counts.items() if k != "not_enrolled"),
        "issued": counts["issued"],
        "duplicates": counts["duplicate"],
        "adjudication": counts["adjudication"],
        "not_enrolled": counts["not_enrolled"],
        "outbox": outbox,
        "kiosk_seconds_per_enrolment": round(sum(timings) / max(1, len(timings)), 2),
        "households": households,
    }


def main(workdir: Path | None = None, ui: bool = False, sbi: bool = False) -> int:
    """Entry point of ``kiosk demo``: prints the summary JSON as the last stdout line."""
    started = time.perf_counter()
    try:
        summary = run(workdir or Path("var/demo"), ui=ui, sbi=sbi)
    except (RuntimeError, emrtd.PcscdUnavailable) as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 1
    print(f"demo finished in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    print(json.dumps(summary))
    return 0
