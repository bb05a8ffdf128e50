"""Reading the printed MRZ of an identity document from a camera image, and rendering one.

:func:`read_mrz` finds the machine-readable zone (ICAO 9303: TD1, 3 lines of 30 characters on
the back of an ID card such as Morocco's CNIE; TD3, 2 lines of 44 on a passport's data page) in
a document-camera image, straightens it and reads it twice:

- by Debian's ``tesseract`` command (a subprocess, the image on stdin as PNG), whose text is
  repaired *by field type*: digit-only positions take ``O``/``I``/``B``... as ``0``/``1``/
  ``8``..., letter positions the reverse;
- cell by cell, against the OCR-B character shapes (the MRZ typeface, ``fonts-ocr-b``): the
  MRZ is monospaced, so its lines fall into a grid of 30 or 44 cells.

Tesseract's English model reads long runs of fillers (``<<<<``) as ``K``, ``C``, ``E``... and
miscounts them, and a ``K`` for a ``<`` is invisible to the check digits (both count 0, as do
``A``, ``U`` and ``0``), so the fillers come from the shapes. A character is taken where the
readers agree; where they disagree on a position a check digit guards, both are candidates and
only a repair under which *every* check digit verifies stands (fewest changes first; two
different ones verifying is ambiguous); on fields no check digit guards (names, nationality,
sex, document code) they must agree. Otherwise :class:`MRZUnreadable` says why (no band
found, OCR gave N lines, the check digit of field X fails, field X cannot be read for sure):
a wrong MRZ is never returned knowingly. The kiosk then opens the chip with the MRZ; the
chip's DG1 is the authoritative copy of it.

:func:`render_card_back` draws what the simulated document camera sees: a card back (ID-1) or a
passport data page on a desk, the MRZ in OCR-B at its ICAO pitch, with rotation, blur, noise,
downscaling and JPEG softness on request.

The MRZ text is personal data: nothing here logs it, and no error message quotes it.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import os
import re
import shutil
import subprocess
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from devices.exceptions import DeviceError
from devices.icao import mrz as mrz_mod
from devices.icao.mrz import MRZ

__all__ = [
    "MRZUnreadable",
    "OCRUnavailable",
    "read_mrz",
    "render_card_back",
    "repair_mrz_text",
]

TESSERACT_TIMEOUT = 20.0  # seconds for one OCR run of a cropped band
_FONT_DIRS = (Path("/usr/share/fonts/opentype/ocr-b"), Path("/usr/share/fonts"))
_FONT_NAMES = ("OCRB.otf", "OCRB.ttf", "OCR-B.otf", "OCR-B.ttf", "ocrb.otf", "ocrb.ttf")


class MRZUnreadable(DeviceError):
    """No valid MRZ could be read from the image; the message says why (never the text)."""

    code = "mrz_unreadable"


class OCRUnavailable(MRZUnreadable):
    """The OCR engine (``tesseract``) or the OCR-B font is not installed: no MRZ can be read
    on this machine (a kind of :class:`MRZUnreadable`, so that a caller falls back to typed
    data all the same; its own ``code`` tells the technician)."""

    code = "ocr_unavailable"


# ------------------------------------------------------------------------------- layouts
_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_DIGITS = "0123456789"
_ALPHABET = _LETTERS + _DIGITS + "<"

# What may stand at each position. Guarded by a check digit: D digit, C check digit, N letter,
# digit or filler (document number, optional data). Guarded by none: A letter or filler
# (document code, states), S sex, L names: those are only taken when both readers agree.
_ALLOWED = {
    "D": _DIGITS + "<",
    "C": _DIGITS + "<",
    "N": _ALPHABET,
    "A": _LETTERS + "<",
    "S": "MFX<",
    "L": _LETTERS + "<",
}
_GUARDED = frozenset("DCN")


@dataclass(frozen=True)
class _Layout:
    """An MRZ format: line width, the class of each position, the fields by name."""

    name: str
    width: int
    classes: tuple[str, ...]
    fields: tuple[tuple[int, int, int, str], ...]  # (line, start, end, name)


_CHECK = "check digit"
TD1 = _Layout(
    "TD1",
    30,
    (
        "AAAAA" + "N" * 9 + "C" + "N" * 15,
        "DDDDDDC" + "S" + "DDDDDDC" + "AAA" + "N" * 11 + "C",
        "L" * 30,
    ),
    (
        (0, 0, 2, "document code"),
        (0, 2, 5, "issuing state"),
        (0, 5, 14, "document number"),
        (0, 14, 15, _CHECK),
        (0, 15, 30, "optional data"),
        (1, 0, 6, "date of birth"),
        (1, 6, 7, _CHECK),
        (1, 7, 8, "sex"),
        (1, 8, 14, "date of expiry"),
        (1, 14, 15, _CHECK),
        (1, 15, 18, "nationality"),
        (1, 18, 29, "optional data"),
        (1, 29, 30, _CHECK),
        (2, 0, 30, "names"),
    ),
)
TD3 = _Layout(
    "TD3",
    44,
    (
        "AAAAA" + "L" * 39,
        "N" * 9 + "C" + "AAA" + "DDDDDDC" + "S" + "DDDDDDC" + "N" * 14 + "CC",
    ),
    (
        (0, 0, 2, "document code"),
        (0, 2, 5, "issuing state"),
        (0, 5, 44, "names"),
        (1, 0, 9, "document number"),
        (1, 9, 10, _CHECK),
        (1, 10, 13, "nationality"),
        (1, 13, 19, "date of birth"),
        (1, 19, 20, _CHECK),
        (1, 20, 21, "sex"),
        (1, 21, 27, "date of expiry"),
        (1, 27, 28, _CHECK),
        (1, 28, 42, "personal number"),
        (1, 42, 44, _CHECK),
    ),
)

# OCR confusions: what a digit-only position reads as a digit, and the reverse
_TO_DIGIT = {"O": "0", "Q": "0", "D": "0", "U": "0", "I": "1", "L": "1", "T": "1", "Z": "2"} | {
    "S": "5",
    "B": "8",
    "G": "6",
    "A": "4",
}
_TO_LETTER = {"0": "O", "1": "I", "2": "Z", "5": "S", "8": "B", "6": "G", "4": "A", "7": "T"}
_FILLER_LOOKALIKES = frozenset("KCLXEZS")  # what tesseract makes of '<' in a run of them
_SEX = {"H": "M", "N": "M", "W": "M", "P": "F", "E": "F", "K": "<", "C": "<"}
_MAX_CHANGES = 3  # uncertain repairs tried together, at most (each is a check-digit gamble)

_Options = list[list[tuple[str, ...]]]  # per line, per position: the base, then alternatives


def repair_mrz_text(text: str) -> MRZ:
    """Repair OCR text of an MRZ by field type and return it parsed, check digits verified.

    ``text`` is tesseract's output: other lines, spaces and stray characters may surround the
    MRZ lines (the last 3 of about 30 characters, or 2 of about 44). Certain repairs (a letter
    where only a digit may stand, and the reverse) are always made; uncertain ones (a letter or
    a digit in a field that holds both, a ``K`` beside fillers, a run of fillers one too long or
    short) are tried, fewest first, and kept only when every check digit then verifies. Raises
    :class:`MRZUnreadable` when no repair verifies, or when two different ones do."""
    lines = _mrz_lines(text)
    layout = TD1 if len(lines) == 3 else TD3
    return _search(layout, _text_options(lines, layout))


def _search(layout: _Layout, fits: Iterable[tuple[int, _Options]]) -> MRZ:
    """The one candidate, cheapest first, whose check digits all verify."""
    found: dict[str, int] = {}
    first_error = ""  # what is wrong with the read as it is (the cheapest candidate)
    for fit_cost, options in fits:
        if found and fit_cost > min(found.values()):
            break
        for cost, candidate in _candidates(options):
            if found and fit_cost + cost > min(found.values()):
                break
            try:
                parsed = mrz_mod.parse("\n".join(candidate))
            except mrz_mod.MRZError as exc:
                if not first_error:
                    first_error = str(exc).replace("check digit of the ", "check digit of field ")
                continue
            key = "\n".join(parsed.lines)
            found[key] = min(found.get(key, 1 << 30), fit_cost + cost)
    if not found:
        raise MRZUnreadable(f"the {layout.name} MRZ read does not verify: {first_error}")
    best = min(found.values())
    winners = [k for k, c in found.items() if c == best]
    if len(winners) > 1:
        raise MRZUnreadable(f"the {layout.name} MRZ read is ambiguous: two repairs verify")
    return mrz_mod.parse(winners[0])


def _candidates(options: _Options) -> Iterator[tuple[int, list[str]]]:
    """Lines with up to ``_MAX_CHANGES`` alternatives taken, fewest first."""
    base = [[o[0] for o in row] for row in options]
    alts = [
        (li, pi, alt)
        for li, row in enumerate(options)
        for pi, opts in enumerate(row)
        for alt in opts[1:]
    ]
    most = _MAX_CHANGES if len(alts) <= 24 else 2
    for k in range(min(most, len(alts)) + 1):
        for picked in itertools.combinations(alts, k):
            if len({(li, pi) for li, pi, _ in picked}) < k:
                continue  # two alternatives for one position
            out = [row[:] for row in base]
            for li, pi, alt in picked:
                out[li][pi] = alt
            yield k, ["".join(row) for row in out]


def _mrz_lines(text: str, count: int | None = None) -> list[str]:
    """The MRZ lines in OCR output: the last 3 of about 30 characters, or 2 of about 44 (or
    the last ``count`` lines when the image showed that many)."""
    rows = [re.sub(r"[^A-Z0-9<]", "", line.upper()) for line in text.splitlines()]
    if count is not None:
        rows = [r for r in rows if len(r) >= 8]
        if len(rows) != count:
            raise MRZUnreadable(f"OCR gave {len(rows)} line(s) where the image shows {count}")
        return rows
    rows = [r for r in rows if len(r) >= 20]
    td3 = [r for r in rows if 38 <= len(r) <= 50]
    td1 = [r for r in rows if 24 <= len(r) <= 36]
    if len(td3) >= 2 and rows[-2:] == td3[-2:] and not (len(td1) >= 3 and rows[-3:] == td1[-3:]):
        return td3[-2:]
    if len(td1) >= 3 and rows[-3:] == td1[-3:]:
        return td1[-3:]
    raise MRZUnreadable(
        f"OCR gave {len(rows)} text line(s), not 3 lines of 30 characters nor 2 of 44"
    )


def _text_options(lines: list[str], layout: _Layout) -> list[tuple[int, _Options]]:
    """Candidates from OCR text alone: each line brought to the layout's width (cheapest
    first: OCR miscounts runs of '<'), certain repairs made, uncertain ones as alternatives."""
    per_line: list[list[tuple[int, str]]] = []
    for i, line in enumerate(lines):
        if "L" in layout.classes[i]:
            start = layout.classes[i].index("L")
            per_line.append([(0, _names(_fit_names(line, layout.width), start))])
        else:
            per_line.append(_fit_line(line, layout.width))
    fits = []
    for combo in itertools.product(*per_line):
        options: _Options = []
        for (_, line), classes in zip(combo, layout.classes, strict=True):
            row: list[tuple[str, ...]] = []
            for pi, (ch, cls) in enumerate(zip(line, classes, strict=True)):
                base = _certain(ch, cls)
                alts: list[str] = []
                if cls == "N":
                    alts += [m[base] for m in (_TO_LETTER, _TO_DIGIT) if base in m]
                    if base in _FILLER_LOOKALIKES and _next_to_filler(line, pi):
                        if _lone_lookalike(list(line), pi):  # '<K<<': a filler misread
                            base, alts = "<", [base, *alts]
                        else:
                            alts.append("<")
                row.append((base, *alts))
            options.append(_trailing_fillers(row, classes))
        fits.append((sum(c for c, _ in combo), options))
    fits.sort(key=lambda f: f[0])
    return fits


def _trailing_fillers(row: list[tuple[str, ...]], classes: str) -> list[tuple[str, ...]]:
    """After fillers at the end of a letter-or-digit field only fillers: what tesseract makes
    of a long run of them (K, C, E...) is one. (K counts 0 like '<': no check digit could
    tell.)"""
    out = list(row)
    end = len(classes)
    while end > 0:
        start = end
        while start > 0 and classes[start - 1] == "N":
            start -= 1
        if start < end:
            field = [o[0] for o in out[start:end]]
            i = end - start
            while i > 0 and (field[i - 1] == "<" or field[i - 1] in _FILLER_LOOKALIKES):
                i -= 1
            tail = field[i:]
            if "<" in tail:
                first = i + tail.index("<")
                for k in range(start + first, end):
                    out[k] = ("<",)
        end = start - 1 if start == end else start
    return out


def _fit_line(line: str, width: int) -> list[tuple[int, str]]:
    """Ways to make ``line`` ``width`` long by growing or shrinking one run of '<'."""
    delta = width - len(line)
    if delta == 0:
        return [(0, line)]
    out: set[str] = set()
    for m in re.finditer(r"<+", line):
        run = len(m.group()) + delta
        if run >= 1:
            out.add(line[: m.start()] + "<" * run + line[m.end() :])
    out.add(line + "<" * delta if delta > 0 else line[:width])
    return [(abs(delta), s) for s in sorted(out)]


def _fit_names(line: str, width: int) -> str:
    """A name line brought to ``width``: only its trailing fillers may absorb a difference."""
    if len(line) > width:
        if set(line[width:]) - _FILLER_LOOKALIKES - {"<"}:
            raise MRZUnreadable("the name line of the MRZ is too long")
        return line[:width]
    return line + "<" * (width - len(line))


def _certain(ch: str, cls: str) -> str:
    """The repair that the position's type leaves no doubt about."""
    if cls in "DC" and ch not in _DIGITS and ch != "<":
        return _TO_DIGIT.get(ch, ch)
    if cls in "AL" and ch in _DIGITS:
        return _TO_LETTER.get(ch, ch)
    if cls == "S" and ch not in "MFX<":
        return _SEX.get(ch, ch)
    return ch


