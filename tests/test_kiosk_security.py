"""The kiosk and its device daemon under attack (issue 11): simulation only when asked for,
sockets only for the kiosk's user, forged registry answers, a wrong clock, PIN lockouts, the
UI's host / origin / token / cookie checks, and private key files."""

from __future__ import annotations

import base64
import html
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from helpers import PACKET_PUB, SIGNING_PUB, demographics, evidence

from central_api.enrolment.schemas import EnrolmentStatus, ErrorCode
from devices.bus import DaemonUnavailable, DeviceClient, DeviceError, SocketDirError
from devices.daemon import DaemonConfig, DaemonConfigError, DeviceDaemon
from devices.simulation import emrtd
from kiosk.client import CentralClient, ConfigError, KioskIdentity, build_packet
from kiosk.outbox import LocalProblem, Outbox, SyncWorker
from kiosk.session import EnrolmentSession, KioskSettings, Operators, Problem, Step, StepError
from kiosk.web import COOKIE, Kiosk, create_app

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def run(*cmd: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(cmd), capture_output=True, text=True, timeout=60, env={**os.environ, **(env or {})}
    )


# ---------------------------------------------------------------------------- device daemon
def test_simulation_only_when_asked_for_and_never_mixed(tmp_path: Path, pcscd):
    # the README's production command, on a machine where vsmartcard's vpcd is present
    real = run(str(BIN / "devices"), "serve", "--camera", "opencv:0", "--socket-dir", str(tmp_path))
    assert real.returncode == 2 and "vpcd" in real.stderr and "tests and the demo" in real.stderr
    mixed = run(str(BIN / "devices"), "serve", "--simulate", "--camera", "opencv:0")
    assert mixed.returncode == 2 and "cannot be mixed" in mixed.stderr
    with pytest.raises(DaemonConfigError, match="opencv"):
        DaemonConfig(socket_dir=tmp_path, camera="simulated")


@pytest.fixture
def real_daemon(tmp_path: Path, pcscd) -> Iterator[DeviceClient]:
    """A daemon driving real devices: a camera reading a video file, no fingerprint driver,
    pcscd's readers (vpcd here: the command line refuses it, this test harness does not)."""
    sockets = tmp_path / "sockets"
    daemon = DeviceDaemon(DaemonConfig(socket_dir=sockets, camera=f"opencv:{tmp_path / 'x.avi'}"))
    thread = threading.Thread(target=daemon.serve, daemon=True)
    thread.start()
    assert daemon.ready.wait(10)
    yield DeviceClient(sockets, timeout=5)
    daemon.stop()
    thread.join(10)


def test_a_real_daemon_has_no_simulation_commands(real_daemon: DeviceClient):
    for cmd in ("simulate.citizen", "simulate.card", "simulate.face", "simulate.unplug"):
        with pytest.raises(DeviceError) as err:
            real_daemon.call(cmd, {"photo": "/tmp/x.jpg"})
        assert err.value.code == "unknown_command"
    with pytest.raises(DeviceError) as err:
        real_daemon.capture_finger(2)
    assert err.value.code == "device_lost"
    state = {d["kind"]: d["state"] for d in real_daemon.status()["devices"]}  # type: ignore[index,union-attr]
    assert state["fingerprint"] == "lost"


def test_the_daemon_never_writes_the_trust_folder_nor_leaves_temp_folders(tmp_path: Path, pcscd):
    trust = tmp_path / "trust"
    trust.mkdir()
    (trust / "csca.pem").write_bytes(emrtd.DocumentPKI.create("FR").csca_pem())
    before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in trust.iterdir()}
    temps = set(os.listdir(tempfile.gettempdir()))
    sockets = tmp_path / "sockets"
    daemon = DeviceDaemon(DaemonConfig(socket_dir=sockets, simulated=True, trust_dir=trust))
    thread = threading.Thread(target=daemon.serve, daemon=True)
    thread.start()
    assert daemon.ready.wait(10)
    client = DeviceClient(sockets)
    pem = client.call("simulate.csca").result["pem"]
    assert "BEGIN CERTIFICATE" in str(pem)
    assert len(daemon.trust.certificates) == 2  # the folder's, and its own in memory
    daemon.stop()
    thread.join(10)
    after = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in trust.iterdir()}
    assert after == before
    assert set(os.listdir(tempfile.gettempdir())) - temps == set()
    assert not (sockets / "commands").exists()  # its sockets are gone too


