"""Images for the adjudicator's eyes only: face token images and finger comparisons, drawn
server side and watermarked with who is looking and when (a photo of the screen names its
taker). Nothing here is stored or cached: the router serves each with ``no-store``."""

from __future__ import annotations

import math

import cv2
import numpy as np

from biometrics import fingerprint as fp
from central_api.adjudication.service import FingerEvidence
from central_api.exceptions import NotFound

_FACE_HEIGHT = 360
_PANEL = (300, 375)  # one finger's panel, width x height
_PAIR_COLOURS = [
    (0, 140, 255),
    (0, 200, 0),
    (255, 80, 0),
    (200, 0, 200),
    (0, 200, 200),
    (60, 60, 230),
]


class ImageUnreadable(NotFound):
    """A stored image that cannot be decoded (answered 404, never a server error)."""


def watermark(img: np.ndarray, mark: str) -> np.ndarray:
    """``img`` (BGR) with ``mark`` tiled diagonally, faint, and in a band along the bottom."""
    h, w = img.shape[:2]
    layer = np.zeros((2 * max(h, w), 2 * max(h, w), 3), np.uint8)
    step_y, step_x = 70, 10 * len(mark) + 60
    for y in range(0, layer.shape[0], step_y):
        for x in range(-(y % step_x), layer.shape[1], step_x):
            cv2.putText(layer, mark, (x, y), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1)
    size = layer.shape[0]
    turn = cv2.getRotationMatrix2D((size / 2, size / 2), 30, 1.0)
    layer = cv2.warpAffine(layer, turn, (size, size))
    y0, x0 = (size - h) // 2, (size - w) // 2
    tile = layer[y0 : y0 + h, x0 : x0 + w]
    out = cv2.addWeighted(img, 1.0, tile, 0.28, 0)
    cv2.rectangle(out, (0, h - 18), (w, h), (0, 0, 0), -1)
    cv2.putText(out, mark, (4, h - 5), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1)
    return out


def png(img: np.ndarray) -> bytes:
    """PNG bytes of an image."""
    ok, data = cv2.imencode(".png", img)
    if not ok:
        raise ImageUnreadable("cannot encode the image")
    return data.tobytes()


def face_png(data: bytes, mark: str) -> bytes:
    """A face token image (JPEG, PNG or JPEG 2000) scaled for the screen and watermarked."""
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise ImageUnreadable("the face image cannot be decoded")
    scale = _FACE_HEIGHT / img.shape[0]
    img = cv2.resize(img, (round(img.shape[1] * scale), _FACE_HEIGHT), interpolation=cv2.INTER_AREA)
    return png(watermark(img, mark))


def _panel(
    template: fp.FingerprintTemplate | None, record: bytes | None
) -> tuple[np.ndarray, float]:
    """A finger's panel (its image when there is one, else blank) and the scale applied."""
    w, h = _PANEL
    canvas = np.full((h, w, 3), 245, np.uint8)
    if template is None:
        cv2.putText(
            canvas, "not captured", (70, h // 2), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 200), 1
        )
        return canvas, 1.0
    src_w, src_h = template.width, template.height
    pixels = None
    if record is not None:
        try:
            pixels = fp.FingerImage.from_iso19794_4(record).pixels
        except fp.FingerImageError:
            pixels = None
    if pixels is not None and pixels.dtype != np.uint8:
        pixels = (pixels / max(1, int(pixels.max())) * 255).astype(np.uint8)
    scale = min(w / max(1, src_w), h / max(1, src_h))
    if pixels is not None:
        resized = cv2.resize(
            pixels, (round(pixels.shape[1] * scale), round(pixels.shape[0] * scale))
        )
        rh, rw = min(h, resized.shape[0]), min(w, resized.shape[1])
        canvas[:rh, :rw] = cv2.cvtColor(resized[:rh, :rw], cv2.COLOR_GRAY2BGR)
    else:
        cv2.putText(
            canvas, "minutiae only", (8, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (90, 90, 90), 1
        )
    return canvas, scale


def _draw_minutiae(
    img: np.ndarray, t: fp.FingerprintTemplate, scale: float, paired: dict[int, int]
) -> None:
    for i, m in enumerate(t.minutiae):
        x, y = round(m.x * scale), round(m.y * scale)
        colour = _PAIR_COLOURS[paired[i] % len(_PAIR_COLOURS)] if i in paired else (40, 40, 200)
        radius = 5 if i in paired else 3
        cv2.circle(img, (x, y), radius, colour, 2 if i in paired else 1)
        dx, dy = math.cos(m.angle) * 11, -math.sin(m.angle) * 11
        cv2.line(img, (x, y), (round(x + dx), round(y + dy)), colour, 1)
        if i in paired:
            cv2.putText(
                img, str(paired[i] + 1), (x + 6, y - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.4, colour, 1
            )


def finger_png(ev: FingerEvidence, title: str, mark: str) -> bytes:
    """The probe's finger (left) and the candidate's (right), minutiae drawn, the pairs the
    comparison rests on numbered and joined, the score above; watermarked."""
    left, ls = _panel(ev.probe, ev.probe_image)
    right, rs = _panel(ev.candidate, ev.candidate_image)
    a = {i: k for k, (i, _, _) in enumerate(ev.pairs)}
    b = {j: k for k, (_, j, _) in enumerate(ev.pairs)}
    if ev.probe is not None:
        _draw_minutiae(left, ev.probe, ls, a)
    if ev.candidate is not None:
        _draw_minutiae(right, ev.candidate, rs, b)
    gap = 16
    header = 26
    w, h = _PANEL
    out = np.full((h + header, 2 * w + gap, 3), 255, np.uint8)
    out[header:, :w] = left
    out[header:, w + gap :] = right
    if ev.probe is not None and ev.candidate is not None:
        for k, (i, j, _) in enumerate(ev.pairs):
            p, q = ev.probe.minutiae[i], ev.candidate.minutiae[j]
            cv2.line(
                out,
                (round(p.x * ls), header + round(p.y * ls)),
                (w + gap + round(q.x * rs), header + round(q.y * rs)),
                _PAIR_COLOURS[k % len(_PAIR_COLOURS)],
                1,
                cv2.LINE_AA,
            )
    cv2.putText(out, title, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (20, 20, 20), 1)
    return png(watermark(out, mark))
