"""Spoken guidance: every step and every live instruction as a pre-rendered audio file.

A citizen who cannot read hears what the screen says, in the language they chose. The files
are rendered once, at build time (``kiosk voice render``; ``make venv`` runs it), never at run
time, into ``kiosk/static/voice/<language>/<key>.wav``; the UI plays them by themselves.

Each message has a slot per language. A **recorded** file (a person's voice: Darija for the
Arabic screens, Tamazight for the Tifinagh ones) put in ``kiosk/voice_recorded/<language>/
<key>.wav`` takes the slot; otherwise **espeak-ng** renders the catalogue's text where it has
a voice (Arabic — Modern Standard, not Darija —, French, English); otherwise the slot holds a
short chime (**missing**), so the person still hears that the screen changed, and
``kiosk voice status`` lists what a recording session must produce. ``manifest.json`` beside
the files says which source filled each slot, and the text's hash, so a changed message is
rendered again.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import shutil
import struct
import subprocess
import wave
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from kiosk.exceptions import KioskError

LANGUAGES = ("ar", "fr", "zgh", "en")
ESPEAK_VOICES = {"ar": "ar", "fr": "fr", "en": "en-gb"}  # espeak-ng has no Tamazight voice
RECORDINGS = {"ar": "Darija", "zgh": "Tamazight"}  # what a recording session should produce
_HERE = Path(str(resources.files("kiosk")))
OUTPUT = _HERE / "static" / "voice"
RECORDED = _HERE / "voice_recorded"
FINGERS = (
    "right_thumb",
    "right_index",
    "right_middle",
    "right_ring",
    "right_little",
    "left_thumb",
    "left_index",
    "left_middle",
    "left_ring",
    "left_little",
)


class VoiceError(KioskError):
    """The spoken guidance could not be rendered (espeak-ng missing or failing)."""


def messages(catalogue: dict[str, str]) -> dict[str, str]:
    """What is spoken, by slot key, from a language's message catalogue: each step's text
    (``step.<step>``), which finger to place (``finger.<finger>``), each live instruction
    (``feedback.<code>``), each problem with its next step (``problem.<code>``), each receipt
    status (``receipt.<status>``), each stage of the household desk
    (``step.household_<stage>``) and the idle warning."""
    out = {
        "step.welcome": catalogue["welcome.text"],
        "step.language": catalogue["language.title"],
        "step.document": catalogue["document.text"],
        "step.face": catalogue["face.text"],
        "step.review": catalogue["review.text"],
        "step.lookup": catalogue["lookup.text"],
        "idle.warning": catalogue["idle.warning"],
    }
    for stage in ("identify", "status", "form", "review", "done"):  # the household desk
        out[f"step.household_{stage}"] = catalogue[f"household.{stage}.text"]
    for f in FINGERS:
        out[f"finger.{f}"] = catalogue["fingers.place"].format(finger=catalogue[f"finger.{f}"])
    for key, text in catalogue.items():
        kind, _, code = key.partition(".")
        if kind == "feedback":
            out[key] = text.rstrip(" ✔")
        elif kind == "error" and code != "generic":
            out[f"problem.{code}"] = f"{text} {catalogue.get('next.' + code, '')}".strip()
        elif key.startswith("receipt.status."):
            out[f"receipt.{key.rsplit('.', 1)[1]}"] = text
    return out


@dataclass(frozen=True)
class Slot:
    """One rendered message: where its audio came from."""

    source: str  # recorded, espeak-ng, missing
    text_sha: str


def _chime(path: Path) -> None:
    """A soft two-note chime (0.5 s): the placeholder of a message nobody has recorded."""
    rate = 16000
    frames = bytearray()
    for i in range(rate // 2):
        t = i / rate
        freq = 660.0 if t < 0.25 else 880.0
        envelope = math.sin(math.pi * ((t % 0.25) / 0.25)) * 0.25
        frames += struct.pack("<h", int(32767 * envelope * math.sin(2 * math.pi * freq * t)))
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(bytes(frames))
    path.write_bytes(buf.getvalue())


def _espeak(voice: str, text: str, path: Path) -> None:
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise VoiceError("espeak-ng is not installed (apt-get install espeak-ng)")
    try:
        subprocess.run(
            [exe, "-v", voice, "-s", "140", "-w", str(path), "--", text],
            check=True,
            capture_output=True,
            timeout=30,
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        raise VoiceError(f"espeak-ng failed on a {voice} message: {exc}") from exc


def render(
    catalogues: dict[str, dict[str, str]],
    out: Path = OUTPUT,
    recorded: Path = RECORDED,
) -> dict[str, dict[str, Slot]]:
    """Render every language's messages into ``out`` (only what changed since the last
    run); returns and writes the manifest."""
    manifest_path = out / "manifest.json"
    try:
        old = json.loads(manifest_path.read_text())
    except (OSError, ValueError):
        old = {}
    result: dict[str, dict[str, Slot]] = {}
    for lang, catalogue in catalogues.items():
        folder = out / lang
        folder.mkdir(parents=True, exist_ok=True)
        result[lang] = {}
        for key, text in messages(catalogue).items():
            sha = hashlib.sha256(text.encode()).hexdigest()[:16]
            target = folder / f"{key}.wav"
            mine = recorded / lang / f"{key}.wav"
            source = (
                "recorded" if mine.exists() else "espeak-ng" if lang in ESPEAK_VOICES else "missing"
            )
            before = old.get(lang, {}).get(key, {})
            if target.exists() and before == {"source": source, "text_sha": sha}:
                result[lang][key] = Slot(source, sha)
                continue
            if source == "recorded":
                shutil.copyfile(mine, target)
            elif source == "espeak-ng":
                _espeak(ESPEAK_VOICES[lang], text, target)
            else:
                _chime(target)
            result[lang][key] = Slot(source, sha)
    manifest_path.write_text(
        json.dumps(
            {
                lang: {k: vars(v) for k, v in sorted(slots.items())}
                for lang, slots in result.items()
            },
            indent=1,
            ensure_ascii=False,
        )
    )
    return result


def recordings_wanted(out: Path = OUTPUT) -> dict[str, list[str]]:
    """Per language that should be heard in a person's voice (Darija for Arabic, Tamazight),
    the slots not recorded yet, from the manifest of the last render: a chime plays in their
    place (Tamazight) or espeak-ng's Modern Standard Arabic does (Arabic)."""
    try:
        manifest = json.loads((out / "manifest.json").read_text())
    except (OSError, ValueError):
        return {}
    return {
        lang: sorted(k for k, v in manifest.get(lang, {}).items() if v["source"] != "recorded")
        for lang in RECORDINGS
    }


def exists(lang: str, key: str, out: Path = OUTPUT) -> bool:
    """True if the slot ``key`` of ``lang`` was rendered."""
    return (out / lang / f"{key}.wav").is_file()
