"""The console scripts and the demo (the project's main job)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import FACES

from devices.firmware import FirmwareConfigError, load, shipped

BIN = Path(sys.executable).parent


@pytest.mark.parametrize("cmd", ["central-api", "kiosk", "devices"])
def test_console_scripts_have_help(cmd: str):
    r = subprocess.run([str(BIN / cmd), "--help"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "usage:" in r.stdout


def test_shipped_firmware_configs_are_valid_and_bad_ones_are_explained(tmp_path: Path):
    assert {load(p).kind for p in shipped()} == {"camera", "fingerprint", "card_reader"}
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "device:\n  kind: camera\n  vendor: X\n  model: Y\n  firmware: '1'\n"
        "  capture: {width: 10, height: 480, fps: 15}\n"
    )
    with pytest.raises(FirmwareConfigError, match=r"capture.width"):
        load(bad)
    r = subprocess.run([str(BIN / "devices"), "check", str(bad)], capture_output=True, text=True)
    assert r.returncode == 1 and "INVALID" in r.stderr


@pytest.mark.slow
@pytest.mark.pcsc
def test_demo_enrols_everyone_and_catches_the_returning_person(tmp_path: Path):
    """The main job as the README runs it (``kiosk demo``), in its own process, on the first
    six identities of the shared photos (the whole set takes 5-10 minutes here; these six
    hold every case: a missing finger, the returning person, the one who comes back under
    another name): everyone issued, the returning person a duplicate, the person back under
    another name with bandaged hands an adjudication case (the face alone, LLR 7.5, lands
    between the thresholds at six persons too: ln(6 / 0.01) = 6.4 and ln(6 / 0.001) = 8.7);
    the console's URL and sign-in printed."""
    faces = tmp_path / "faces"
    faces.mkdir()
    for name in (
        "alex_lacamoire",
        "biden",
        "kit_harington",
        "lin_manuel_miranda",
        "obama",
        "rose_leslie",
    ):
        for photo in FACES.glob(f"{name}__*"):
            (faces / photo.name).symlink_to(photo)
    cmd = [str(BIN / "kiosk"), "demo", "--workdir", str(tmp_path / "demo")]
    env = {**os.environ, "RNP_FACES_DIR": str(faces)}
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=1200, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    last = r.stdout.strip().splitlines()[-1]
    summary = json.loads(last)
    assert {k: summary[k] for k in ("enrolled", "issued", "duplicates", "adjudication")} == {
        "enrolled": 8,
        "issued": 6,
        "duplicates": 1,
        "adjudication": 1,
    }
    assert summary["not_enrolled"] == 0
    # every packet acknowledged and decided; the adjudication case's still awaits a person
    assert summary["outbox"] == {"final": 7, "acked": 1}
    # the duplicate's evidence, as the registry's CLI prints it: found by fingers and face
    assert "fused LLR" in r.stdout and "fingers (position: bits/LLR): 1:" in r.stdout
    assert "between the adjudication threshold" in r.stdout
    # two households declared at the household desk (a 1:1 face check each): one eligible
    # for both programmes, one for neither, each printed with its reference and why
    assert [h["eligible"] for h in summary["households"]] == [
        {"amo_tadamon": True, "asd": True},
        {"amo_tadamon": False, "asd": False},
    ]
    assert all(
        re.fullmatch(r"RSU-[0-9A-Z]{5}-[0-9A-Z]{5}", h["reference"]) for h in summary["households"]
    )
    assert r.stdout.count("household RSU-") == 2 and "est supérieur de" in r.stdout
    # the console and how to sign in; the registry's settings kept to open it again
    assert "operators' console: http://127.0.0.1:" in r.stdout
    secret = re.search(r"adj\.demo: temporary password \S+ .*TOTP secret ([A-Z2-7]+)", r.stdout)
    assert secret is not None
    env = tmp_path / "demo" / "central.env"
    assert env.stat().st_mode & 0o077 == 0 and "CENTRAL_DATA_KEY=" in env.read_text()


ROOTS = {
    "biometrics": "biometrics.exceptions.BiometricError",
    "devices": "devices.exceptions.DeviceError",
    "kiosk": "kiosk.exceptions.KioskError",
    "central_api": "central_api.exceptions.RegistryError",
}
# the wire contract's own errors, raised on both sides of it (kiosk and registry)
CONTRACT = {
    "central_api.enrolment.schemas.SealError",
    "central_api.enrolment.schemas.DecisionNotAuthentic",
}


def test_every_exception_of_a_package_derives_from_its_root():
    import importlib
    import inspect
    import pkgutil

    strays = []
    for package, root_path in ROOTS.items():
        module_name, _, cls_name = root_path.rpartition(".")
        root = getattr(importlib.import_module(module_name), cls_name)
        pkg = importlib.import_module(package)
        for info in pkgutil.walk_packages(pkg.__path__, f"{package}."):
            if ".migrations" in info.name:
                continue  # alembic's env.py runs a migration when imported
            module = importlib.import_module(info.name)
            for name, obj in inspect.getmembers(module, inspect.isclass):
                qual = f"{info.name}.{name}"
                if (
                    issubclass(obj, BaseException)
                    and obj.__module__ == info.name
                    and not issubclass(obj, root)
                    and qual not in CONTRACT
                ):
                    strays.append(qual)
    assert not strays, strays
