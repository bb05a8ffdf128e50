"""The console scripts and the demo (the project's main job)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from devices.firmware import FirmwareConfigError, load, shipped

BIN = Path(sys.executable).parent


@pytest.mark.parametrize("cmd", ["central-api", "kiosk", "devices"])
def test_console_scripts_have_help(cmd: str):
    r = subprocess.run([str(BIN / cmd), "--help"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "usage:" in r.stdout


def test_shipped_firmware_configs_are_valid_and_bad_ones_are_explained(tmp_path: Path):
    assert {load(p).kind for p in shipped()} == {"camera", "fingerprint"}
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
    """The main job as the README runs it (``kiosk demo``), in its own process."""
    cmd = [str(BIN / "kiosk"), "demo", "--workdir", str(tmp_path / "demo")]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=1200)
    assert r.returncode == 0, r.stderr[-2000:]
    last = r.stdout.strip().splitlines()[-1]
    summary = json.loads(last)
    assert {k: summary[k] for k in ("enrolled", "issued", "duplicates", "adjudication")} == {
        "enrolled": 13,
        "issued": 12,
        "duplicates": 1,
        "adjudication": 0,
    }
    assert summary["not_enrolled"] == 0
    assert summary["outbox"] == {"final": 13}  # every packet acknowledged and decided