_PROBE = """
import socket, sys
for name in ("commands", "events"):
    s = socket.socket(socket.AF_UNIX)
    try:
        s.connect(sys.argv[1] + "/" + name)
        print("REACHED", name)
    except PermissionError:
        print("REFUSED", name)
"""


def _as_nobody(sockets: Path) -> str:
    out = subprocess.run(
        ["/usr/bin/python3", "-c", _PROBE, str(sockets)],
        capture_output=True,
        text=True,
        timeout=30,
        user=65534,  # nobody: another local user of the kiosk PC
        cwd="/",
    )
    return out.stdout + out.stderr


def test_another_local_user_cannot_reach_the_daemon(pcscd):
    if os.geteuid() != 0:
        pytest.skip("acting as another user needs root (CI runs as root)")
    parent = Path(tempfile.mkdtemp(prefix="rnp-sockets-"))  # a folder anyone may cross
    os.chmod(parent, 0o755)
    sockets = parent / "sockets"
    daemon = DeviceDaemon(DaemonConfig(socket_dir=sockets, simulated=True))
    thread = threading.Thread(target=daemon.serve, daemon=True)
    thread.start()
    assert daemon.ready.wait(10)
    try:
        assert stat.S_IMODE(sockets.stat().st_mode) == 0o700
        assert DeviceClient(sockets).status()  # the kiosk's user: yes
        seen = _as_nobody(sockets)
        assert seen.split() == ["REFUSED", "commands", "REFUSED", "events"], seen
        # the probe does see a reachable daemon: opened up, the same user gets through
        os.chmod(sockets, 0o755)
        for name in ("commands", "events"):
            os.chmod(sockets / name, 0o777)
        assert _as_nobody(sockets).split() == ["REACHED", "commands", "REACHED", "events"]
    finally:
        daemon.stop()
        thread.join(10)
        shutil.rmtree(parent, ignore_errors=True)
    # a socket folder someone else made first is refused, not used
    theirs = Path(tempfile.mkdtemp(prefix="rnp-theirs-"))
    os.chown(theirs, 65534, 65534)
    try:
        with pytest.raises(SocketDirError, match="another user"):
            DeviceDaemon(DaemonConfig(socket_dir=theirs, simulated=True)).serve()
    finally:
        shutil.rmtree(theirs, ignore_errors=True)


def test_a_dead_daemon_is_still_a_clear_error(tmp_path: Path):
    with pytest.raises(DaemonUnavailable):
        DeviceClient(tmp_path / "nobody-here", timeout=0.3).status(timeout=0.3)


# ---------------------------------------------------------------------------- registry answers
class _Fake(BaseHTTPRequestHandler):
    """Whatever sits at the registry's address and answers 201 with a made-up decision."""

    answer: bytes = b""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["content-length"]))
        self.send_response(201)
        self.send_header("content-type", "application/json")
        self.end_headers()
        self.wfile.write(self.answer)

    do_GET = do_POST

    def log_message(self, *args: object) -> None:
        pass


