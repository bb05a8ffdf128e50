"""MRZ OCR benchmark: reading the printed MRZ of a card back (or a passport page) from the
document camera's image, as the kiosk does before it opens the chip.

N documents (default 200; 80 % TD1 card backs, 20 % TD3 passport pages) with random names,
numbers, dates and, now and then, optional data, are rendered by the simulated document camera
(:func:`devices.document.render_card_back`), each with a degradation drawn from a grid
(rotation 0-8 degrees either way, gaussian blur sigma 0-2 px, gaussian noise 0-12 grey
levels, scale 0.5-1.0 of 300 dpi), plus N/10 at the grid's worst corner, all seeded. Each is
read with :func:`devices.document.read_mrz`; printed, per level of each degradation: the
exact-read rate (``MRZ.lines`` equal to the printed lines), the refusal rate
(``MRZUnreadable``), the WRONG-accept rate (an MRZ returned that differs from the printed one;
it must be 0: a wrong MRZ would open nobody's chip at best, so refusing is the safe failure)
and the median milliseconds a read.

Peer in the same run: PassportEye (``passporteye.read_mrz``, tesseract too, its own MRZ
detection and fixes), on the very same images (written as PNG), when it can be imported here
or by the interpreter given with ``--peer-python`` (a throwaway virtual environment: it is not
one of the project's dependencies). Printed for it: ``exact`` (document number, dates,
nationality, sex and names as printed, whatever its own validity flag says), ``key`` (document
number and both dates right: what opens the chip) and ``valid-but-wrong`` (its result claims
valid check digits and a field is wrong). For ours, exact means all ``MRZ.lines`` as printed.

These figures are an upper bound: the images are rendered in the very typeface the reader
knows, on a flat, evenly lit document, and no photographs of real MRZs are in
``../shared/data`` to measure on. Glare, curved laminates, perspective and worn printing on
real documents will lower the exact-read rate; the refusal design is what keeps the
wrong-accept rate at 0 there.

Run: .venv/bin/python bench/bench_mrz_ocr.py [N] [--seed S] [--peer-python PYTHON]
(about 2 minutes for N=200; PassportEye adds about 12: some 3 s an image.) A throwaway
environment for the peer, outside the project (pure-Python sdists, nothing compiled):
``python3 -m venv /tmp/pe && /tmp/pe/bin/pip install --only-binary=:all:
--no-binary=passporteye,pdfminer passporteye``, then ``--peer-python /tmp/pe/bin/python``.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from devices.document import MRZUnreadable, read_mrz, render_card_back
from devices.icao.mrz import check_digit, parse, td1

SURNAMES = (
    "EL AMRANI",
    "BENNANI",
    "TAZI",
    "ALAOUI",
    "BERRADA",
    "EL IDRISSI",
    "CHRAIBI",
    "OUAZZANI",
    "LAHLOU",
    "BENJELLOUN",
    "EL FASSI",
    "ZOUBIR",
    "KETTANI",
    "MOUSSAOUI",
)
GIVEN = (
    "YOUSSEF",
    "AMINA",
    "FATIMA ZAHRA",
    "MOHAMED",
    "KHADIJA",
    "OMAR",
    "SALMA",
    "HAMZA",
    "NOUR",
    "MEHDI",
    "IMANE",
    "ABDELKADER",
    "SOUKAINA",
    "ZAKARIA",
    "KAWTAR",
)
ANGLES = (0.0, 2.0, 4.0, 6.0, 8.0)
BLURS = (0.0, 0.5, 1.0, 1.5, 2.0)
NOISES = (0.0, 3.0, 6.0, 9.0, 12.0)
SCALES = (1.0, 0.85, 0.7, 0.6, 0.5)
WORST = {"angle": 8.0, "blur": 2.0, "noise": 12.0, "scale": 0.5}

_PEER = r"""
import json, sys, time
from passporteye import read_mrz
out = []
for path, truth in json.load(sys.stdin):
    t = time.perf_counter()
    try:
        m = read_mrz(path)
    except Exception as exc:
        out.append({"error": type(exc).__name__, "ms": (time.perf_counter() - t) * 1e3})
        continue
    ms = (time.perf_counter() - t) * 1e3
    out.append({"ms": ms, "found": m is not None, "valid": bool(m and m.valid),
                "fields": m.to_dict() if m is not None else None})
