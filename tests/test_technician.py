"""Technicians: calibrations run by the device daemon on what lies in front of its devices
(simulated targets, with faults), kept with the technician's id; firmware configurations that
change only signed or in technician mode, and roll back; the kiosk's technician page behind a
technician's PIN (an agent's PIN does not open it, a technician's does not start a shift)."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi.testclient import TestClient
from helpers import FACES, serve_daemon

from devices import firmware
from devices.bus import DeviceClient
from devices.daemon import DaemonConfig, DeviceDaemon
from devices.exceptions import DeviceError
from kiosk.outbox import Outbox
from kiosk.session import EnrolmentSession, KioskSettings, Operators
from kiosk.web import Kiosk, create_app

TECH = "tech-01"


@pytest.fixture
def signer() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture
def station(
    tmp_path: Path, signer: Ed25519PrivateKey
) -> Iterator[tuple[DeviceDaemon, DeviceClient]]:
    """A simulated daemon whose trust folder names the registry's firmware signer."""
    trust = tmp_path / "trust"
    (trust / firmware.SIGNERS_FOLDER).mkdir(parents=True)
    pem = signer.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    (trust / firmware.SIGNERS_FOLDER / "registry.pem").write_bytes(pem)
    config = DaemonConfig(
        socket_dir=tmp_path / "sockets",
        simulated=True,
        trust_dir=trust,
        state_dir=tmp_path / "state",
    )
    with serve_daemon(config) as served:
        yield served


def calibrate(client: DeviceClient, device: str, procedure: str) -> dict[str, object]:
    args = {"device": device, "procedure": procedure, "technician": TECH}
    return dict(client.call("calibrate", args, timeout=60).result)


def show(client: DeviceClient, device: str, target: str, **params: object) -> None:
    client.call("simulate.target", {"device": device, "target": target, "params": params})


def test_calibrations_pass_fail_with_what_to_do_and_are_kept(station) -> None:
    _, client = station
    show(client, "camera", "grey_card")
    assert calibrate(client, "camera", "exposure_white_balance")["passed"] is True
    show(client, "camera", "grey_card", dim=0.5)  # the lamp is failing
    dim = calibrate(client, "camera", "exposure_white_balance")
    assert dim["passed"] is False and "dark" in str(dim["message"])
    show(client, "camera", "focus_chart", blur_sigma=3.0)  # the lens was knocked
    assert calibrate(client, "camera", "focus")["passed"] is False
    show(client, "fingerprint", "blank_platen", dirt=3)
    platen = calibrate(client, "fingerprint", "platen")
    assert platen["passed"] is False and "dirty" in str(platen["message"])
    show(client, "fingerprint", "blank_platen")
    assert calibrate(client, "fingerprint", "platen")["passed"] is True
    show(client, "fingerprint", "ridge_target", dpi_actual=450.0)  # declares 500 dpi
    wrong = calibrate(client, "fingerprint", "resolution")
    assert wrong["passed"] is False
    assert abs(float(wrong["measured"]["dpi_x"]) - 450) < 5  # type: ignore[index]
    show(client, "fingerprint", "ridge_target")
    assert calibrate(client, "fingerprint", "resolution")["passed"] is True
    # a calibration names its technician, and only runs the device's own procedures
    with pytest.raises(DeviceError) as err:
        client.call("calibrate", {"device": "camera", "procedure": "focus"})
    assert err.value.code == "bad_request"
    with pytest.raises(DeviceError) as err:
        client.call("calibrate", {"device": "camera", "procedure": "platen", "technician": TECH})
    assert err.value.code == "bad_request"
    kept = client.call("history", {"limit": 20}).result["calibrations"]
    assert [c["passed"] for c in kept] == [True, False, True, False, False, False, True]
    assert {c["technician"] for c in kept} == {TECH}
    assert kept[1]["procedure"] == "resolution" and "dpi_x" in kept[1]["measured"]


def test_a_platen_capture_needs_a_reader_that_gives_one(station) -> None:
    """The simulated reader with a person's finger on it (no target) cannot show its empty
    platen: the calibration says so instead of measuring a finger."""
    _, client = station
    person = {"photo": str(FACES / "obama__obama.jpg"), "finger_person": 3}
    client.call("simulate.citizen", person, timeout=60)
    with pytest.raises(DeviceError) as err:
        calibrate(client, "fingerprint", "platen")
    assert err.value.code == "unsupported"


def _with_min_quality(value: int) -> str:
    text = firmware.by_model("simulated-fingerprint").model_dump()
    assert text["capture"]["min_quality"] != value
    shipped = firmware.shipped()
    path = next(p for p in shipped if p.name.startswith("simulated-fingerprint"))
    original = path.read_text(encoding="utf-8")
    changed = re.sub(r"min_quality: \d+", f"min_quality: {value}", original)
    assert changed != original
    return changed