def test_a_fake_registry_cannot_make_the_kiosk_forget_a_packet_or_print_an_idcs(
    tmp_path: Path, template, photo
):
    identity = KioskIdentity.generate("KIOSK-FES-01")
    packet = build_packet(
        identity.kiosk_id,
        demographics(),
        [template("biden__biden.jpg")],
        photo("biden__biden.jpg"),
        **evidence(),
    )
    forged = EnrolmentStatus(
        packet_id=packet.packet_id,
        kiosk_id=identity.kiosk_id,
        receipt_number="RNP-FAKE0-00000",
        status="issued",
        idcs="2345678901",
        message="ok",
        received_at=datetime.now(UTC),
        updated_at=datetime.now(UTC),
        signed_at=int(time.time()),
        signature=base64.b64encode(b"\1" * 64).decode(),
    )
    _Fake.answer = forged.model_dump_json().encode()
    server = HTTPServer(("127.0.0.1", 0), _Fake)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    outbox = Outbox(tmp_path / "o.db", Outbox.load_key(tmp_path / "o.key"))
    entry = outbox.put(packet)
    client = CentralClient(
        f"http://127.0.0.1:{server.server_port}", identity, PACKET_PUB, SIGNING_PUB, retries=0
    )
    worker = SyncWorker(outbox, client, backoff=0.01)
    assert worker.round() == 1
    e = outbox.get(entry.packet_id)
    assert e is not None and e.state == "queued" and e.idcs is None
    assert e.last_error is not None and e.last_error.startswith("answer_not_authentic")
    assert outbox.due(10, now=datetime(2100, 1, 1, tzinfo=UTC))[0][3] is not None  # content kept
    server.shutdown()


@pytest.mark.slow
def test_https_is_required_except_to_this_machine(tmp_path: Path):
    ident = KioskIdentity.generate("KIOSK-FES-01")
    for url in ("http://registry.example.org", "http://10.0.0.5:8000", "ftp://127.0.0.1"):
        with pytest.raises(ConfigError, match="https"):
            CentralClient(url, ident, PACKET_PUB, SIGNING_PUB)
    for url in ("https://registry.example.org", "http://127.0.0.1:8000", "http://[::1]:80"):
        CentralClient(url, ident, PACKET_PUB, SIGNING_PUB).close()
    key = tmp_path / "k.pem"
    ident.save(key)
    r = run(
        str(BIN / "kiosk"),
        "sync",
        "--kiosk-id",
        ident.kiosk_id,
        "--key",
        str(key),
        "--central",
        "http://registry.example.org",
        "--registry-key",
        base64.b64encode(PACKET_PUB).decode(),
        "--registry-signing-key",
        base64.b64encode(SIGNING_PUB).decode(),
        "--data-dir",
        str(tmp_path / "data"),
    )
    assert r.returncode == 2 and "https is required" in r.stderr


# ---------------------------------------------------------------------------- operators
@pytest.mark.slow
def test_pin_lockouts_survive_a_restart_are_shown_and_a_supervisor_lifts_them(tmp_path: Path):
    ops = Operators(tmp_path / "operators.json", tmp_path / "data")
    ops.add("op-01", "operator", "2468")
    ops.add("op-02", "operator", "1357")
    ops.add("sup-01", "supervisor", "135790")
    ops.add("op-01", "operator", "2468")
    outbox = Outbox(tmp_path / "o.db", Outbox.load_key(tmp_path / "o.key"))
    session = EnrolmentSession(
        KioskSettings("KIOSK-FES-01"), DeviceClient(tmp_path / "none", timeout=0.2), outbox, ops
    )
    session.start()
    session.choose_language("fr")
    session.step = Step.FINGERS  # (straight to where an agent's PIN is asked)
    codes = []
    for _ in range(6):
        with pytest.raises(StepError) as err:
            session.finger_exception("amputated", "op-01", "0000")
        codes.append(err.value.code)
        assert session.last_error == err.value.code  # shown to the agent, every time
    assert codes == ["operator_denied"] * 4 + ["operator_locked"] * 2
    restarted = Operators(tmp_path / "operators.json", tmp_path / "data")
    with pytest.raises(StepError, match="operator_locked"):
        restarted.authenticate("op-01", "2468", "operator")  # even with the right PIN
    assert stat.S_IMODE((tmp_path / "data" / "lockouts.json").stat().st_mode) == 0o600
    with pytest.raises(StepError, match="operator_denied"):
        restarted.unlock_by("sup-01", "999999", "op-01")
    with pytest.raises(StepError, match="supervisor_needed"):
        restarted.unlock_by("op-02", "1357", "op-01")  # an operator cannot
    restarted.unlock_by("sup-01", "135790", "op-01")
    assert restarted.authenticate("op-01", "2468", "operator") == "operator"
    for _ in range(5):
        with pytest.raises(StepError):
            restarted.authenticate("op-01", "1111", "operator")
    cli = run(
        str(BIN / "kiosk"),
        "operator-unlock",
        "op-01",
        "--operators",
        str(tmp_path / "operators.json"),
        "--data-dir",
        str(tmp_path / "data"),
    )
    assert cli.returncode == 0, cli.stderr
    assert Operators(tmp_path / "operators.json", tmp_path / "data").locked("op-01") is False


