"""Firmware configurations: the calibration sections of the schema, and the kiosk's store of
configurations (every version kept, changes signed or made in technician mode, diffs,
rollbacks, the change log) with its technicians' command line."""

from __future__ import annotations

import argparse
import base64
import json
import os
import stat
import threading
from pathlib import Path

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from devices import firmware, technician_cli
from devices.bus import default_state_dir
from devices.firmware import (
    CameraConfig,
    CardReaderConfig,
    FingerprintConfig,
    FirmwareConfigError,
    FirmwareStore,
)

MODEL = "simulated-camera"


def _shipped_text(model: str = MODEL) -> str:
    """The shipped configuration's text (version 0 of any store)."""
    return FirmwareStore(Path("/nonexistent")).show(model, firmware.SHIPPED_VERSION)


def _changed(text: str, **calibration: float) -> str:
    data = yaml.safe_load(text)
    data["device"].setdefault("calibration", {}).update(calibration)
    return yaml.safe_dump(data, sort_keys=False)


@pytest.fixture(scope="module")
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture
def store(tmp_path: Path, key: Ed25519PrivateKey) -> FirmwareStore:
    return FirmwareStore(tmp_path / "firmware", [key.public_key()])


# --------------------------------------------------------------------------- the schema
def test_shipped_configs_have_calibration_targets_of_their_kind():
    configs = {firmware.load(p).model: firmware.load(p) for p in firmware.shipped()}
    assert {c.kind for c in configs.values()} == {"camera", "fingerprint", "card_reader"}
    cam = configs["uvc-webcam"]
    assert isinstance(cam, CameraConfig)
    assert cam.calibration.eye_distance_min_px >= cam.quality.min_eye_distance_px
    fp = configs["simulated-fingerprint"]
    assert isinstance(fp, FingerprintConfig)
    assert fp.calibration.dpi_tolerance_percent == 1.0
    reader = firmware.by_model("pcsc-reader", CardReaderConfig)
    assert reader.calibration.max_median_ms <= reader.calibration.max_p95_ms
    # the old call still gives capture devices' configurations, typed as before
    assert isinstance(firmware.by_model(MODEL), CameraConfig)
    with pytest.raises(FirmwareConfigError) as e:
        firmware.by_model("pcsc-reader")
    assert e.value.code == "firmware_wrong_kind"


def test_calibration_sections_have_defaults():
    text = (
        "device:\n  kind: fingerprint\n  vendor: X\n  model: y\n  firmware: '1'\n"
        "  capture: {dpi: 500, width: 800, height: 750}\n"
    )
    fp = firmware.parse(text)
    assert isinstance(fp, FingerprintConfig)
    assert fp.calibration.platen_max_non_uniformity == 12.0
    reader = firmware.parse("device: {kind: card_reader, vendor: X, model: r, firmware: '1'}")
    assert isinstance(reader, CardReaderConfig) and reader.calibration.apdu_samples == 50


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        ({"grey_level_min": 140}, "grey_level"),  # band upside down
        ({"wb_tolerance": 0}, "wb_tolerance"),
        ({"eye_distance_min_px": 60}, "min_eye_distance_px"),  # people at the mark fail quality
        ({"eye_distance_max_px": 200}, "head would not fit"),  # 480 px / 4 = 120
        ({"max_vignetting": 1.5}, "max_vignetting"),
        ({"unknown_target": 1}, "unknown_target"),
    ],
)
def test_camera_calibration_is_validated(change: dict[str, float], complaint: str):
    bad = _changed(_shipped_text(), **change)
    with pytest.raises(FirmwareConfigError, match=complaint):
        firmware.parse(bad)


def test_fingerprint_and_card_reader_calibration_is_validated():
    fp = _shipped_text("simulated-fingerprint")
    with pytest.raises(FirmwareConfigError, match="dpi_tolerance_percent"):
        firmware.parse(_changed(fp, dpi_tolerance_percent=-1))
    with pytest.raises(FirmwareConfigError, match="reference_min_quality"):
        firmware.parse(_changed(fp, reference_min_quality=101))
    reader = _shipped_text("pcsc-reader")
    with pytest.raises(FirmwareConfigError, match="max_p95_ms"):
        firmware.parse(_changed(reader, max_median_ms=100, max_p95_ms=50))
    with pytest.raises(FirmwareConfigError, match="model"):  # a model is a folder name
        firmware.parse(reader.replace("model: pcsc-reader", "model: ../etc"))