def _names(line: str, start: int) -> str:
    """Fillers in a name field read by OCR alone: after the names only fillers (a look-alike
    standing among them is one), and never 3 in a row between names."""
    head, chars = line[:start], list(line[start:])
    i = len(chars)
    while i > 0 and (chars[i - 1] == "<" or _lone_lookalike(chars, i - 1)):
        i -= 1
    body = re.sub(r"<{3,}", "<<", "".join(chars[:i]))
    return head + (body + "<" * len(chars))[: len(chars)]


def _lone_lookalike(chars: list[str], i: int) -> bool:
    """A filler look-alike with fillers on both sides (two on one side), or last after two."""
    if chars[i] not in _FILLER_LOOKALIKES:
        return False
    left = "".join(chars[max(0, i - 2) : i])
    right = "".join(chars[i + 1 : i + 3])
    if i == len(chars) - 1:
        return left == "<<"
    return left.endswith("<") and right.startswith("<") and "<<" in (left, right)


def _next_to_filler(line: str, i: int) -> bool:
    return (i > 0 and line[i - 1] == "<") or (i + 1 < len(line) and line[i + 1] == "<")


# ------------------------------------------------------------------------------- two readers
_SURE = 0.08  # a shape score this far above the next allowed character: the shapes are sure
# What tesseract's English model reads wrong in OCR-B again and again (measured on rendered
# documents: ID read IO, OU read QU): there the shapes decide, when clearly better.
_TESSERACT_CONFUSES = frozenset(map(frozenset, ("OQ", "OD", "DQ", "IL")))
_SHAPES_DECIDE = 0.10