json.dump(out, sys.stdout)
"""


def td3(number: str, surname: str, given: str, birth: str, sex: str, expiry: str) -> str:
    """A TD3 passport MRZ (2 x 44) with every check digit."""

    def field(text: str, n: int) -> str:
        return (text.upper().replace(" ", "<") + "<" * n)[:n]

    names = field(surname, 39).rstrip("<") + "<<" + field(given, 39).rstrip("<")
    l1 = "P<MAR" + field(names, 39)
    num = field(number, 9)
    l2 = num + check_digit(num) + "MAR" + birth + check_digit(birth) + sex
    l2 += expiry + check_digit(expiry) + "<" * 14 + "<"
    l2 += check_digit(l2[0:10] + l2[13:20] + l2[21:43])
    text = l1 + "\n" + l2
    parse(text)
    return text


def document(rng: random.Random) -> str:
    """A random person's MRZ: a CNIE (TD1) most of the time, else a passport (TD3)."""
    letters = "ABCDEFGHIJKLMNOPRSTUVWXYZ"
    birth = f"{rng.randint(40, 99):02d}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}"
    expiry = f"{rng.randint(27, 36):02d}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}"
    sex = rng.choice("MF")
    surname, given = rng.choice(SURNAMES), rng.choice(GIVEN)
    if rng.random() < 0.2:
        number = "".join(rng.choices(letters, k=2)) + f"{rng.randint(0, 9999999):07d}"
        return td3(number, surname, given, birth, sex, expiry)
    number = "".join(rng.choices(letters, k=rng.choice((1, 2)))) + f"{rng.randint(0, 999999):06d}"
    text = td1(number, surname, given, birth, sex, expiry)
    if rng.random() < 0.3:  # optional data in line 1 (a personal number), composite redone
        l1, l2, l3 = text.splitlines()
        opt = f"{rng.randint(0, 99999999):08d}"
        l1 = (l1[:15] + opt + "<" * 15)[:30]
        l2 = l2[:29] + check_digit(l1[5:30] + l2[0:7] + l2[8:15] + l2[18:29])
        text = "\n".join((l1, l2, l3))
        parse(text)
    return text


@dataclass
class Case:
    truth: str
    seed: int
    degradation: dict[str, float]


