"""The kiosk against real parts: device daemon over ZeroMQ (simulated devices, emulated card
through pcscd + vpcd), a registry in its own process, the SQLite outbox, kill -9."""

from __future__ import annotations

import base64
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from helpers import (
    PACKET_PUB,
    SIGNING_PUB,
    count,
    demographics,
    evidence,
    free_port,
    registry_cli,
    registry_env,
    serve_daemon,
    serve_registry,
)

from devices.bus import DeviceClient, DeviceError
from devices.daemon import DaemonConfig, DeviceDaemon
from devices.icao.mrz import td1
from devices.simulation.fingerprint import SimulatedFingerprintReader
from kiosk.client import KioskIdentity, build_packet
from kiosk.outbox import Outbox, OutboxError, SyncWorker
from kiosk.session import EnrolmentSession, KioskSettings, Operators, Step, StepError
from kiosk.web import assemble

ROOT = Path(__file__).resolve().parents[1]
KIOSK_ID = "KIOSK-DEMO-01"
MRZ = td1("AB123456", "El Amrani", "Youssef", "880412", "M", "341231")
KEY = ("AB123456", "1988-04-12", "2034-12-31")

pytestmark = pytest.mark.slow  # server and device processes


@pytest.fixture(scope="module")
def devices(pcscd, tmp_path_factory) -> Iterator[tuple[DeviceDaemon, DeviceClient]]:
    """A device daemon with simulated devices, served from a thread of this process."""
    sockets = tmp_path_factory.mktemp("devices")
    with serve_daemon(DaemonConfig(socket_dir=sockets, simulated=True)) as served:
        yield served


@pytest.fixture(scope="module")
def trust(devices, tmp_path_factory) -> Path:
    """The kiosk's trust folder, holding the simulated documents' CSCA."""
    folder = tmp_path_factory.mktemp("trust")
    pem = devices[1].call("simulate.csca").result["pem"]
    (folder / "csca.pem").write_text(str(pem))
    return folder


@pytest.fixture(scope="module")
def registry(tmp_path_factory) -> Iterator[tuple[str, tuple[bytes, bytes], KioskIdentity, Path]]:
    """A registry (``central-api serve``, SQLite) in its own process."""
    work = tmp_path_factory.mktemp("central")
    identity = KioskIdentity.generate(KIOSK_ID)
    env = registry_env(f"sqlite:///{work / 'central.db'}")
    registry_cli("migrate", env=env)
    registry_cli("kiosk-add", KIOSK_ID, "--public-key", identity.public_key_b64(), env=env)
    with serve_registry(env, work / "central.log") as (_, url):
        yield url, (PACKET_PUB, SIGNING_PUB), identity, work


@pytest.fixture
def kiosk(devices, registry, trust, tmp_path):  # type: ignore[no-untyped-def]
    _, client = devices
    url, registry_keys, identity, _ = registry
    operators = Operators(tmp_path / "operators.json")
    operators.add("op-01", "operator", "2468")
    operators.add("sup-01", "supervisor", "135790")
    k = assemble(
        KioskSettings(KIOSK_ID, trust_dir=trust),
        tmp_path / "kiosk",
        url,
        registry_keys,
        identity,
        client,
        operators,
    )
    yield k
    k.worker.stop()
    k.outbox.close()


def present(client: DeviceClient, faces_dir: Path, photo: str, card_photo: str, **kw) -> None:  # type: ignore[no-untyped-def]
    args = {
        "photo": str(faces_dir / photo),
        "finger_person": kw.pop("finger_person", 4242),
        "card": {
            "mrz": kw.pop("mrz", MRZ),
            "can": kw.pop("can", "314159"),
            "full_name": "EL AMRANI YOUSSEF",
            "photo": str(faces_dir / card_photo),
        },
        **kw,
    }
    client.call("simulate.citizen", args, timeout=30)


def read_card(session: EnrolmentSession, key: tuple[str, str, str] = KEY) -> None:
    for _ in range(40):  # pcscd notices the inserted card within a poll period
        try:
            session.read_card(*key)
            return
        except StepError as exc:
            if exc.code != "card_no_card":
                raise
            time.sleep(0.25)
    raise AssertionError("the card never showed up")


def fingers(session: EnrolmentSession) -> list[str]:
    outcomes = []
    while session.step == Step.FINGERS:
        outcomes.append(session.capture_finger())
    return outcomes