@dataclass(frozen=True)
class _Cell:
    """How well each OCR-B character (``_ALPHABET`` order) fits one character cell."""

    scores: np.ndarray

    @property
    def filler(self) -> str:
        """``<`` surely a filler, ``X`` surely not, ``?`` unsure."""
        s = self.scores
        order = np.argsort(-s)
        lt = s[-1]
        if order[0] == len(_ALPHABET) - 1 and lt >= 0.55 and lt - s[order[1]] >= 0.05:
            return "<"
        if order[0] != len(_ALPHABET) - 1 and s[order[0]] - lt >= 0.08:
            return "X"
        return "?"

    def score(self, char: str) -> float:
        """How well ``char`` fits."""
        return float(self.scores[_ALPHABET.index(char)])

    def best(self, allowed: str) -> tuple[str, float]:
        """The best allowed character and its lead over the next allowed one."""
        ranked = sorted(
            ((float(self.scores[_ALPHABET.index(c)]), c) for c in allowed), reverse=True
        )
        return ranked[0][1], ranked[0][0] - ranked[1][0]


def _align(ocr: str, row: Sequence[_Cell]) -> str:
    """OCR's characters placed on a line's cells by the cheapest alignment (tesseract drops
    and invents characters, mostly in runs of fillers): a character costs what it fits worse
    than the cell's best shape. Fillers come from the shapes; ``?`` marks a cell that OCR
    gave no character for."""
    n, m = len(row), len(ocr)
    mask = [c.filler for c in row]
    tops = [float(c.scores.max()) for c in row]
    inf = float("inf")

    def pair(ch: str, j: int) -> float:
        if mask[j] == "<":
            return 0 if ch == "<" else 1 if ch in _FILLER_LOOKALIKES else 3
        if mask[j] == "X" and ch == "<":
            return 3
        fit = row[j].score(ch) if ch in _ALPHABET else 0.0
        return min(3.0, 5 * (tops[j] - fit))

    cost = [[inf] * (n + 1) for _ in range(m + 1)]
    step = [[0] * (n + 1) for _ in range(m + 1)]
    cost[0][0] = 0
    for i in range(m + 1):
        for j in range(n + 1):
            here = cost[i][j]
            if here == inf:
                continue
            if i < m and j < n and here + pair(ocr[i], j) < cost[i + 1][j + 1]:
                cost[i + 1][j + 1], step[i + 1][j + 1] = here + pair(ocr[i], j), 1
            drop = 1 if ocr[i : i + 1] in ("<", *_FILLER_LOOKALIKES) else 2
            if i < m and here + drop < cost[i + 1][j]:
                cost[i + 1][j], step[i + 1][j] = here + drop, 2
            miss = 1 if j < n and mask[j] == "<" else 3
            if j < n and here + miss < cost[i][j + 1]:
                cost[i][j + 1], step[i][j + 1] = here + miss, 3
    out: list[str] = []
    i, j = m, n
    while i or j:
        s = step[i][j]
        if s == 1:
            out.append("<" if mask[j - 1] == "<" else ocr[i - 1])
            i, j = i - 1, j - 1
        elif s == 2:
            i -= 1
        else:
            out.append("<" if mask[j - 1] == "<" else "?")
            j -= 1
    return "".join(reversed(out))