def cases(n: int, seed: int) -> list[Case]:
    rng = random.Random(seed)
    out = []
    for i in range(n + n // 10):
        corner = i >= n
        d = (
            dict(WORST)
            if corner
            else {
                "angle": rng.choice(ANGLES) * rng.choice((-1, 1)),
                "blur": rng.choice(BLURS),
                "noise": rng.choice(NOISES),
                "scale": rng.choice(SCALES),
            }
        )
        if corner:
            d["angle"] *= rng.choice((-1, 1))
        out.append(Case(document(rng), seed * 100_000 + i, d))
    return out


def peer_results(python: str | None, images: list[Path], truths: list[str]) -> tuple[list, str]:
    """PassportEye's answers, or why there are none."""
    cmd = [python] if python else [sys.executable]
    probe = subprocess.run([*cmd, "-c", "import passporteye"], capture_output=True, text=True)
    if probe.returncode != 0:
        why = (probe.stderr.strip().splitlines() or ["cannot import passporteye"])[-1]
        return [], f"passporteye not available to {cmd[0]} ({why})"
    run = subprocess.run(
        [*cmd, "-c", _PEER],
        input=json.dumps([[str(p), t] for p, t in zip(images, truths, strict=True)]),
        capture_output=True,
        text=True,
        timeout=3600,
    )
    if run.returncode != 0:
        return [], "passporteye failed: " + (run.stderr.strip().splitlines() or ["?"])[-1]
    return json.loads(run.stdout), ""


def peer_verdict(result: dict, truth: str) -> str:
    """What PassportEye made of a document: ``exact`` (every field as printed: number, dates,
    nationality, sex, names), ``key`` (number and dates right: the chip opens, names aside),
    ``wrong`` (it says valid, and a field is wrong), else ``none``."""
    fields = result.get("fields") or {}
    m = parse(truth)
    key = (
        str(fields.get("number", "")).rstrip("<") == m.document_number
        and fields.get("date_of_birth") == m.date_of_birth
        and fields.get("expiration_date") == m.date_of_expiry
    )
    rest = (
        fields.get("nationality") == m.nationality
        and fields.get("sex") == m.sex
        and " ".join(str(fields.get("surname", "")).split()) == m.primary_identifier
        and " ".join(str(fields.get("names", "")).split()) == m.secondary_identifier
    )
    if key and rest:
        return "exact"
    if result.get("valid"):
        return "wrong"
    return "key" if key else "none"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("n", nargs="?", type=int, default=200)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--peer-python", help="an interpreter that can import passporteye")
    args = ap.parse_args()
    todo = cases(args.n, args.seed)
    outcome: list[str] = []
    ms: list[float] = []
    with tempfile.TemporaryDirectory(prefix="bench-mrz-") as tmp:
        paths = []
        for i, case in enumerate(todo):
            image = render_card_back(case.truth, case.seed, **case.degradation)
            path = Path(tmp) / f"{i:04d}.png"
            cv2.imwrite(str(path), image)
            paths.append(path)
            t = time.perf_counter()
            try:
                got = read_mrz(image)
                outcome.append("exact" if got.lines == tuple(case.truth.splitlines()) else "WRONG")
            except MRZUnreadable:
                outcome.append("refused")
            ms.append((time.perf_counter() - t) * 1e3)
        peer, peer_why = peer_results(args.peer_python, paths, [c.truth for c in todo])

    def row(label: str, idx: list[int]) -> str:
        n = len(idx)

        def pct(k: str, of: list[str]) -> str:
            return f"{sum(of[i] == k for i in idx) / n * 100:5.1f}"

        wrong = sum(outcome[i] == "WRONG" for i in idx)
        med = statistics.median(ms[i] for i in idx)
        line = (
            f"{label:<14} n={n:<4} exact {pct('exact', outcome)} %  refused "
            f"{pct('refused', outcome)} %  WRONG {wrong / n * 100:3.1f} % ({wrong})  {med:4.0f} ms"
        )
        if peer:
            verdicts = [peer_verdict(r, c.truth) for r, c in zip(peer, todo, strict=True)]
            key = sum(verdicts[i] in ("exact", "key") for i in idx) / n * 100
            pms = statistics.median(peer[i]["ms"] for i in idx)
            line += (
                f" | passporteye exact {pct('exact', verdicts)} %  key {key:5.1f} %  "
                f"valid-but-wrong {sum(verdicts[i] == 'wrong' for i in idx):2d}  {pms:4.0f} ms"
            )
        return line

    grid = [i for i in range(len(todo)) if i < args.n]
    print(
        f"{len(todo)} rendered documents ({args.n} across the grid, {len(todo) - args.n} at the "
        f"worst corner {WORST}), seed {args.seed}; TD1 "
        f"{sum(c.truth.count(chr(10)) == 2 for c in todo)}, TD3 "
        f"{sum(c.truth.count(chr(10)) == 1 for c in todo)}"
    )
    print(row("all", list(range(len(todo)))))
    print(row("grid", grid))
    for key, levels in (("angle", ANGLES), ("blur", BLURS), ("noise", NOISES), ("scale", SCALES)):
        for level in levels:
            idx = [i for i in grid if abs(todo[i].degradation[key]) == level]
            if idx:
                print(row(f"  {key} {level:g}", idx))
    if len(todo) > args.n:
        print(row("worst corner", list(range(args.n, len(todo)))))
    for kind, lines in (("TD1", 2), ("TD3", 1)):
        idx = [i for i, c in enumerate(todo) if c.truth.count("\n") == lines]
        if idx:
            print(row(kind, idx))
    if not peer:
        print(f"peer: {peer_why}")
    wrong = outcome.count("WRONG")
    if wrong:
        raise SystemExit(f"{wrong} WRONG accept(s): a wrong MRZ was returned")


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