def test_firmware_changes_are_signed_or_made_by_a_technician_and_roll_back(
    station, signer: Ed25519PrivateKey
) -> None:
    daemon, client = station
    model = "simulated-fingerprint"
    text = _with_min_quality(45)
    who = {"who": TECH, "why": "fewer re-captures at this centre"}
    with pytest.raises(DeviceError) as err:  # unsigned, outside technician mode
        client.call("firmware.set", {"text": text, **who})
    assert err.value.code == "firmware_unsigned"
    forged = base64.b64encode(Ed25519PrivateKey.generate().sign(text.encode())).decode()
    with pytest.raises(DeviceError) as err:
        client.call("firmware.set", {"text": text, "signature": forged, **who})
    assert err.value.code == "firmware_bad_signature"
    signature = base64.b64encode(firmware.sign(text.encode(), signer)).decode()
    assert client.call("firmware.set", {"text": text, "signature": signature, **who}).result == {
        "version": 1
    }
    assert daemon.finger_config.capture.min_quality == 45  # in force at once
    status = {d["kind"]: d for d in client.status()["devices"]}  # type: ignore[union-attr,index]
    assert str(status["fingerprint"]["config"]).endswith("v1")
    active = client.call("firmware.active", {"model": model}).result
    assert active["version"] == 1 and "min_quality: 45" in str(active["text"])
    # a technician on site may change it unsigned: recorded as such
    loose = _with_min_quality(25)
    answer = client.call("firmware.set", {"text": loose, "technician_mode": True, **who})
    assert answer.result["version"] == 2 and daemon.finger_config.capture.min_quality == 25
    diff = str(client.call("firmware.diff", {"model": model}).result["diff"])
    assert "-    min_quality: 45" in diff and "+    min_quality: 25" in diff
    back = client.call("firmware.rollback", {"model": model, "who": TECH, "why": "too lax"})
    assert back.result["version"] == 3 and daemon.finger_config.capture.min_quality == 45
    listed = {c["model"]: c for c in client.call("firmware.list").result["configs"]}
    history = listed[model]["history"]
    assert [h["action"] for h in history][-3:] == ["set", "set", "rollback"]
    assert history[-2]["signed_by"] is None and history[-2]["technician_mode"] is True
    assert history[-3]["signed_by"] and history[-1]["rollback_to"] == 1
    events = client.call("history", {"device": model}).result["events"]
    assert [e["kind"] for e in events] == ["firmware"] * 3


def test_device_events_are_kept(station) -> None:
    _, client = station
    client.call("simulate.unplug", {"device": "fingerprint"})
    client.call("simulate.unplug", {"device": "fingerprint", "plugged": True})
    events = client.call("history").result["events"]
    assert [e["kind"] for e in events[:2]] == ["connected", "lost"]
    assert all(e["device_id"] == "simulated-fingerprint:SIM-0001" for e in events[:2])


# ---------------------------------------------------------------------------- the page
@pytest.fixture
def page(station, tmp_path: Path) -> Iterator[tuple[DeviceClient, TestClient]]:
    _, devices = station
    ops = Operators(tmp_path / "operators.json", tmp_path)
    ops.add(TECH, "technician", "975310")
    ops.add("op-01", "operator", "2468")
    outbox = Outbox(tmp_path / "o.db", Outbox.load_key(tmp_path / "o.key"))
    session = EnrolmentSession(KioskSettings("KIOSK-FES-01"), devices, outbox, ops)
    kiosk = Kiosk(session, outbox, None, devices)
    with TestClient(create_app(kiosk), base_url="http://127.0.0.1:8080") as client:
        yield devices, client


def _csrf(html: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)  # type: ignore[union-attr]


def _notice(html: str) -> str | None:
    found = re.search(r'data-code="([^"]+)"', html)
    return found.group(1) if found else None