def _cell_options(texts: Sequence[str], cells: list[list[_Cell]]) -> tuple[_Layout, _Options]:
    """Tesseract's readings (one per image variant tried) and the OCR-B shapes' reading,
    position by position.

    Fillers come from the shapes. A character stands where the shapes and a tesseract reading
    agree. Where they disagree on a position guarded by a check digit, each is a candidate
    (the check digits decide); elsewhere (names, nationality, sex, document code; and a filler
    against a K, which no check digit can tell apart) the read is refused, unless it is one of
    the letters tesseract is known to confuse in OCR-B and the shapes are clearly sure."""
    layout = TD1 if len(cells) == 3 else TD3
    readings: list[list[str]] = []
    failure = "OCR gave no text"
    for text in texts:
        try:
            lines = _mrz_lines(text, len(cells))
        except MRZUnreadable as exc:
            failure = str(exc)
            continue
        readings.append([_align(line, row) for line, row in zip(lines, cells, strict=True)])
    if not readings:
        raise MRZUnreadable(failure)
    options: _Options = []
    for li, (row, classes) in enumerate(zip(cells, layout.classes, strict=True)):
        out: list[tuple[str, ...]] = []
        for pi, (cell, cls) in enumerate(zip(row, classes, strict=True)):
            ocr = list(dict.fromkeys(_certain(r[li][pi], cls) for r in readings))
            if cell.filler == "<" and "<" in ocr:
                out.append(("<",))
                continue
            allowed = _ALLOWED[cls]
            shape, _ = cell.best(allowed)
            others = [c for c in ocr if c in allowed and c != shape]
            if shape in ocr:
                out.append((shape,))
            elif cls in _GUARDED and not any(_same_check(c, shape) for c in others):
                # the check digits decide; the better fitting shape is tried first
                ranked = sorted([shape, *others], key=lambda c: -cell.score(c))
                out.append(tuple(ranked))
            elif others and all(
                frozenset((c, shape)) in _TESSERACT_CONFUSES
                and cell.score(shape) - cell.score(c) >= _SHAPES_DECIDE
                for c in others
            ):
                out.append((shape,))
            else:
                why = "no check digit" if cls not in _GUARDED else "its check digit cannot tell"
                raise MRZUnreadable(f"the {_field(layout, li, pi)} cannot be read for sure ({why})")
        options.append(out)
    return layout, options


def _same_check(a: str, b: str) -> bool:
    """Whether check digits cannot tell ``a`` from ``b``: '<', 0, A, K and U all count 0
    (their values are multiples of 10), so a filler misread as K changes no check digit."""
    values = {c: i for i, c in enumerate(_DIGITS + _LETTERS)} | {"<": 0}
    return a in values and b in values and values[a] % 10 == values[b] % 10


def _field(layout: _Layout, line: int, pos: int) -> str:
    for li, start, end, name in layout.fields:
        if li == line and start <= pos < end:
            return name
    return "MRZ"