# ---------------------------------------------------------------------------- the store
def test_a_signed_change_becomes_active_and_every_version_is_kept(
    store: FirmwareStore, key: Ed25519PrivateKey
):
    assert store.active_version(MODEL) == 0 and store.history(MODEL) == []
    assert store.active(MODEL) == firmware.by_model(MODEL)  # falls back to the shipped one
    text = _changed(store.show(MODEL), min_mtf50=0.2)
    v = store.set(text, "tech-042", "new lens", signature=firmware.sign(text.encode(), key))
    assert v == 1 and store.active_version(MODEL) == 1
    active = store.active(MODEL)
    assert isinstance(active, CameraConfig) and active.calibration.min_mtf50 == 0.2
    assert store.show(MODEL) == text and store.show(MODEL, 0) == _shipped_text()
    path = store.root / MODEL / "1.yaml"
    assert path.read_bytes() == text.encode()
    assert not os.stat(path).st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)  # read-only
    sig = firmware.signature_file(path)
    assert sig == path.with_name("1.yaml.sig")
    assert firmware.read_signature(sig) == firmware.sign(text.encode(), key)
    (change,) = store.history(MODEL)
    assert (change.who, change.why, change.action) == ("tech-042", "new lens", "set")
    assert change.signed_by == firmware.key_id(key.public_key()) and not change.technician_mode
    assert change.at.tzinfo is not None
    other = FirmwareStore(store.root, [key.public_key()])  # another process reads the same
    assert other.active(MODEL) == active


def test_unsigned_changes_only_in_technician_mode(store: FirmwareStore):
    text = _changed(store.show(MODEL), max_vignetting=0.3)
    with pytest.raises(FirmwareConfigError) as e:
        store.set(text, "tech-042", "lens shading")
    assert e.value.code == "firmware_unsigned"
    assert store.history(MODEL) == [] and not (store.root / MODEL / "1.yaml").exists()
    v = store.set(text, "tech-042", "lens shading", technician_mode=True)
    (change,) = store.history(MODEL)
    assert v == 1 and change.technician_mode and change.signed_by is None
    assert not firmware.signature_file(store.root / MODEL / "1.yaml").exists()


def test_bad_signatures_and_missing_reasons_are_refused(
    store: FirmwareStore, key: Ed25519PrivateKey
):
    text = _changed(store.show(MODEL), min_mtf50=0.2)
    stranger = Ed25519PrivateKey.generate()
    tampered = text.replace("0.2", "0.1")
    for sig in (
        firmware.sign(text.encode(), stranger),  # not a trusted signer
        firmware.sign(tampered.encode(), key),  # signed other bytes
        b"\0" * 64,
    ):
        for technician in (False, True):  # a signature given must verify, even so
            with pytest.raises(FirmwareConfigError) as e:
                store.set(text, "tech-042", "x", signature=sig, technician_mode=technician)
            assert e.value.code == "firmware_bad_signature"
    good = firmware.sign(text.encode(), key)
    for who, why in (("tech-042", ""), ("tech-042", "  "), ("", "why")):
        with pytest.raises(FirmwareConfigError) as e:
            store.set(text, who, why, signature=good)
        assert e.value.code == "firmware_why_missing"
    with pytest.raises(FirmwareConfigError) as e:  # validated before anything else
        store.set(text.replace("fps: 15", "fps: 500"), "tech-042", "x", signature=good)
    assert e.value.code == "firmware_invalid" and "fps" in str(e.value)
    assert store.history(MODEL) == []