def wait_final(outbox: Outbox, packet_id, timeout: float = 300):  # type: ignore[no-untyped-def]
    """The packet's final status; the registry makes its templates from the ten finger images
    first (a new extraction process loads LEADER: tens of seconds on this machine)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        e = outbox.get(packet_id)
        if e is not None and e.state == "final":
            return e
        time.sleep(0.2)
    raise AssertionError(f"no decision for {packet_id}: {outbox.get(packet_id)}")


def test_a_full_enrolment_reaches_the_registry_sealed_with_ten_fingers(
    kiosk, devices, registry, faces_dir
):
    _, client = devices
    present(client, faces_dir, "obama__obama.jpg", "obama__obama2.jpg")
    s = kiosk.session
    s.start()
    s.choose_language("ar")
    read_card(s)
    assert s.step == Step.FACE and s.data.fields["surname_latin"] == "El Amrani"
    # the simulated CNIE is opened with PACE and proves its chip genuine; the packet says so
    assert s.data.chip_checks == {
        "access_control": "PACE-ECDH-GM-AES-128",
        "chip_authentication": "passed",
        "active_authentication": "passed",
    }
    s.capture_face()
    assert s.step == Step.FINGERS and s.data.face_similarity is not None
    assert set(fingers(s)) == {"accepted"}
    assert s.step == Step.REVIEW and len(s.review()["fingers_captured"]) == 10
    entry = s.submit("12 Rue Talaa Kebira, Fès", "Fès", "العمراني", "يوسف")
    assert s.step == Step.RECEIPT and s.data.face_template is None  # nothing biometric kept
    final = wait_final(kiosk.outbox, entry.packet_id)
    assert final.status == "issued" and final.idcs and len(final.idcs) == 10
    assert final.receipt_number.startswith("RNP-")
    # acknowledged: the packet's content is gone from the kiosk; it was never in clear text
    db = kiosk.outbox.engine.url.database
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT payload FROM outbox").fetchone() == (None,)
    raw = b"".join(p.read_bytes() for p in Path(db).parent.glob("outbox.db*"))
    assert b"Amrani" not in raw and b"AMRANI" not in raw
    _, _, _, work = registry
    url = f"sqlite:///{work / 'central.db'}"
    assert count(url, "enrolments", f"packet_id = '{entry.packet_id.hex}'") == 1
    assert count(url, "enrolments", "capture IS NOT NULL") >= 1


def test_wrong_card_key_missing_finger_and_the_same_finger_twice(kiosk, devices, faces_dir):
    daemon, client = devices
    present(
        client, faces_dir, "biden__biden.jpg", "biden__biden2.jpg", missing=[7], finger_person=77
    )
    s = kiosk.session
    s.start()
    s.choose_language("fr")
    with pytest.raises(StepError) as err:
        read_card(s, ("AB123457", KEY[1], KEY[2]))
    assert err.value.code == "card_access_denied" and s.step == Step.DOCUMENT
    with pytest.raises(StepError, match=r"card_bad_birth"):  # the wrong field is named
        s.read_card("AB123456", "1988-13-45", KEY[2])
    assert s.data.typed["birth"] == "1988-13-45"  # and what was typed is kept for the form
    # the card access number on the card's front opens it too (PACE-CAN)
    with pytest.raises(StepError, match=r"card_bad_can"):
        s.read_card_can("31415")
    with pytest.raises(StepError) as err:
        s.read_card_can("٣١٤١٥٠")  # Arabic-Indic digits are read as digits; this CAN is wrong
    assert err.value.code == "card_access_denied" and s.data.typed == {"can": "٣١٤١٥٠"}
    s.read_card_can("314 159")
    assert s.step == Step.FACE and s.data.chip_checks["access_control"].startswith("PACE")
    s.back()
    read_card(s)
    s.capture_face()
    # position 3 answers with the finger already captured at position 2
    reader = daemon._reader
    assert isinstance(reader, SimulatedFingerprintReader)
    original = reader.finger_seed
    reader.finger_seed = lambda p: original(2 if p == 3 else p)  # type: ignore[method-assign]
    assert s.capture_finger() == "accepted"  # 2: right index
    assert s.capture_finger() == "retry" and s.last_error == "finger_same_as_before"
    reader.finger_seed = original  # type: ignore[method-assign]
    while s.next_finger != 7:
        assert s.capture_finger() == "accepted"
    with pytest.raises(StepError) as err:
        s.capture_finger()
    assert err.value.code == "finger_no_finger"
    with pytest.raises(StepError, match="operator_denied"):
        s.finger_exception("amputated", "op-01", "0000")
    s.finger_exception("amputated", "op-01", "2468")
    fingers(s)
    review = s.review()
    assert review["finger_exceptions"] == {7: "amputated"} and len(review["fingers_captured"]) == 9
    with pytest.raises(StepError) as err:
        s.submit("", "Fès")
    assert err.value.code == "review_invalid" and "address" in err.value.detail
    entry = s.submit("3 Derb Sidi Ahmed, Fès", "Fès")
    assert wait_final(kiosk.outbox, entry.packet_id).status in ("issued", "duplicate")


def test_cancel_and_idle_timeout_wipe_the_session(devices, trust, tmp_path, faces_dir):
    _, client = devices
    now = [0.0]
    outbox = Outbox(tmp_path / "o.db", Outbox.load_key(tmp_path / "o.key"))
    s = EnrolmentSession(
        KioskSettings(KIOSK_ID, idle_timeout=60, trust_dir=trust),
        client,
        outbox,
        Operators(tmp_path / "ops.json"),
        clock=lambda: now[0],
    )
    present(client, faces_dir, "tom_cruise__img1.jpg", "tom_cruise__img1.jpg")
    s.start()
    s.choose_language("en")
    read_card(s)
    s.capture_face()
    template = s.data.face_template
    assert template is not None and np.any(template)
    s.cancel()
    assert s.step == Step.WELCOME and s.data.face_template is None and not s.data.fields
    assert not np.any(template)  # overwritten, not just dropped
    s.start()
    now[0] += 59
    assert not s.expire_if_idle()
    now[0] += 2
    # the next person finds a neutral welcome: no error, no language of the one who left
    assert s.expire_if_idle() and s.step == Step.WELCOME and s.last_error is None
    assert s.language == "fr"
    assert outbox.counts() == {}


def test_no_document_needs_a_supervisor_and_is_recorded(kiosk, devices, faces_dir):
    _, client = devices
    present(client, faces_dir, "rose_leslie__img2.jpg", "rose_leslie__img2.jpg")
    s = kiosk.session
    s.start()
    s.choose_language("fr")
    fields = {
        "surname_latin": "Tazi",
        "given_names_latin": "Amina",
        "date_of_birth": "2001-02-03",
        "sex": "F",
    }
    with pytest.raises(StepError, match="supervisor_needed"):
        s.no_document(
            "birth_certificate", fields, "op-01", "2468", "no card", birth_certificate="123/2001"
        )
    with pytest.raises(StepError, match="witnesses_invalid"):
        s.no_document("witnesses", fields, "sup-01", "135790", "x", witnesses=["1", "1"])
    s.no_document(
        "birth_certificate", fields, "sup-01", "135790", "lost card", birth_certificate="123/2001"
    )
    assert s.step == Step.FACE
    assert [o.action for o in s.data.overrides] == ["no_document"]
    s.cancel()


def test_a_dead_device_daemon_is_a_clear_error_not_a_hang(tmp_path):
    nobody = DeviceClient(tmp_path / "no-daemon", timeout=0.5)
    outbox = Outbox(tmp_path / "o.db", Outbox.load_key(tmp_path / "o.key"))
    s = EnrolmentSession(KioskSettings(KIOSK_ID), nobody, outbox, Operators(tmp_path / "ops.json"))
    s.start()
    s.choose_language("fr")
    started = time.monotonic()
    with pytest.raises(StepError) as err:
        s.devices.timeout = 0.5
        s.read_card(*KEY)
    assert err.value.code in ("devices_unavailable", "card_daemon_unavailable")
    assert time.monotonic() - started < 35  # bounded by the call's timeout, never forever
    with pytest.raises(DeviceError):
        nobody.status(timeout=0.3)


def test_daemon_reports_unplugged_devices_and_busy_ones(devices):
    _, client = devices
    with client.subscribe("device.") as events:
        time.sleep(0.2)
        client.call("simulate.unplug", {"device": "fingerprint"})
        ev = events.next(5)
        assert ev is not None and ev[0] == "device.lost" and ev[1]["kind"] == "fingerprint"
        with pytest.raises(DeviceError) as err:
            client.capture_finger(1)
        assert err.value.code == "device_lost"
        state = {d["kind"]: d["state"] for d in client.status()["devices"]}
        assert state["fingerprint"] == "lost"
        client.call("simulate.unplug", {"device": "fingerprint", "plugged": True})
    with pytest.raises(DeviceError) as err:
        client.call("no.such.command")
    assert err.value.code == "unknown_command"


# ---------------------------------------------------------------------------- outbox
def _packets(template, photo, n: int):  # type: ignore[no-untyped-def]
    names = [
        "alex_lacamoire__img1.jpg",
        "biden__biden.jpg",
        "kit_harington__john1.jpeg",
        "obama__obama.jpg",
        "rose_leslie__img1.jpg",
        "tom_cruise__img1.jpg",
        "lin_manuel_miranda__img1.png",
    ]
    return [
        build_packet(
            KIOSK_ID,
            demographics(),
            [template(names[i % len(names)])],
            photo(names[i % len(names)]),
            **evidence(names[i % len(names)]),
        )
        for i in range(n)
    ]


def test_outbox_backs_off_while_the_registry_is_unreachable(tmp_path, template, photo):
    from kiosk.client import CentralClient

    outbox = Outbox(tmp_path / "o.db", Outbox.load_key(tmp_path / "o.key"))
    packet = _packets(template, photo, 1)[0]
    entry = outbox.put(packet)
    dead = CentralClient(
        f"http://127.0.0.1:{free_port()}",
        KioskIdentity.generate(KIOSK_ID),
        b"\1" * 32,
        b"\2" * 32,
        retries=0,
    )
    worker = SyncWorker(outbox, dead, backoff=10)
    assert worker.round() == 1 and worker.online is False
    e = outbox.get(entry.packet_id)
    assert e.state == "queued" and e.attempts == 1 and "unreachable" in e.last_error
    assert worker.round() == 0  # not due again before its backoff
    # putting the same packet again changes nothing; other content under its id is refused
    assert outbox.put(packet).receipt_number == entry.receipt_number
    other = packet.model_copy(update={"kiosk_id": "KIOSK-OTHER-02"})
    with pytest.raises(OutboxError, match="other content"):
        outbox.put(other)
    assert outbox.counts() == {"queued": 1}


def test_kill_9_at_any_moment_loses_nothing_and_sends_nothing_twice(
    registry, tmp_path, template, photo
):
    url, (registry_key, signing_key), identity, work = registry
    key_file = tmp_path / "kiosk.pem"
    identity.save(key_file)
    data = tmp_path / "kiosk"
    n = 14
    outbox = Outbox(data / "outbox.db", Outbox.load_key(data / "outbox.key"))
    packets = _packets(template, photo, n)
    for p in packets:
        outbox.put(p)
    outbox.close()
    cmd = [
        sys.executable,
        "-m",
        "kiosk.cli",
        "sync",
        "--kiosk-id",
        KIOSK_ID,
        "--key",
        str(key_file),
        "--central",
        url,
        "--registry-key",
        base64.b64encode(registry_key).decode(),
        "--registry-signing-key",
        base64.b64encode(signing_key).decode(),
        "--data-dir",
        str(data),
        "--backoff",
        "0.2",
        "--status-every",
        "0.3",
    ]
    rng = random.Random(9)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    for _ in range(6):  # start, let it work a random moment, kill -9
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(1.0, 2.5))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    out = subprocess.run(
        [*cmd, "--until-empty"], env=env, capture_output=True, text=True, timeout=180
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {"final": n}
    central = f"sqlite:///{work / 'central.db'}"
    ids = ",".join(f"'{p.packet_id.hex}'" for p in packets)
    assert count(central, "enrolments", f"packet_id IN ({ids})") == n  # each exactly once
    outbox = Outbox(data / "outbox.db", Outbox.load_key(data / "outbox.key"))
    issued = [
        outbox.get(p.packet_id).idcs for p in packets if outbox.get(p.packet_id).status == "issued"
    ]
    assert len(issued) == len(set(issued))  # no identifier twice
    issued_here = count(central, "enrolments", f"packet_id IN ({ids}) AND status = 'issued'")
    assert issued_here == len(issued)


def test_a_packet_is_on_disk_before_the_citizen_is_told(tmp_path, template, photo):
    """The child commits a packet and says so; killed -9 at that instant, the packet is there."""
    script = tmp_path / "child.py"
    script.write_text(
        "import sys\n"
        "from pathlib import Path\n"
        "from kiosk.outbox import Outbox\n"
        "from central_api.enrolment.schemas import EnrolmentPacket\n"
        "d = Path(sys.argv[1])\n"
        "o = Outbox(d / 'outbox.db', Outbox.load_key(d / 'outbox.key'))\n"
        "e = o.put(EnrolmentPacket.model_validate_json(sys.stdin.buffer.read()))\n"
        "print('SUBMITTED', e.receipt_number, flush=True)\n"
        "import time; time.sleep(60)\n"
    )
    packet = _packets(template, photo, 1)[0]
    proc = subprocess.Popen(
        [sys.executable, str(script), str(tmp_path / "k")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )
    proc.stdin.write(packet.model_dump_json().encode())
    proc.stdin.close()
    line = proc.stdout.readline().decode()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert line.startswith("SUBMITTED RNP-")
    outbox = Outbox(tmp_path / "k" / "outbox.db", Outbox.load_key(tmp_path / "k" / "outbox.key"))
    assert outbox.get(packet.packet_id).state == "queued"


def test_the_kiosk_verifies_the_chip_against_its_own_trust_folder(
    devices, registry, tmp_path, faces_dir
):
    """The daemon (simulating) trusts its own test CSCA and says "valid"; a kiosk whose trust
    folder does not hold that CSCA refuses the card all the same."""
    _, client = devices
    elsewhere = tmp_path / "trust"
    elsewhere.mkdir()
    from devices.simulation import emrtd

    (elsewhere / "other.pem").write_bytes(emrtd.DocumentPKI.create("FR").csca_pem())
    outbox = Outbox(tmp_path / "o.db", Outbox.load_key(tmp_path / "o.key"))
    for trust in (None, elsewhere):
        s = EnrolmentSession(
            KioskSettings(KIOSK_ID, trust_dir=trust), client, outbox, Operators(tmp_path / "ops")
        )
        present(client, faces_dir, "biden__biden.jpg", "biden__biden2.jpg")
        s.start()
        s.choose_language("fr")
        for _ in range(40):
            try:
                s.read_card(*KEY)
            except StepError as exc:
                if exc.code == "card_no_card":
                    time.sleep(0.25)
                    continue
                assert exc.code == "card_not_authentic" and "unknown_csca" in exc.detail
                break
        else:
            raise AssertionError("the card never showed up")
        assert s.step == Step.DOCUMENT and not s.data.fields
        read = client.read_document({"number": KEY[0], "birth": "880412", "expiry": "341231"})
        assert read.fields["passive_authentication"] == "valid"  # what the daemon claims
        assert {"DG1", "DG2", "SOD"} <= set(read.files)


def test_a_wrong_kiosk_clock_keeps_packets_due_and_a_supervisor_requeues_refused_ones(
    registry, tmp_path, template, photo, monkeypatch
):
    from kiosk.client import CentralClient

    url, keys, identity, _ = registry
    data = tmp_path / "kiosk"
    outbox = Outbox(data / "outbox.db", Outbox.load_key(data / "outbox.key"))
    good = _packets(template, photo, 1)[0]
    weak = build_packet(
        KIOSK_ID, demographics(), [template("biden__biden.jpg")], photo("biden__biden.jpg")
    )  # no capture evidence: refused for good
    e_good, e_weak = outbox.put(good), outbox.put(weak)
    worker = SyncWorker(outbox, CentralClient(url, identity, *keys, retries=0), backoff=0.01)
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + 3600)  # the kiosk's clock is an hour fast
    worker.round()
    e = outbox.get(e_good.packet_id)
    assert e.state == "queued" and e.last_error.startswith("clock_skew")  # due, not refused
    assert worker.clock_skew is not None and 3500 < worker.clock_skew < 3700
    assert outbox.get(e_weak.packet_id).state == "queued"  # refused for the clock: retryable
    monkeypatch.setattr(time, "time", real)  # NTP puts it right
    time.sleep(0.1)
    worker.round()
    assert outbox.get(e_good.packet_id).state in ("acked", "final")
    assert worker.clock_skew is None
    weak_entry = outbox.get(e_weak.packet_id)
    assert weak_entry.state == "refused" and weak_entry.last_error.startswith("capture_policy")
    outbox.close()
    cli = [sys.executable, "-m", "kiosk.cli", "requeue", "--data-dir", str(data)]
    listed = subprocess.run(cli, capture_output=True, text=True, timeout=60)
    assert weak_entry.receipt_number in listed.stdout and "capture_policy" in listed.stdout
    again = subprocess.run([*cli, "--all"], capture_output=True, text=True, timeout=60)
    assert again.returncode == 0 and "1 packet(s) queued again" in again.stdout
    outbox = Outbox(data / "outbox.db", Outbox.load_key(data / "outbox.key"))
    assert outbox.get(e_weak.packet_id).state == "queued"