# ---------------------------------------------------------------------------- the UI's guards
@pytest.fixture
def ui(tmp_path: Path) -> Iterator[tuple[Kiosk, TestClient]]:
    ops = Operators(tmp_path / "operators.json", tmp_path)
    ops.add("sup-01", "supervisor", "135790")
    ops.add("op-01", "operator", "2468")
    outbox = Outbox(tmp_path / "o.db", Outbox.load_key(tmp_path / "o.key"))
    devices = DeviceClient(tmp_path / "none", timeout=0.2)
    kiosk = Kiosk(
        EnrolmentSession(KioskSettings("KIOSK-FES-01"), devices, outbox, ops), outbox, None, devices
    )
    with TestClient(create_app(kiosk), base_url="http://127.0.0.1:8080") as client:
        yield kiosk, client


def _csrf(page: str) -> str:
    marker = 'name="csrf" value="'
    start = page.index(marker) + len(marker)
    return page[start : page.index('"', start)]


def test_the_ui_answers_loopback_hosts_only(ui):
    _, client = ui
    assert client.get("/", headers={"host": "evil.example:8080"}).status_code == 400
    assert client.get("/health", headers={"host": "192.168.1.5"}).status_code == 400
    assert client.get("/", headers={"host": "localhost:8080"}).status_code == 200


def test_posts_need_the_page_token_and_a_same_origin(ui):
    kiosk, client = ui
    page = client.get("/")
    assert page.status_code == 200 and COOKIE in page.cookies
    token = _csrf(page.text)
    assert client.post("/start", data={}).status_code == 403  # no token
    assert client.post("/start", data={"csrf": "0" * 64}).status_code == 403
    evil = {"origin": "http://evil.example"}
    assert client.post("/start", data={"csrf": token}, headers=evil).status_code == 403
    cross = {"sec-fetch-site": "cross-site"}
    assert client.post("/start", data={"csrf": token}, headers=cross).status_code == 403
    assert kiosk.session.step == Step.WELCOME  # none of those did anything
    ok = client.post(
        "/start",
        data={"csrf": token},
        headers={"origin": "http://127.0.0.1:8080"},
        follow_redirects=False,
    )
    assert ok.status_code == 303 and kiosk.session.step == Step.LANGUAGE


def test_the_session_belongs_to_the_browser_that_started_it(ui):
    kiosk, client = ui
    token = _csrf(client.get("/").text)
    client.post("/start", data={"csrf": token})
    client.post("/language", data={"csrf": token, "language": "fr"})
    assert kiosk.session.step == Step.DOCUMENT
    other = TestClient(client.app, base_url="http://127.0.0.1:8080")  # another local program
    busy = other.get("/")
    assert busy.status_code == 409 and COOKIE not in busy.cookies
    for path in ("/state", "/agent", "/events"):
        assert other.get(path).status_code == 403
    assert other.post("/cancel", data={"csrf": token}).status_code == 403  # a stolen token
    assert kiosk.session.step == Step.DOCUMENT
    client.post("/cancel", data={"csrf": token})  # back at the welcome screen: it is free
    taken = other.get("/")
    assert taken.status_code == 200 and COOKIE in taken.cookies
    assert client.get("/state").status_code == 403  # and the first browser lost it