def test_tampered_versions_are_detected(store: FirmwareStore, key: Ed25519PrivateKey):
    text = _changed(store.show(MODEL), min_mtf50=0.2)
    store.set(text, "tech-042", "new lens", signature=firmware.sign(text.encode(), key))
    path = store.root / MODEL / "1.yaml"
    path.chmod(0o644)
    path.write_text(text.replace("0.2", "0.01"))
    with pytest.raises(FirmwareConfigError) as e:
        store.active(MODEL)
    assert e.value.code == "firmware_tampered"
    # a signer no longer trusted: its versions are refused until rolled back or re-signed
    path.write_text(text)
    new_key = Ed25519PrivateKey.generate()
    rekeyed = FirmwareStore(store.root, [new_key.public_key()])
    with pytest.raises(FirmwareConfigError) as e:
        rekeyed.active(MODEL)
    assert e.value.code == "firmware_untrusted_signer"
    # which does not stop a fix: a newly signed version, or back to the shipped one
    assert (
        rekeyed.set(text, "tech-042", "re-signed", signature=firmware.sign(text.encode(), new_key))
        == 2
    )
    assert rekeyed.active(MODEL) == firmware.parse(text)
    assert rekeyed.rollback(MODEL, "tech-042", "factory settings", to=0) == 3
    assert rekeyed.active(MODEL) == firmware.by_model(MODEL)


def test_diff_and_rollback(store: FirmwareStore, key: Ed25519PrivateKey):
    shipped = store.show(MODEL)
    one = _changed(shipped, min_mtf50=0.2)
    two = _changed(one, max_vignetting=0.3)
    store.set(one, "tech-042", "new lens", signature=firmware.sign(one.encode(), key))
    store.set(two, "tech-007", "wide lens", technician_mode=True)
    diff = store.diff(MODEL)  # previous vs active
    assert diff.startswith(f"--- {MODEL}/1.yaml\n+++ {MODEL}/2.yaml\n")
    assert "-    max_vignetting: 0.2\n" in diff and "+    max_vignetting: 0.3\n" in diff
    assert "-    min_mtf50" not in diff and "+    min_mtf50" not in diff
    assert "+    min_mtf50: 0.2" in store.diff(MODEL, 0, 1)
    assert store.diff(MODEL, 2, 2) == ""

    v = store.rollback(MODEL, "tech-042", "vignetting worse with the wide lens")
    assert v == 3 and store.show(MODEL) == one and store.show(MODEL, 2) == two
    assert store.diff(MODEL, 1, 3) == ""
    last = store.history(MODEL)[-1]
    assert (last.action, last.rollback_to, last.who) == ("rollback", 1, "tech-042")
    # version 1 was signed: its signature travels with its content
    assert last.signed_by == firmware.key_id(key.public_key())
    assert firmware.read_signature(store.root / MODEL / "3.yaml.sig") == firmware.sign(
        one.encode(), key
    )
    assert store.rollback(MODEL, "tech-042", "back to the factory settings", to=0) == 4
    assert store.show(MODEL) == shipped and store.active(MODEL) == firmware.by_model(MODEL)
    assert [c.version for c in store.history(MODEL)] == [1, 2, 3, 4]
    with pytest.raises(FirmwareConfigError) as e:
        store.rollback(MODEL, "tech-042", "x", to=9)
    assert e.value.code == "firmware_unknown_version"
    with pytest.raises(FirmwareConfigError) as e:
        store.rollback(MODEL, "tech-042", "")
    assert e.value.code == "firmware_why_missing"


def test_a_model_keeps_its_kind(store: FirmwareStore):
    text = _shipped_text("simulated-fingerprint").replace(
        "model: simulated-fingerprint", f"model: {MODEL}"
    )
    with pytest.raises(FirmwareConfigError) as e:
        store.set(text, "tech-042", "x", technician_mode=True)
    assert e.value.code == "firmware_kind_changed"
    with pytest.raises(FirmwareConfigError) as e:
        store.show("../etc")
    assert e.value.code == "firmware_bad_model"


# ------------------------------------------------------------------------- the command line
def _cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="devices")
    sub = parser.add_subparsers(dest="command", required=True)
    technician_cli.add_technician_commands(sub)
    args = parser.parse_args(list(argv))
    return int(args.func(args))


