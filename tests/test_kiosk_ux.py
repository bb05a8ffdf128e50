"""What a citizen meets, below the browser: dates as people write them, spoken guidance
rendered at build time, witnesses' IDCS checked at once, receipts in local time."""

from __future__ import annotations

import json
import shutil
import wave
from datetime import date
from pathlib import Path

import numpy as np
import pytest

from central_api.enrolment.schemas import idcs_well_formed
from central_api.identity.idcs import verhoeff_digit
from kiosk import voice
from kiosk.session import display_date, mrz_date, typed_date
from kiosk.web import catalogue


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("15/02/1990", "900215"),
        ("15.02.1990", "900215"),
        ("15-02-1990", "900215"),
        ("15 02 1990", "900215"),
        ("1990-02-15", "900215"),
        ("5/2/1990", "900205"),
        ("١٥/٠٢/١٩٩٠", "900215"),  # Arabic-Indic digits, as some keyboards type them
        ("900215", "900215"),
        (" 31/12/2034 ", "341231"),
    ],
)
def test_dates_are_accepted_as_people_write_them(typed: str, expected: str) -> None:
    assert mrz_date(typed) == expected


@pytest.mark.parametrize(
    "typed", ["31/02/1990", "1990/02/15x", "15/13/1990", "", "02/1990", "901315"]
)
def test_impossible_dates_are_refused(typed: str) -> None:
    with pytest.raises(ValueError):
        mrz_date(typed)


def test_typed_and_displayed_dates_round_trip() -> None:
    assert typed_date("15/02/1990") == date(1990, 2, 15)
    assert display_date("1990-02-15") == "15/02/1990"
    assert display_date(None) == "" and display_date("soon") == "soon"


def test_a_witness_idcs_with_a_wrong_check_digit_is_caught() -> None:
    good = "123456789" + verhoeff_digit("123456789")
    assert idcs_well_formed(good)
    for i in range(10):  # any single mistyped digit
        wrong = good[:i] + str((int(good[i]) + 1) % 10) + good[i + 1 :]
        assert not idcs_well_formed(wrong)
    assert not idcs_well_formed(good[:9]) and not idcs_well_formed("12345678ab")


def _samples(path: Path) -> np.ndarray:
    with wave.open(str(path)) as w:
        return np.frombuffer(w.readframes(w.getnframes()), np.int16)


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
def test_spoken_guidance_is_rendered_per_language_with_slots_for_recordings(tmp_path: Path) -> None:
    """Every message gets a slot in every language: espeak-ng speaks French (and Arabic,
    English); Tamazight has no voice, so a chime holds the slot until someone records it; a
    recording takes its slot; a changed text is rendered again, an unchanged one is not."""
    out, recorded = tmp_path / "voice", tmp_path / "recorded"
    cats = {"fr": dict(catalogue("fr")), "zgh": dict(catalogue("zgh"))}
    (recorded / "zgh").mkdir(parents=True)
    # a "recording": any WAV will do for the slot mechanics
    voice._chime(recorded / "zgh" / "step.document.wav")
    slots = voice.render(cats, out, recorded)
    keys = set(voice.messages(cats["fr"]))
    assert {"step.document", "finger.right_index", "feedback.even_light"} <= keys
    assert "problem.operator_denied" in keys and "receipt.issued" in keys
    assert set(slots["fr"]) == set(slots["zgh"]) == keys
    assert {s.source for s in slots["fr"].values()} == {"espeak-ng"}
    assert slots["zgh"]["step.document"].source == "recorded"
    assert slots["zgh"]["step.face"].source == "missing"
    speech = _samples(out / "fr" / "step.document.wav")
    assert len(speech) > 16000 and np.abs(speech).max() > 1000  # a second of real sound
    chime = _samples(out / "zgh" / "step.face.wav")
    assert 0 < len(chime) < len(speech)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["zgh"]["step.face"]["source"] == "missing"
    before = (out / "fr" / "step.face.wav").stat().st_mtime_ns
    untouched = (out / "fr" / "step.review.wav").stat().st_mtime_ns
    cats["fr"]["face.text"] = "Regardez la caméra, s'il vous plaît."
    voice.render(cats, out, recorded)
    assert (out / "fr" / "step.face.wav").stat().st_mtime_ns != before
    assert (out / "fr" / "step.review.wav").stat().st_mtime_ns == untouched
    assert voice.exists("fr", "step.face", out) and not voice.exists("fr", "nothing", out)