def test_the_agent_console_is_behind_a_shift_and_requeues_with_a_supervisor(ui, template, photo):
    """The console shows nothing before an agent signs in (a wrong PIN says so); an agent
    without the supervisor role needs a supervisor's PIN to requeue, with a reason, which the
    work log keeps; a supervisor on duty needs none."""
    kiosk, client = ui
    packet = build_packet(
        "KIOSK-FES-01", demographics(), [template("biden__biden.jpg")], photo("biden__biden.jpg")
    )
    entry = kiosk.outbox.put(packet)
    kiosk.outbox.refused(str(entry.packet_id), "capture_policy: capture_missing")
    token = _csrf(client.get("/").text)
    page = client.get("/agent")
    assert 'id="signin-form"' in page.text and entry.receipt_number not in page.text
    page = client.post("/agent/signin", data={"csrf": token, "operator_id": "op-01", "pin": "1111"})
    said = html.unescape(page.text)  # (the redirect was followed)
    assert "Identifiant ou code PIN d'agent incorrect." in said
    assert "L'agent ressaisit son code." in said and kiosk.session.on_duty is None
    client.post("/agent/signin", data={"csrf": token, "operator_id": "op-01", "pin": "2468"})
    assert kiosk.session.on_duty is not None and kiosk.session.on_duty.operator_id == "op-01"
    page = client.get("/agent")
    assert entry.receipt_number in page.text
    assert "capture evidence refused" in page.text.lower() or "preuves" in page.text
    why = {"csrf": token, "reason": "policy fixed at the registry"}
    page = client.post("/agent/requeue", data=why)
    assert "Un superviseur doit autoriser" in page.text  # the agent on duty is not one
    client.post("/agent/requeue", data={**why, "operator_id": "sup-01", "pin": "0000"})
    assert kiosk.outbox.get(entry.packet_id).state == "refused"  # type: ignore[union-attr]
    client.post("/agent/requeue", data={**why, "operator_id": "sup-01", "pin": "135790"})
    assert kiosk.outbox.get(entry.packet_id).state == "queued"  # type: ignore[union-attr]
    today = kiosk.outbox.today(ZoneInfo("Africa/Casablanca"))
    assert today["sup-01"] == {"requeue": 1} and today["-"] == {"enrolment": 1}
    kiosk.outbox.refused(str(entry.packet_id), "capture_policy: capture_missing")
    client.post("/agent/signout", data={"csrf": token})
    assert 'id="signin-form"' in client.get("/agent").text
    client.post("/agent/signin", data={"csrf": token, "operator_id": "sup-01", "pin": "135790"})
    client.post("/agent/requeue", data=why)
    assert kiosk.outbox.get(entry.packet_id).state == "queued"  # type: ignore[union-attr]


def test_the_agent_screen_reveals_only_for_a_duplicate_receipt(ui, template, photo):
    """A receipt that is not a duplicate of this kiosk gets a clear refusal (no face is
    captured); on a duplicate's receipt a wrong PIN is refused before the camera is used."""
    kiosk, client = ui
    packet = build_packet(
        "KIOSK-FES-01", demographics(), [template("biden__biden.jpg")], photo("biden__biden.jpg")
    )
    entry = kiosk.outbox.put(packet)
    token = _csrf(client.get("/").text)
    client.post("/agent/signin", data={"csrf": token, "operator_id": "op-01", "pin": "2468"})
    form = {
        "csrf": token,
        "receipt": entry.receipt_number,
        "operator_id": "sup-01",
        "pin": "135790",
    }
    page = client.post("/agent/reveal", data=form, follow_redirects=True)
    assert "not a duplicate enrolment" in page.text or "pas un enrôlement en double" in page.text
    assert 'id="revealed-idcs"' not in page.text
    now = datetime.now(UTC)
    duplicate = EnrolmentStatus(
        packet_id=entry.packet_id,
        kiosk_id="KIOSK-FES-01",
        receipt_number=entry.receipt_number,
        status="duplicate",
        message="",
        received_at=now,
        updated_at=now,
        signed_at=0,
    )
    kiosk.outbox.acknowledged(str(entry.packet_id), duplicate, 60)
    page = client.post("/agent/reveal", data={**form, "pin": "0000"}, follow_redirects=True)
    assert kiosk.session.last_error == "operator_denied"  # refused before the camera