def test_cli_round_trip(tmp_path: Path, key: Ed25519PrivateKey, capsys: pytest.CaptureFixture[str]):
    state, trust = str(tmp_path / "state"), tmp_path / "trust"
    (trust / "firmware-signers").mkdir(parents=True)
    (trust / "firmware-signers" / "lab.pem").write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    common = ["--state-dir", state, "--trust", str(trust)]
    assert _cli("firmware", "show", MODEL, *common) == 0
    shipped = capsys.readouterr().out
    assert "kind: camera" in shipped

    signed = tmp_path / "camera.yaml"
    signed.write_text(_changed(shipped, min_mtf50=0.2))
    firmware.write_signature(signed, firmware.sign(signed.read_bytes(), key))
    assert base64.b64decode(firmware.signature_file(signed).read_text())  # base64 on disk
    assert _cli("firmware", "set", str(signed), "--who", "tech-042", "--why", "lens", *common) == 0
    assert "version 1 is active (signed)" in capsys.readouterr().out

    unsigned = tmp_path / "unsigned.yaml"
    unsigned.write_text(_changed(shipped, min_mtf50=0.25))
    argv = ["firmware", "set", str(unsigned), "--who", "tech-7", "--why", "try", *common]
    assert _cli(*argv) == 2
    assert "firmware_unsigned" in capsys.readouterr().err
    assert _cli(*argv, "--technician") == 0
    assert "version 2 is active (technician mode, unsigned)" in capsys.readouterr().out
    bad = tmp_path / "bad.sig"
    firmware.write_signature(tmp_path / "bad", firmware.sign(b"other", key))
    assert _cli(*argv, "--signature", str(bad)) == 2
    assert "firmware_bad_signature" in capsys.readouterr().err

    assert _cli("firmware", "diff", MODEL, *common) == 0
    assert "-    min_mtf50: 0.2\n+    min_mtf50: 0.25\n" in capsys.readouterr().out
    assert _cli("firmware", "diff", MODEL, "0", "1", *common) == 0
    assert "+    min_mtf50: 0.2\n" in capsys.readouterr().out
    assert _cli("firmware", "rollback", MODEL, "--who", "tech-042", "--why", "blur", *common) == 0
    assert "version 3 is active (the content of version 1)" in capsys.readouterr().out
    assert _cli("firmware", "show", MODEL, "--version", "3", *common) == 0
    assert capsys.readouterr().out == signed.read_text()

    assert _cli("firmware", "history", MODEL, "--json", *common) == 0
    log = json.loads(capsys.readouterr().out)
    assert [(c["version"], c["who"], c["why"], c["action"]) for c in log] == [
        (1, "tech-042", "lens", "set"),
        (2, "tech-7", "try", "set"),
        (3, "tech-042", "blur", "rollback"),
    ]
    assert _cli("firmware", "history", MODEL, *common) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and "technician mode" in lines[1] and "rollback to 1" in lines[2]

    # the changes are device events too
    assert _cli("events", "--state-dir", state, "--json") == 0
    events = json.loads(capsys.readouterr().out)
    assert [e["what"] for e in events] == [
        "configuration rollback: version 3",
        "configuration set: version 2",
        "configuration set: version 1",
    ]
    assert _cli("firmware", "show", "no-such-model", *common) == 2
    assert "firmware_unknown_model" in capsys.readouterr().err


def test_state_dir_default(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setenv("RNP_DEVICES_STATE", str(tmp_path))
    assert default_state_dir() == tmp_path
    monkeypatch.delenv("RNP_DEVICES_STATE")
    expected = (
        Path("/var/lib/rnp-kiosk/devices")
        if os.geteuid() == 0
        else Path.home() / ".local/state/rnp-kiosk/devices"
    )
    assert default_state_dir() == expected


def test_changes_at_once_get_versions_of_their_own(store: FirmwareStore):
    base = store.show(MODEL)
    texts = [_changed(base, min_mtf50=0.16 + i / 100) for i in range(6)]
    errors: list[BaseException] = []

    def change(text: str) -> None:
        try:
            FirmwareStore(store.root).set(text, "tech-042", "parallel", technician_mode=True)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=change, args=(t,)) for t in texts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert [c.version for c in store.history(MODEL)] == [1, 2, 3, 4, 5, 6]
    assert sorted(store.show(MODEL, v) for v in range(1, 7)) == sorted(texts)