def test_the_technician_page_is_a_technicians_and_tests_calibrates_and_changes_firmware(
    page,
) -> None:
    devices, client = page
    client.get("/")  # the kiosk's screen takes the session
    first = client.get("/technician")
    assert 'id="tech-signin-form"' in first.text and 'id="device-table"' not in first.text
    token = _csrf(first.text)
    agent = client.post(
        "/technician/signin", data={"csrf": token, "operator_id": "op-01", "pin": "2468"}
    )
    assert _notice(agent.text) == "error.technician_needed"
    # a technician's PIN opens no shift (no enrolment, no override)
    shift = client.post("/agent/signin", data={"csrf": token, "operator_id": TECH, "pin": "975310"})
    assert 'data-code="error.agent_needed"' in shift.text
    signed = client.post(
        "/technician/signin", data={"csrf": token, "operator_id": TECH, "pin": "975310"}
    )
    assert _notice(signed.text) == "technician.signed_in"
    rows = re.findall(r'data-kind="(\w+)"', signed.text)
    assert rows[:3] == ["camera", "fingerprint", "card_reader"]
    # a test capture of the camera: the frame and its quality read-out, once
    devices.call("simulate.citizen", {"photo": str(FACES / "obama__obama.jpg")}, timeout=60)
    tested = client.post("/technician/test/face", data={"csrf": token})
    assert 'id="test-image" ' not in tested.text and "data:image/jpeg;base64," in tested.text
    assert re.search(r'id="test-metrics"', tested.text) and "sharpness" in tested.text
    assert "data:image/jpeg" not in client.get("/technician").text  # shown once
    finger = client.post("/technician/test/finger", data={"csrf": token, "position": "2"})
    minutiae = re.search(r'id="test-minutiae">(\d+)<', finger.text)
    assert minutiae and int(minutiae.group(1)) > 10
    # a dirty platen: the calibration fails and says what to do
    show(devices, "fingerprint", "blank_platen", dirt=3)
    failed = client.post(
        "/technician/calibrate",
        data={"csrf": token, "device": "fingerprint", "procedure": "platen"},
    )
    assert 'data-passed="no"' in failed.text and "clean the glass" in failed.text
    assert f">{TECH}<" in failed.text  # the history table names who ran it
    # an unsigned configuration from the page (technician mode), then a roll back
    upload = {"config": ("fp.yaml", _with_min_quality(50).encode(), "application/x-yaml")}
    changed = client.post(
        "/technician/firmware/set", data={"csrf": token, "why": "trial"}, files=upload
    )
    assert _notice(changed.text) == "technician.firmware_changed"
    assert (
        devices.call("firmware.active", {"model": "simulated-fingerprint"}).result["version"] == 1
    )
    rolled = client.post(
        "/technician/firmware/rollback",
        data={"csrf": token, "model": "simulated-fingerprint", "why": "trial over"},
    )
    assert _notice(rolled.text) == "technician.firmware_changed"
    active = devices.call("firmware.active", {"model": "simulated-fingerprint"}).result
    assert active["version"] == 2 and "min_quality: 30" in str(active["text"])
    client.post("/technician/signout", data={"csrf": token})
    assert 'id="tech-signin-form"' in client.get("/technician").text


def test_the_registry_signs_a_configuration_a_kiosk_then_accepts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``central-api firmware-sign FILE`` (the registry's signing key) writes FILE.sig and
    the public key kiosks trust; ``devices firmware set FILE`` accepts it outside technician
    mode, and refuses the file once altered."""
    from central_api import cli as central_cli
    from devices import cli as devices_cli

    key = Ed25519PrivateKey.generate()
    monkeypatch.setenv("CENTRAL_SIGNING_KEY", base64.b64encode(key.private_bytes_raw()).decode())
    config = tmp_path / "simulated-fingerprint.yaml"
    config.write_text(_with_min_quality(40), encoding="utf-8")
    signers = tmp_path / "trust" / firmware.SIGNERS_FOLDER
    signers.mkdir(parents=True)
    public = signers / "registry.pem"
    assert central_cli.main(["firmware-sign", str(config), "--public-pem", str(public)]) == 0
    state = ["--state-dir", str(tmp_path / "state"), "--trust", str(tmp_path / "trust")]
    why = ["--who", TECH, "--why", "the registry's new threshold"]
    assert devices_cli.main(["firmware", "set", str(config), *why, *state]) == 0
    store = firmware.FirmwareStore(tmp_path / "state" / firmware.FIRMWARE_FOLDER)
    assert store.active("simulated-fingerprint").capture.min_quality == 40  # type: ignore[union-attr]
    assert store.history("simulated-fingerprint")[-1].signed_by is not None
    config.write_text(_with_min_quality(20), encoding="utf-8")  # altered after signing
    capsys.readouterr()
    assert devices_cli.main(["firmware", "set", str(config), *why, *state]) != 0
    assert "firmware_bad_signature" in capsys.readouterr().err


def test_devices_status_lists_every_device_for_a_technician(
    station, capsys: pytest.CaptureFixture[str]
) -> None:
    from devices import cli as devices_cli

    daemon, _ = station
    socket_dir = str(daemon.config.socket_dir)
    assert devices_cli.main(["status", "--socket-dir", socket_dir]) in (0, 1)
    out = capsys.readouterr().out
    lines = {line.split()[0]: line for line in out.splitlines() if line and line[0] != " "}
    assert {"camera", "fingerprint", "card_reader"} <= set(lines)
    assert "simulated" in lines["fingerprint"] and "serial SIM-0001" in lines["fingerprint"]
    assert "config simulated-fingerprint 1.0 v0" in out
    assert devices_cli.main(["status", "--socket-dir", socket_dir, "--json"]) in (0, 1)
    answer = json.loads(capsys.readouterr().out)
    assert {d["kind"] for d in answer["devices"]} == {"camera", "fingerprint", "card_reader"}