@functools.cache
def _glyphs() -> tuple[np.ndarray, ...]:
    """Each ``_ALPHABET`` character of OCR-B, white on black, one advance wide, from a line's
    top (above the digits) to just below its baseline; 100 px a character advance."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.truetype(str(_ocrb_path()), 100)
    size = 100 * 100 / font.getlength("A")
    font = ImageFont.truetype(str(_ocrb_path()), round(size))
    out = []
    for c in _ALPHABET:
        img = Image.new("L", (110, 160), 0)
        ImageDraw.Draw(img).text((0, 130), c, font=font, fill=255, anchor="ls")
        out.append(np.asarray(img)[130 - round(0.80 * size) : 130 + 3, :100].copy())
    return tuple(out)


def _templates(pitch: float) -> list[np.ndarray]:
    f = pitch / 100
    return [
        cv2.GaussianBlur(
            cv2.resize(g, None, fx=f, fy=f, interpolation=cv2.INTER_AREA).astype(np.float32),
            (0, 0),
            0.7,
        )
        for g in _glyphs()
    ]


@dataclass(frozen=True)
class _Grid:
    """Where the character cells of a straightened MRZ band are."""

    rows: tuple[tuple[int, int], ...]  # (top, bottom) of each line's ink
    left: float  # x where the first cell starts
    pitch: float
    width: int  # characters a line


def _grid(grey: np.ndarray) -> _Grid | None:
    """The cell grid of a straightened band: 3 lines of 30 cells or 2 of 44, or None."""
    _, ink = cv2.threshold(grey, 0, 255, cv2.THRESH_BINARY_INV | cv2.THRESH_OTSU)
    ink = cv2.morphologyEx(ink, cv2.MORPH_OPEN, np.ones((2, 2), np.uint8))
    rows = []
    for top, bottom in _text_rows(ink):
        if bottom - top < 6 or ((ink[top:bottom] > 0).any(axis=0)).mean() > 0.85:
            continue  # a speck, or an edge of the document (not text)
        rows.append((top, bottom))
    if len(rows) < 2:
        return None
    h = float(np.median([b - a for a, b in rows]))
    rows = [(a, b) for a, b in rows if 0.6 * h <= b - a <= 1.6 * h]
    extents = []
    for a, b in rows:
        cols = np.flatnonzero((ink[a:b] > 0).sum(axis=0) >= max(2, 0.1 * (b - a)))
        extents.append((int(cols[0]), int(cols[-1])) if cols.size else (0, 0))
    if len(rows) in (2, 3):
        width = 30 if len(rows) == 3 else 44
    else:
        span = np.median([r - lft for lft, r in extents[-3:]])
        width = 30 if span / h < 37 else 44
    n = 3 if width == 30 else 2
    if len(rows) < n:
        return None
    rows, extents = rows[-n:], extents[-n:]
    left, right = min(e[0] for e in extents), max(e[1] for e in extents)
    pitch = (right - left + 1) / (width - 0.325)  # OCR-B ink: 15 % to 83 % of a cell
    if not 0.6 * h <= pitch <= 1.6 * h:
        return None
    return _Grid(tuple(rows), left - 0.155 * pitch, pitch, width)


def _read_cells(grey: np.ndarray, grid: _Grid) -> list[list[_Cell]]:
    """How well every OCR-B character fits every cell (normalised cross-correlation, with a
    little slack for an imperfect grid)."""
    templates = _templates(grid.pitch)
    th, tw = templates[0].shape
    inv = 255 - grey.astype(np.float32)
    p = grid.pitch
    out = []
    for top, bottom in grid.rows:
        h = bottom - top
        ya = max(0, round(top - 0.35 * h) - 2)
        yb = min(inv.shape[0], max(round(bottom + 0.35 * h), ya + th + 2))
        row = []
        for i in range(grid.width):
            x = grid.left + i * p
            xa = max(0, round(x - 0.3 * p))
            xb = min(inv.shape[1], max(round(x + 1.3 * p), xa + tw + 2))
            win = inv[ya:yb, xa:xb]
            if win.shape[0] < th or win.shape[1] < tw:
                scores = np.zeros(len(_ALPHABET), np.float32)
            else:
                scores = np.array(
                    [cv2.matchTemplate(win, t, cv2.TM_CCOEFF_NORMED).max() for t in templates],
                    np.float32,
                )
            row.append(_Cell(scores))
        out.append(row)
    return out


# ------------------------------------------------------------------------------- OCR
@functools.cache
def _tesseract() -> str:
    exe = shutil.which("tesseract")
    if exe is None:
        raise OCRUnavailable(
            "the OCR engine is not installed: apt-get install tesseract-ocr tesseract-ocr-eng"
        )
    return exe


def _ocr(image: np.ndarray) -> str:
    """Tesseract's text for a grey image of MRZ lines (PNG on stdin, text on stdout)."""
    ok, png = cv2.imencode(".png", image)
    if not ok:
        raise MRZUnreadable("the image could not be encoded for OCR")
    cmd = [_tesseract(), "stdin", "stdout", "-l", "eng", "--psm", "6", "--dpi", "300"]
    for setting in (f"tessedit_char_whitelist={_ALPHABET}", "load_system_dawg=0"):
        cmd += ["-c", setting]
    cmd += ["-c", "load_freq_dawg=0"]
    env = {**os.environ, "OMP_THREAD_LIMIT": "1"}  # one small image: threads only cost
    try:
        out = subprocess.run(
            cmd, input=png.tobytes(), capture_output=True, timeout=TESSERACT_TIMEOUT, env=env
        )
    except subprocess.TimeoutExpired as exc:
        raise MRZUnreadable(f"OCR took longer than {TESSERACT_TIMEOUT:g} s") from exc
    if out.returncode != 0:
        err = out.stderr.decode(errors="replace").strip().splitlines()
        raise OCRUnavailable(f"tesseract failed: {err[-1] if err else out.returncode}")
    return out.stdout.decode(errors="replace")


# ------------------------------------------------------------------------------- finding the MRZ
_WORK_WIDTH = 1000  # px: the band is looked for at this width
_CAP_HEIGHT = 30  # px: the height of characters shown to OCR


@dataclass(frozen=True)
class _Band:
    centre: tuple[float, float]  # in the original image's pixels
    size: tuple[float, float]  # (along the lines, across)
    angle: float  # degrees, as cv2.getRotationMatrix2D takes it