# ---------------------------------------------------------------------------- key files
@pytest.mark.slow
def test_keys_are_written_0600_and_loose_ones_refused(tmp_path: Path):
    loose = tmp_path / "kiosk.pem"
    loose.write_text("old")
    os.chmod(loose, 0o644)
    r = run(str(BIN / "kiosk"), "keygen", "KIOSK-FES-01", "--out", str(loose))
    assert r.returncode == 0 and stat.S_IMODE(loose.stat().st_mode) == 0o600
    for cmd in ("packet-keygen", "signing-keygen"):
        f = tmp_path / f"{cmd}.key"
        f.write_text("old")
        os.chmod(f, 0o644)
        assert run(str(BIN / "central-api"), cmd, "--out", str(f)).returncode == 0
        assert stat.S_IMODE(f.stat().st_mode) == 0o600
    os.chmod(loose, 0o640)
    with pytest.raises(ConfigError, match="chmod 600"):
        KioskIdentity.load("KIOSK-FES-01", loose)
    data_key = tmp_path / "data.key"
    data_key.write_text(base64.b64encode(os.urandom(32)).decode())
    os.chmod(data_key, 0o644)
    served = run(
        str(BIN / "central-api"),
        "serve",
        "--database-url",
        f"sqlite:///{tmp_path / 'c.db'}",
        env={"CENTRAL_DATA_KEY_FILE": str(data_key)},
    )
    assert served.returncode == 2 and "chmod 600" in served.stderr
    from central_api.db import make_engine, migrate

    migrate(f"sqlite:///{tmp_path / 'registry.db'}")
    make_engine(f"sqlite:///{tmp_path / 'other.db'}").dispose()
    outbox = Outbox(tmp_path / "kiosk" / "outbox.db", Outbox.load_key(tmp_path / "kiosk" / "k"))
    outbox.close()
    assert stat.S_IMODE((tmp_path / "kiosk" / "k").stat().st_mode) == 0o600
    os.chmod(tmp_path / "kiosk" / "k", 0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        Outbox.load_key(tmp_path / "kiosk" / "k")
    for f in ("registry.db", "other.db", "kiosk/outbox.db"):
        assert stat.S_IMODE((tmp_path / f).stat().st_mode) == 0o600, f


def test_every_problem_an_agent_can_see_has_a_message_in_every_language():
    """The agent screen shows ``agent.problem.<code>`` for a refused or stuck packet: every
    registry error code and every local one needs it in each of the four catalogues (nine
    codes had none, and the screen showed the bare key)."""
    catalogues = {
        p.stem: json.loads(p.read_text(encoding="utf-8"))
        for p in sorted((ROOT / "kiosk" / "locales").glob("*.json"))
    }
    assert set(catalogues) == {"ar", "en", "fr", "zgh"}
    keys = {lang: set(c) for lang, c in catalogues.items()}
    assert all(k == keys["en"] for k in keys.values()), "the catalogues differ in their keys"
    codes = [*ErrorCode, *LocalProblem]
    missing = [
        f"{lang}:{code}"
        for lang, c in catalogues.items()
        for code in codes
        if not c.get(f"agent.problem.{code}", "").strip()
    ]
    assert not missing, missing


def test_every_problem_a_citizen_can_see_has_a_message_and_a_next_step_in_every_language():
    """The kiosk shows ``error.<code>`` and ``next.<code>``; codes without them showed the
    generic sentence (``bad_reason``, ``nothing_to_override``, a device's unforeseen code)."""
    catalogues = {
        p.stem: json.loads(p.read_text(encoding="utf-8"))
        for p in sorted((ROOT / "kiosk" / "locales").glob("*.json"))
    }
    missing = [
        f"{lang}:{kind}.{code}"
        for lang, c in catalogues.items()
        for code in Problem
        for kind in ("error", "next")
        if not c.get(f"{kind}.{code}", "").strip()
    ]
    assert not missing, missing
    assert Problem.from_device("card", "no_card") is Problem.CARD_NO_CARD
    assert Problem.from_device("face", "face_timeout") is Problem.FACE_TIMEOUT
    assert Problem.from_device("finger", "something_new") is Problem.DEVICE_ERROR