def read_mrz(image: np.ndarray) -> MRZ:
    """Read the MRZ printed on the document in ``image`` (BGR or grey, uint8, any size).

    The MRZ band is located (the widest block of text lines, the lower ones first; the whole
    image when there is none), straightened (rotations up to about ±10°), enlarged and read
    twice: by tesseract, and cell by cell against the OCR-B character shapes. Fillers come from
    the shapes; letters and digits from tesseract, repaired by field type; where the readers
    disagree, the check digits decide, and on fields no check digit guards (names, nationality,
    sex, document code) they must agree. Raises :class:`MRZUnreadable` saying why when no MRZ
    with valid check digits can be read for sure (:class:`OCRUnavailable`, a kind of it, when
    tesseract is missing or fails), and ValueError for an array that is not an 8-bit image."""
    grey = _grey(image)
    _tesseract()
    reasons: list[str] = []
    bands = _find_bands(grey)
    for band in bands[:3]:
        crop = _straighten(grey, band)
        grid = _grid(crop)
        cells = None
        if grid is not None:
            with contextlib.suppress(OCRUnavailable):  # no OCR-B font: tesseract alone
                cells = _read_cells(crop, grid)
            crop = _cut(crop, grid)
        texts: list[str] = []
        for variant in _variants(crop):
            try:
                texts.append(_ocr(variant))
                if cells is not None:
                    return _search(*_one(_cell_options(texts, cells)))
                return repair_mrz_text(texts[-1])
            except OCRUnavailable:
                raise
            except MRZUnreadable as exc:
                reasons.append(str(exc))
    if not bands:
        reasons.append("no MRZ band found in the image")
    if not bands and _ink(grey) < 0.35:  # not noise, where OCR would only take its time
        try:  # a close-up of the band alone has no "band" in it
            return repair_mrz_text(_ocr(_binarise(_scale_for_ocr(grey, None))))
        except OCRUnavailable:
            raise
        except MRZUnreadable as exc:
            reasons.append(str(exc))
    raise MRZUnreadable(_why(reasons))


def _one(found: tuple[_Layout, _Options]) -> tuple[_Layout, list[tuple[int, _Options]]]:
    return found[0], [(0, found[1])]


def _why(reasons: Sequence[str]) -> str:
    """The most telling reason: a check digit or a field beats a line count."""
    for key in ("check digit", "ambiguous", "cannot be read", "OCR gave", "no MRZ band"):
        for r in reasons:
            if key in r:
                return r
    return reasons[0] if reasons else "no MRZ found"


def _ink(grey: np.ndarray) -> float:
    """The share of dark pixels (Otsu): 10-25 % for printing, about half for noise."""
    _, dark = cv2.threshold(grey, 0, 255, cv2.THRESH_BINARY_INV | cv2.THRESH_OTSU)
    return cv2.countNonZero(dark) / dark.size


def _grey(image: np.ndarray) -> np.ndarray:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        raise ValueError("the image must be a uint8 numpy array")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 3 and image.shape[2] in (3, 4):
        code = cv2.COLOR_BGR2GRAY if image.shape[2] == 3 else cv2.COLOR_BGRA2GRAY
        image = cv2.cvtColor(image, code)
    if image.ndim != 2:
        raise ValueError("the image must be grey (H x W) or colour (H x W x 3)")
    if min(image.shape) < 16:
        raise MRZUnreadable("the image is too small to hold an MRZ")
    return np.ascontiguousarray(image)


def _find_bands(grey: np.ndarray) -> list[_Band]:
    """Wide blocks of dark text lines, most MRZ-like (wide, low in the image) first."""
    h, w = grey.shape
    f = _WORK_WIDTH / w
    small = cv2.resize(
        grey,
        (_WORK_WIDTH, max(1, round(h * f))),
        interpolation=cv2.INTER_AREA if f < 1 else cv2.INTER_LINEAR,
    )
    sh, sw = small.shape
    small = cv2.GaussianBlur(small, (3, 3), 0)
    rect = functools.partial(cv2.getStructuringElement, cv2.MORPH_RECT)
    blackhat = cv2.morphologyEx(small, cv2.MORPH_BLACKHAT, rect((31, 15)))
    _, ink = cv2.threshold(blackhat, 0, 255, cv2.THRESH_BINARY | cv2.THRESH_OTSU)
    # printing, not noise: Otsu finds a threshold on a blank page too
    if cv2.countNonZero(ink) < 0.002 * ink.size or np.median(blackhat[ink > 0]) < 25:
        return []
    lines = cv2.morphologyEx(ink, cv2.MORPH_CLOSE, rect((25, 3)))
    lines = cv2.morphologyEx(lines, cv2.MORPH_OPEN, rect((9, 5)))
    block = cv2.morphologyEx(lines, cv2.MORPH_CLOSE, rect((15, 21)))
    contours, _ = cv2.findContours(block, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    found: list[tuple[float, _Band]] = []
    for c in contours:
        (cx, cy), (rw, rh), ang = cv2.minAreaRect(c)
        if rw < rh:
            rw, rh, ang = rh, rw, ang - 90
        ang = (ang + 90) % 180 - 90
        if abs(ang) > 15 or rw < 0.3 * sw or rw < 3 * rh or rh < 8:
            continue
        found.append((rw * (0.5 + cy / sh), _Band((cx / f, cy / f), (rw / f, rh / f), ang)))
    found.sort(key=lambda t: -t[0])
    return [b for _, b in found]


def _straighten(grey: np.ndarray, band: _Band) -> np.ndarray:
    """The band, rotated level and cut out with a margin, scaled for OCR."""
    (cx, cy), (bw, bh) = band.centre, band.size
    pad_x, pad_y = 0.04 * bw + 8, 0.25 * bh + 8
    out_w, out_h = round(bw + 2 * pad_x), round(bh + 2 * pad_y)
    m = cv2.getRotationMatrix2D((cx, cy), band.angle, 1.0)
    m[0, 2] += out_w / 2 - cx
    m[1, 2] += out_h / 2 - cy
    crop = cv2.warpAffine(
        grey, m, (out_w, out_h), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE
    )
    return _scale_for_ocr(crop, band)


def _cut(grey: np.ndarray, grid: _Grid) -> np.ndarray:
    """Only the MRZ lines of a band (no document edge, no printing above)."""
    h = grid.rows[0][1] - grid.rows[0][0]
    top, bottom = max(0, round(grid.rows[0][0] - 0.5 * h)), round(grid.rows[-1][1] + 0.5 * h)
    left = max(0, round(grid.left - 0.5 * grid.pitch))
    right = round(grid.left + (grid.width + 0.5) * grid.pitch)
    return grey[top:bottom, left:right]


def _text_rows(binary: np.ndarray) -> list[tuple[int, int]]:
    """Runs of rows that hold ink (text lines) in a binary image, ink = 255."""
    profile = (binary > 0).mean(axis=1)
    if profile.max() <= 0:
        return []
    on = np.concatenate([[False], profile > 0.25 * profile.max(), [False]])
    edges = np.flatnonzero(on[1:] != on[:-1])
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True)]


def _scale_for_ocr(grey: np.ndarray, band: _Band | None) -> np.ndarray:
    """Resized so that characters stand about ``_CAP_HEIGHT`` px tall."""
    if band is not None:
        _, ink = cv2.threshold(grey, 0, 255, cv2.THRESH_BINARY_INV | cv2.THRESH_OTSU)
        heights = sorted(b - a for a, b in _text_rows(ink) if b - a >= 3)
        cap = heights[len(heights) // 2] if heights else grey.shape[1] / 40
        f = min(max(_CAP_HEIGHT / max(cap, 1), 0.25), 6.0)
    else:
        f = min(1.0, 1600 / grey.shape[1])
    if abs(f - 1) < 0.05:
        return grey
    return cv2.resize(
        grey, None, fx=f, fy=f, interpolation=cv2.INTER_CUBIC if f > 1 else cv2.INTER_AREA
    )


def _binarise(grey: np.ndarray) -> np.ndarray:
    smooth = cv2.GaussianBlur(grey, (3, 3), 0)
    _, out = cv2.threshold(smooth, 0, 255, cv2.THRESH_BINARY | cv2.THRESH_OTSU)
    return _pad(out)


def _variants(crop: np.ndarray) -> Iterator[np.ndarray]:
    """What tesseract is shown of a band, one after the other while the read fails."""
    yield _binarise(crop)
    yield _pad(crop)
    yield _binarise(cv2.resize(crop, None, fx=1.4, fy=1.4, interpolation=cv2.INTER_CUBIC))


def _pad(grey: np.ndarray) -> np.ndarray:
    return cv2.copyMakeBorder(grey, 20, 20, 20, 20, cv2.BORDER_CONSTANT, value=255)


# ------------------------------------------------------------------------------- rendering
_PX_PER_MM = 300 / 25.4
_PITCH_MM = 2.54  # ICAO 9303: 10 characters per inch


@functools.cache
def _ocrb_path() -> Path:
    for d in _FONT_DIRS:
        for name in _FONT_NAMES:
            if (d / name).is_file():
                return d / name
    for d in _FONT_DIRS:
        if d.is_dir():
            for p in sorted(d.rglob("*")):
                if re.fullmatch(r"ocr-?b\.(otf|ttf)", p.name.lower()):
                    return p
    raise OCRUnavailable("the OCR-B font is not installed: apt-get install fonts-ocr-b")


def render_card_back(
    mrz_text: str,
    seed: int = 0,
    *,
    angle: float = 0.0,
    blur: float = 0.0,
    noise: float = 0.0,
    scale: float = 1.0,
) -> np.ndarray:
    """The simulated document camera's BGR image of a card back (TD1) or passport data page
    (TD3) whose MRZ is ``mrz_text`` (its lines joined by newlines; check digits are not
    verified, so a wrong MRZ can be drawn too).

    The document (ID-1, 85.6 x 54 mm, or 125 x 88 mm for a passport page, at 300 dpi) lies on
    a darker desk, with printing in its upper part and the MRZ in OCR-B at 2.54 mm a
    character at the bottom. Then: rotation by ``angle`` degrees (counter-clockwise),
    gaussian ``blur`` (sigma, px), gaussian ``noise`` (standard deviation, grey levels),
    downscaling by ``scale`` (0 < scale <= 1) and the camera's JPEG softness. The same
    arguments give the same image. Raises ValueError for text that is not an MRZ's shape and
    OCRUnavailable when the OCR-B font is missing."""
    from PIL import Image, ImageDraw, ImageFont

    lines = [line.strip() for line in mrz_text.strip().splitlines() if line.strip()]
    if not (
        (len(lines) == 3 and all(len(line) == 30 for line in lines))
        or (len(lines) == 2 and all(len(line) == 44 for line in lines))
    ) or not all(re.fullmatch(r"[A-Z0-9<]+", line) for line in lines):
        raise ValueError("an MRZ is 3 lines of 30 characters or 2 of 44, A-Z 0-9 <")
    if not 0 < scale <= 1:
        raise ValueError("scale must be in (0, 1]")
    rng = np.random.default_rng(seed)
    td1 = len(lines) == 3
    w_mm, h_mm = (85.6, 54.0) if td1 else (125.0, 88.0)
    cw, ch = round(w_mm * _PX_PER_MM), round(h_mm * _PX_PER_MM)
    card = _card_face(cw, ch, td1, rng)

    pitch = _PITCH_MM * _PX_PER_MM
    font_path = _ocrb_path()
    probe = ImageFont.truetype(str(font_path), 100)
    size = 100 * pitch / probe.getlength("A")
    font = ImageFont.truetype(str(font_path), max(8, round(size)))
    line_pitch = (4.3 if td1 else 6.0) * _PX_PER_MM
    x0 = (cw - pitch * len(lines[0])) / 2
    bottom = ch - (4.0 if td1 else 5.0) * _PX_PER_MM
    pil = Image.fromarray(cv2.cvtColor(card, cv2.COLOR_BGR2RGB))
    draw = ImageDraw.Draw(pil)
    ink = tuple(int(v) for v in rng.integers(15, 45, 3))
    for i, line in enumerate(lines):
        baseline = bottom - (len(lines) - 1 - i) * line_pitch
        for j, c in enumerate(line):
            draw.text((x0 + j * pitch, baseline), c, font=font, fill=ink, anchor="ls")
    card = cv2.cvtColor(np.asarray(pil), cv2.COLOR_RGB2BGR)

    # the desk around it, the card's rounded corners
    margin = round(0.14 * cw)
    dx, dy = (int(v) for v in rng.integers(-margin // 3, margin // 3 + 1, 2))
    hh, ww = ch + 2 * margin, cw + 2 * margin
    desk_colour = rng.integers(35, 95, 3).astype(np.float32)
    shade = np.linspace(0.8, 1.15, ww, dtype=np.float32)[None, :, None]
    desk = np.clip(desk_colour[None, None, :] * shade + rng.normal(0, 4, (hh, ww, 3)), 0, 255)
    canvas = desk.astype(np.uint8)
    mask = np.zeros((ch, cw), np.uint8)
    r = round(3.18 * _PX_PER_MM)
    cv2.rectangle(mask, (r, 0), (cw - 1 - r, ch - 1), 255, -1)
    cv2.rectangle(mask, (0, r), (cw - 1, ch - 1 - r), 255, -1)
    for px, py in ((r, r), (cw - 1 - r, r), (r, ch - 1 - r), (cw - 1 - r, ch - 1 - r)):
        cv2.circle(mask, (px, py), r, 255, -1)
    top, left = margin + dy, margin + dx
    region = canvas[top : top + ch, left : left + cw]
    region[mask > 0] = card[mask > 0]

    out: np.ndarray = canvas
    if angle:
        m = cv2.getRotationMatrix2D((ww / 2, hh / 2), angle, 1.0)
        out = cv2.warpAffine(
            out, m, (ww, hh), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT
        )
    if blur > 0:
        out = cv2.GaussianBlur(out, (0, 0), blur)
    if noise > 0:
        out = np.clip(out.astype(np.float32) + rng.normal(0, noise, out.shape), 0, 255).astype(
            np.uint8
        )
    if scale != 1:
        out = cv2.resize(out, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    out = cv2.GaussianBlur(out, (0, 0), 0.6)  # the camera's lens, then its JPEG
    ok, jpeg = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(80, 93))])
    assert ok
    return np.asarray(cv2.imdecode(jpeg, cv2.IMREAD_COLOR), dtype=np.uint8)


def _card_face(w: int, h: int, td1: bool, rng: np.random.Generator) -> np.ndarray:
    """The printed document without its MRZ: background tint, guilloche, text, photo box."""
    base = np.array([rng.integers(200, 236), rng.integers(215, 240), rng.integers(220, 245)])
    tint = np.linspace(0.95, 1.04, w, dtype=np.float32)[None, :, None]
    card = np.clip(base[None, None, :].astype(np.float32) * tint, 0, 255)
    card = np.repeat(card, h, axis=0).astype(np.uint8)
    # guilloche: faint waves over the whole card
    xs = np.arange(0, w, 4, dtype=np.float32)
    wave_colour = tuple(int(v) for v in np.clip(base - rng.integers(18, 35), 0, 255))
    for k in range(14):
        amp, freq, phase = rng.uniform(6, 30), rng.uniform(0.004, 0.02), rng.uniform(0, 6.3)
        y0 = (k + 0.5) * h / 14
        pts = np.stack([xs, y0 + amp * np.sin(freq * xs + phase)], axis=1).astype(np.int32)
        cv2.polylines(card, [pts], False, wave_colour, 1, cv2.LINE_AA)
    dark = tuple(int(v) for v in rng.integers(40, 90, 3))
    mm = _PX_PER_MM
    upper = h * (0.55 if td1 else 0.62)  # the MRZ zone below stays clear
    title = "ROYAUME DU MAROC" if rng.random() < 0.7 else "KINGDOM OF MOROCCO"
    cv2.putText(
        card,
        title,
        (round(5 * mm), round(7 * mm)),
        cv2.FONT_HERSHEY_DUPLEX,
        1.1,
        dark,
        2,
        cv2.LINE_AA,
    )
    if not td1:
        cv2.putText(
            card,
            "PASSEPORT  PASSPORT",
            (round(5 * mm), round(13 * mm)),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.9,
            dark,
            2,
            cv2.LINE_AA,
        )
        px, py, pw, ph = round(5 * mm), round(17 * mm), round(32 * mm), round(34 * mm)
        cv2.rectangle(card, (px, py), (px + pw, py + ph), (150, 150, 155), -1)
        cv2.ellipse(
            card, (px + pw // 2, py + ph // 2), (pw // 3, ph // 3), 0, 0, 360, (110, 110, 118), -1
        )
    words = ["Adresse", "Date", "Lieu", "Nom", "Prenom", "Fes", "Rabat", "Casablanca", "Sexe"]
    y = 12 * mm if td1 else 20 * mm
    x_text = 5 * mm if td1 else 42 * mm
    while y < upper - 3 * mm:
        n = int(rng.integers(2, 5))
        text = (
            " ".join(str(rng.choice(words)) + (":" if i == 0 else "") for i in range(n))
            + f" {int(rng.integers(1, 9999))}"
        )
        cv2.putText(
            card,
            text,
            (round(x_text), round(y)),
            cv2.FONT_HERSHEY_SIMPLEX,
            float(rng.uniform(0.55, 0.8)),
            dark,
            1,
            cv2.LINE_AA,
        )
        y += float(rng.uniform(4.5, 6.5)) * mm
    for _ in range(3):  # a few printed rules
        yy = round(rng.uniform(9 * mm, upper - 2 * mm))
        x1 = round(rng.uniform(0.4, 0.7) * w)
        cv2.line(card, (x1, yy), (w - round(5 * mm), yy), wave_colour, 2, cv2.LINE_AA)
    return card
