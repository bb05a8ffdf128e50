"""Calibration procedures: what a technician's test target looks like through a device,
measured and compared with the targets of the device's firmware configuration.

Each procedure is a pure function: image(s) (or timings) + the device's configuration ->
:class:`CalibrationResult` (what was measured, against which targets, passed or not, and a
sentence for the technician saying what failed and what to do). Record results with
``devices.history.DeviceHistory.record_calibration``.

Camera (RGB uint8 images, as ``biometrics.face`` takes them):

- :func:`exposure_white_balance`: an 18 % grey card filling the centre;
- :func:`focus`: an ISO 12233 slanted-edge chart across the centre (MTF50);
- :func:`uniformity`: a flat white field (vignetting, unevenness);
- :func:`geometry`: a person (or a calibration head) at the standing mark (eye distance).

Fingerprint scanner (grey uint8 images at the configured dpi):

- :func:`platen`: a blank capture (uniformity, dirt);
- :func:`resolution`: a grating of known period (the real dpi);
- :func:`reference_finger`: the NFIQ 2 of the kiosk's reference finger over time.

Card reader: :func:`apdu_round_trip` over the times :func:`measure_apdu_round_trip` takes.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from devices.exceptions import DeviceError
from devices.firmware import CameraConfig, CardReaderConfig, FingerprintConfig

PROCEDURES: dict[str, str] = {  # procedure -> the kind of device it calibrates
    "exposure_white_balance": "camera",
    "focus": "camera",
    "uniformity": "camera",
    "geometry": "camera",
    "platen": "fingerprint",
    "resolution": "fingerprint",
    "reference_finger": "fingerprint",
    "apdu_round_trip": "card_reader",
}


@dataclass(frozen=True)
class CalibrationResult:
    """The outcome of one calibration procedure on one device."""

    procedure: str
    device_model: str
    passed: bool
    measured: dict[str, float]
    targets: dict[str, float]
    message: str  # for the technician: what failed and what to do (or that all is well)
    details: dict[str, Any] = field(default_factory=dict)  # extra, not stored (e.g. a curve)

    def to_dict(self) -> dict[str, Any]:
        """The stored fields (without ``details``), JSON-ready."""
        return {
            "procedure": self.procedure,
            "device_model": self.device_model,
            "passed": self.passed,
            "measured": dict(self.measured),
            "targets": dict(self.targets),
            "message": self.message,
        }


def _result(
    procedure: str,
    model: str,
    measured: Mapping[str, float],
    targets: Mapping[str, float],
    failures: Sequence[str],
    ok: str,
    details: dict[str, Any] | None = None,
) -> CalibrationResult:
    return CalibrationResult(
        procedure=procedure,
        device_model=model,
        passed=not failures,
        measured={k: round(float(v), 4) for k, v in measured.items()},
        targets={k: float(v) for k, v in targets.items()},
        message="; ".join(failures) if failures else ok,
        details=details or {},
    )


# ------------------------------------------------------------------------------- images
def _rgb(image: np.ndarray) -> np.ndarray:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        raise TypeError("image must be a uint8 numpy array")
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError("image must have shape (H, W, 3), RGB")
    return image


def _grey(image: np.ndarray) -> np.ndarray:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        raise TypeError("image must be a uint8 numpy array")
    if image.ndim == 3 and image.shape[2] == 3:
        return np.asarray(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), dtype=np.float32)
    if image.ndim != 2:
        raise ValueError("image must be grey-scale (H, W) or RGB (H, W, 3)")
    return image.astype(np.float32)


def _linear(srgb: np.ndarray) -> np.ndarray:
    """sRGB code values (0-255) to linear light (0-1): light adds up there, not in sRGB."""
    v = np.clip(np.asarray(srgb, dtype=np.float64) / 255.0, 0, 1)
    return np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4)


def _srgb(linear: float) -> float:
    v = min(max(linear, 0.0), 1.0)
    return 255.0 * (12.92 * v if v <= 0.0031308 else 1.055 * v ** (1 / 2.4) - 0.055)


def _luminance(rgb_linear: np.ndarray) -> np.ndarray:
    """Rec. 709 / sRGB relative luminance of linear RGB."""
    return np.asarray(rgb_linear @ np.array([0.2126, 0.7152, 0.0722]))


def _centre(image: np.ndarray, fraction: float) -> np.ndarray:
    h, w = image.shape[:2]
    dy, dx = round(h * fraction / 2), round(w * fraction / 2)
    return image[h // 2 - dy : h // 2 + dy, w // 2 - dx : w // 2 + dx]


# ------------------------------------------------------------------------------ camera
# The grey card must fill the middle 30 % of the frame; beyond this grey-level spread (sRGB)
# over it, something else is in view (the card's edge, a hand), and the reading means nothing.
_CARD_MAX_SPREAD = 12.0


def exposure_white_balance(image: np.ndarray, config: CameraConfig) -> CalibrationResult:
    """Exposure and white balance from an 18 % grey card filling the centre of the frame:
    its level (sRGB of its luminance) within the band, R/G and B/G (linear light) within
    tolerance of 1."""
    cal = config.calibration
    patch = _centre(_rgb(image), 0.3).reshape(-1, 3).astype(np.float64)
    targets = {
        "grey_level_min": cal.grey_level_min,
        "grey_level_max": cal.grey_level_max,
        "wb_tolerance": cal.wb_tolerance,
    }
    spread = float(patch.mean(axis=1).std())
    lin = _linear(patch).mean(axis=0)
    r, g, b = (float(x) for x in lin)
    level = _srgb(float(_luminance(lin)))
    rg, bg = r / max(g, 1e-6), b / max(g, 1e-6)
    measured = {"grey_level": level, "r_over_g": rg, "b_over_g": bg, "spread": spread}
    failures = []
    if spread > _CARD_MAX_SPREAD:
        failures.append(
            f"the grey card does not fill the centre (its grey varies by {spread:.0f}) — hold "
            "it flat across the middle of the frame, evenly lit, and run again"
        )
    else:
        band = f"target {cal.grey_level_min:.0f}-{cal.grey_level_max:.0f}"
        if level < cal.grey_level_min:
            failures.append(
                f"too dark: the grey card reads {level:.0f} ({band}) — raise the exposure or "
                "the kiosk's lighting, and run again"
            )
        elif level > cal.grey_level_max:
            failures.append(
                f"too bright: the grey card reads {level:.0f} ({band}) — lower the exposure "
                "or dim the kiosk's lighting, and run again"
            )
        tol = cal.wb_tolerance
        if abs(rg - 1) > tol or abs(bg - 1) > tol:
            failures.append(
                f"colour cast ({_cast(rg, bg, tol)}): R/G {rg:.2f}, B/G {bg:.2f} (target 1 ± "
                f"{tol:.2f}) — set the camera's white balance on the grey card (or replace the "
                "lamp with one of the specified colour temperature), and run again"
            )
    ok = f"exposure and white balance good: grey {level:.0f}, R/G {rg:.2f}, B/G {bg:.2f}"
    return _result("exposure_white_balance", config.model, measured, targets, failures, ok)


def _cast(rg: float, bg: float, tol: float) -> str:
    if rg - 1 > tol and bg - 1 > tol:
        return "magenta"
    if rg - 1 < -tol and bg - 1 < -tol:
        return "green"
    if rg > bg:
        return "warm: too red/yellow"
    return "cold: too blue"


def focus(image: np.ndarray, config: CameraConfig) -> CalibrationResult:
    """Sharpness from an ISO 12233 slanted-edge chart whose edge crosses the centre, tilted
    2 - 15 degrees from the vertical or the horizontal: the edge's MTF50 (cycles per pixel)
    at least the minimum. ``details["mtf"]``: the MTF curve (frequency, modulation)."""
    cal = config.calibration
    targets = {"min_mtf50": cal.min_mtf50}
    grey = _luminance(_linear(_rgb(image)))
    try:
        mtf50, angle, freqs, mtf = _slanted_edge_mtf50(grey)
    except _NoEdge as exc:
        failure = (
            f"no slanted edge found in the centre ({exc}) — place the chart so that its edge "
            "crosses the middle of the frame, tilted about 5°, and run again"
        )
        return _result("focus", config.model, {}, targets, [failure], "")
    measured = {"mtf50": mtf50, "edge_angle_degrees": angle}
    failures = []
    if mtf50 < cal.min_mtf50:
        failures.append(
            f"out of focus: MTF50 {mtf50:.3f} cycles/pixel (at least {cal.min_mtf50:.3f}) — "
            "clean the lens, focus it on the chart at the standing mark (or check that the "
            "autofocus is enabled), and run again"
        )
    ok = f"in focus: MTF50 {mtf50:.3f} cycles/pixel"
    details = {"mtf": list(zip(freqs.tolist(), mtf.tolist(), strict=True))}
    return _result("focus", config.model, measured, targets, failures, ok, details)


class _NoEdge(DeviceError, ValueError):
    """No slanted edge fit to measure (the reason is the message)."""


_ESF_BINS_PER_PX = 4  # ISO 12233: the edge spread function 4x oversampled
_ESF_HALF_WIDTH = 16  # px either side of the edge


def _slanted_edge_mtf50(grey: np.ndarray) -> tuple[float, float, np.ndarray, np.ndarray]:
    """MTF50 (cycles/px) of the slanted edge across the centre of a linear-light image, the
    edge's tilt (degrees), and the MTF curve up to Nyquist (ISO 12233 e-SFR, simplified: one
    straight-line fit, Hamming-windowed line spread function)."""
    h, w = grey.shape
    roi = grey[round(h * 0.3) : round(h * 0.7), round(w * 0.5 - h * 0.2) : round(w * 0.5 + h * 0.2)]
    gy, gx = np.gradient(roi)
    if float(np.abs(gy).sum()) > float(np.abs(gx).sum()):
        roi = roi.T  # a near-horizontal edge: measured as a near-vertical one
    contrast = float(np.percentile(roi, 95) - np.percentile(roi, 5))
    if contrast < 0.05:
        raise _NoEdge(f"contrast {contrast:.3f} in linear light")
    # the edge's position on each row: the centroid of the derivative around its peak
    d = np.abs(np.diff(cv2.GaussianBlur(roi.astype(np.float32), (0, 0), 1.0), axis=1))
    rows, cols = d.shape
    centres, ys = [], []
    for y in range(rows):
        peak = int(np.argmax(d[y]))
        lo, hi = max(peak - 8, 0), min(peak + 9, cols)
        weights = d[y, lo:hi]
        if float(weights.sum()) <= 0 or float(weights.max()) < contrast * 0.05:
            continue
        centres.append(float((weights * np.arange(lo, hi)).sum() / weights.sum()) + 0.5)
        ys.append(y)
    if len(ys) < rows // 2:
        raise _NoEdge("the edge does not run across the centre")
    slope, offset = np.polyfit(ys, centres, 1)
    residual = np.abs(np.polyval([slope, offset], ys) - np.asarray(centres))
    if float(np.median(residual)) > 1.5:
        raise _NoEdge("not one straight edge")
    angle = math.degrees(math.atan(float(slope)))
    if not 1.0 <= abs(angle) <= 20.0:
        raise _NoEdge(f"edge tilted {angle:.1f}°, needs 2-15°")
    # edge spread function: every pixel by its distance from the edge, in quarter pixels
    yy, xx = np.mgrid[0 : roi.shape[0], 0 : roi.shape[1]].astype(np.float64)
    dist = (xx - (slope * yy + offset)) * math.cos(math.atan(float(slope)))
    keep = np.abs(dist) < _ESF_HALF_WIDTH
    n = 2 * _ESF_HALF_WIDTH * _ESF_BINS_PER_PX
    idx = np.floor((dist[keep] + _ESF_HALF_WIDTH) * _ESF_BINS_PER_PX).astype(np.int64)
    idx = np.clip(idx, 0, n - 1)
    counts = np.bincount(idx, minlength=n)
    sums = np.bincount(idx, weights=roi[keep], minlength=n)
    filled = counts > 0
    if filled.sum() < n * 0.8:
        raise _NoEdge("too few samples across the edge")
    esf = np.interp(np.arange(n), np.flatnonzero(filled), sums[filled] / counts[filled])
    if esf[-n // 8 :].mean() < esf[: n // 8].mean():
        esf = esf[::-1]
    lsf = np.gradient(esf)
    centre = int(np.argmax(lsf))
    lsf = np.roll(lsf, n // 2 - centre) * np.hamming(n)
    spectrum = np.abs(np.fft.rfft(lsf))
    if spectrum[0] <= 0:
        raise _NoEdge("flat edge profile")
    freqs = np.fft.rfftfreq(n, d=1.0 / _ESF_BINS_PER_PX)  # cycles per pixel
    mtf = spectrum / spectrum[0]
    # the central difference itself attenuates: sin(2 pi f D) / (2 pi f D), D = 1/4 px
    x = 2 * math.pi * freqs / _ESF_BINS_PER_PX
    mtf = mtf / np.where(x > 0, np.sin(x) / np.where(x > 0, x, 1), 1.0)
    upto = freqs <= 0.5
    freqs, mtf = freqs[upto], mtf[upto]
    below = np.flatnonzero(mtf < 0.5)
    if not len(below):
        return 0.5, angle, freqs, mtf
    k = int(below[0])
    f0, f1, m0, m1 = freqs[k - 1], freqs[k], mtf[k - 1], mtf[k]
    mtf50 = float(f0 + (m0 - 0.5) * (f1 - f0) / (m0 - m1))
    return mtf50, angle, freqs, mtf


# the corner and centre patches of the flat field, as a fraction of W and H
_PATCH = 0.1
_GRID = 5
# a flat field must be neither clipped nor lost in noise to be measured (sRGB)
_FLAT_MIN_LEVEL, _FLAT_MAX_LEVEL = 80.0, 245.0


def uniformity(image: np.ndarray, config: CameraConfig) -> CalibrationResult:
    """Lens shading and unevenness from a flat white field: the darkest corner patch against
    the centre (vignetting: the light lost, in linear light) and the brightest against the
    darkest cell of a 5 x 5 grid."""
    cal = config.calibration
    lum = _luminance(_linear(_rgb(image)))
    h, w = lum.shape
    ph, pw = max(1, round(h * _PATCH)), max(1, round(w * _PATCH))
    centre = float(_centre(lum, _PATCH).mean())
    corners = [
        float(lum[:ph, :pw].mean()),
        float(lum[:ph, -pw:].mean()),
        float(lum[-ph:, :pw].mean()),
        float(lum[-ph:, -pw:].mean()),
    ]
    cells = [
        float(block.mean())
        for band in np.array_split(lum, _GRID, axis=0)
        for block in np.array_split(band, _GRID, axis=1)
    ]
    vignetting = 1 - min(corners) / max(centre, 1e-6)
    ratio = max(cells) / max(min(cells), 1e-6)
    level = _srgb(centre)
    measured = {"centre_level": level, "vignetting": vignetting, "grid_ratio": ratio}
    targets = {"max_vignetting": cal.max_vignetting, "max_grid_ratio": cal.max_grid_ratio}
    failures = []
    if level > _FLAT_MAX_LEVEL:
        failures.append(
            f"the white field is clipped (centre {level:.0f}) — lower the exposure until the "
            "centre reads about 200, and run again"
        )
    elif level < _FLAT_MIN_LEVEL:
        failures.append(
            f"the white field is too dark to measure (centre {level:.0f}) — light it or raise "
            "the exposure until the centre reads about 200, and run again"
        )
    else:
        if vignetting > cal.max_vignetting:
            failures.append(
                f"vignetting: the darkest corner gets {100 * (1 - vignetting):.0f} % of the "
                f"centre's light (at least {100 * (1 - cal.max_vignetting):.0f} %) — check the "
                "lens (a hood or bezel in view, dirt at its edge) and that the white field "
                "is evenly lit, and run again"
            )
        if ratio > cal.max_grid_ratio:
            failures.append(
                f"uneven field: the brightest area is {ratio:.2f} x the darkest (at most "
                f"{cal.max_grid_ratio:.2f}) — light the white field evenly (or fix the "
                "kiosk's lamps), and run again"
            )
    ok = (
        f"field even: corners at {100 * (1 - vignetting):.0f} % of the centre, "
        f"brightest/darkest {ratio:.2f}"
    )
    return _result("uniformity", config.model, measured, targets, failures, ok)


def geometry(image: np.ndarray, config: CameraConfig) -> CalibrationResult:
    """The camera's distance and aim from a person (or a calibration head) at the standing
    mark: the distance between their eye centres (``biometrics.face`` landmarks) within the
    band, and the eye midpoint near where the face quality check wants it."""
    from biometrics import face

    cal = config.calibration
    targets = {
        "eye_distance_min_px": cal.eye_distance_min_px,
        "eye_distance_max_px": cal.eye_distance_max_px,
        "max_centre_offset": cal.max_centre_offset,
    }
    q = face.assess(_rgb(image), config.quality.thresholds())
    if "no_face" in q.reasons or "multiple_faces" in q.reasons:
        what = "no face" if "no_face" in q.reasons else "more than one face"
        failure = (
            f"{what} in view — have one person (or the calibration head) stand on the mark "
            "facing the camera, with nobody behind, and run again"
        )
        return _result("geometry", config.model, {}, targets, [failure], "")
    eye = q.metrics["eye_distance_px"]
    offset = q.metrics["centre_offset"]
    measured = {"eye_distance_px": eye, "centre_offset": offset}
    band = f"target {cal.eye_distance_min_px:.0f}-{cal.eye_distance_max_px:.0f}"
    failures = []
    if eye < cal.eye_distance_min_px:
        failures.append(
            f"too far: {eye:.0f} px between the eyes ({band}) — move the standing mark closer "
            "to the camera (or zoom in), and run again"
        )
    elif eye > cal.eye_distance_max_px:
        failures.append(
            f"too close: {eye:.0f} px between the eyes ({band}) — move the standing mark back "
            "from the camera (or zoom out), and run again"
        )
    if offset > cal.max_centre_offset:
        failures.append(
            f"camera aimed off the mark: the eyes are {offset:.2f} of the frame from where they "
            f"should be (at most {cal.max_centre_offset:.2f}) — re-aim the camera (or adjust "
            "its height) at the standing mark, and run again"
        )
    ok = f"distance and aim good: {eye:.0f} px between the eyes, offset {offset:.2f}"
    return _result("geometry", config.model, measured, targets, failures, ok)


# -------------------------------------------------------------------------- fingerprint
def _mm(px: float, dpi: float) -> float:
    return px / dpi * 25.4


def _mm_to_px(mm: float, dpi: float) -> float:
    return mm / 25.4 * dpi


# A dirt spot is darker than the platen around it by more than this many noise deviations
# (and at least _DIRT_MIN_DEPTH grey levels): 5 sigma is under one false pixel in a whole
# 800 x 750 capture. The platen's background is taken over 3 mm: larger smudges are found
# (and fail) but sized short.
_DIRT_SIGMAS = 5.0
_DIRT_MIN_DEPTH = 10.0
_EBTS_AREA_INCH = 0.25  # EBTS Appendix F compares the grey level of 0.25 x 0.25 inch areas


def _platen_background(grey: np.ndarray, dpi: int) -> np.ndarray:
    """The platen without its spots: a grey closing wider than any spot (3 mm), at 1/4
    scale, smoothed, back at full size."""
    h, w = grey.shape
    small = cv2.resize(grey, (max(1, w // 4), max(1, h // 4)), interpolation=cv2.INTER_AREA)
    k = max(3, round(_mm_to_px(3.0, dpi) / 4)) | 1
    closed = cv2.morphologyEx(
        small, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
    )
    smooth = cv2.GaussianBlur(closed, (0, 0), k / 2)
    return np.asarray(cv2.resize(smooth, (w, h), interpolation=cv2.INTER_LINEAR))


def platen(image: np.ndarray, config: FingerprintConfig) -> CalibrationResult:
    """A blank capture of the empty platen: its illumination even (EBTS Appendix F: the mean
    grey of any two 0.25-inch areas within the limit) and no dirt (dark spots larger than the
    limit, sized in mm at the configured dpi)."""
    cal = config.calibration
    dpi = config.capture.dpi
    grey = _grey(image)
    background = _platen_background(grey, dpi)
    residual = background - grey  # positive where darker than the platen around it
    mad = float(np.median(np.abs(residual - np.median(residual))))
    threshold = max(_DIRT_SIGMAS * 1.4826 * mad, _DIRT_MIN_DEPTH)
    mask = (residual > threshold).astype(np.uint8)
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, np.ones((3, 3), np.uint8))
    count, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    sizes = [
        _mm(float(max(stats[i, cv2.CC_STAT_WIDTH], stats[i, cv2.CC_STAT_HEIGHT])), dpi)
        for i in range(1, count)
        if stats[i, cv2.CC_STAT_AREA] >= 3  # single noisy pixels are not dirt
    ]
    spots = [s for s in sizes if s > cal.platen_max_dirt_spot_mm]
    largest = max(sizes, default=0.0)
    cell = max(1, round(dpi * _EBTS_AREA_INCH))
    h, w = grey.shape
    means = [
        float(background[y : y + cell, x : x + cell].mean())
        for y in range(0, h - cell + 1, cell)
        for x in range(0, w - cell + 1, cell)
    ] or [float(background.mean())]
    spread = max(means) - min(means)
    measured = {
        "mean_level": float(grey.mean()),
        "non_uniformity": spread,
        "dirt_spots": float(len(spots)),
        "largest_spot_mm": largest,
    }
    targets = {
        "platen_max_non_uniformity": cal.platen_max_non_uniformity,
        "platen_max_dirt_spot_mm": cal.platen_max_dirt_spot_mm,
    }
    failures = []
    if spots:
        failures.append(
            f"platen dirty: {len(spots)} spot{'s' if len(spots) > 1 else ''} (largest "
            f"{largest:.1f} mm) — clean the glass and run again"
        )
    if spread > cal.platen_max_non_uniformity:
        failures.append(
            f"platen unevenly lit: 0.25-inch areas differ by up to {spread:.0f} grey levels "
            f"(at most {cal.platen_max_non_uniformity:.0f}) — clean the platen and run again; "
            "if it stays, the scanner's light source or prism needs service"
        )
    ok = f"platen clean and even: areas within {spread:.0f} grey levels, no spot over " + (
        f"{cal.platen_max_dirt_spot_mm:g} mm"
    )
    return _result("platen", config.model, measured, targets, failures, ok)


def resolution(
    images: np.ndarray | Sequence[np.ndarray],
    config: FingerprintConfig,
    period_mm: float | None = None,
) -> CalibrationResult:
    """The scanner's real resolution from a grating of parallel lines of known period (default:
    the configuration's ``resolution_target_period_mm``): the period measured in pixels (the
    peak of the image's spectrum) gives the dpi across the lines. One image of near-vertical
    lines measures the horizontal dpi, one of near-horizontal lines the vertical: give both to
    check both axes. Each within ``dpi_tolerance_percent`` of the declared dpi."""
    cal = config.calibration
    dpi = config.capture.dpi
    period = period_mm if period_mm is not None else cal.resolution_target_period_mm
    shots = [images] if isinstance(images, np.ndarray) else list(images)
    targets = {
        "declared_dpi": float(dpi),
        "dpi_tolerance_percent": cal.dpi_tolerance_percent,
        "period_mm": period,
    }
    measured: dict[str, float] = {}
    failures: list[str] = []
    if not shots:
        failures.append("no image of the ridge-spacing target — capture one and run again")
    for shot in shots:
        found = _grating_frequency(_grey(shot), period / 25.4 * dpi)
        if found is None:
            failures.append(
                f"no {period:g} mm grating found — lay the ridge-spacing target flat on the "
                "platen, lines across the whole image, and run again"
            )
            continue
        fx, fy = found
        axis = "x" if abs(fx) >= abs(fy) else "y"
        real = 25.4 / (period * math.hypot(fx, fy))  # the period in px, per inch
        error = 100 * (real - dpi) / dpi
        measured[f"dpi_{axis}"] = real
        measured[f"dpi_{axis}_error_percent"] = error
        if abs(error) > cal.dpi_tolerance_percent:
            failures.append(
                f"resolution off: the scanner captures {real:.0f} dpi "
                f"{'across' if axis == 'x' else 'down'} the platen, not the {dpi} it declares "
                f"({error:+.1f} %, at most ±{cal.dpi_tolerance_percent:g} %) — check that the "
                "target lies flat and is the right one; if it is, set the scanner's "
                "resolution (or its configured dpi) and run again, else call service"
            )
    ok = "resolution good: " + ", ".join(
        f"{k[4]} {v:.1f} dpi" for k, v in measured.items() if not k.endswith("percent")
    )
    return _result("resolution", config.model, measured, targets, failures, ok)


def _grating_frequency(grey: np.ndarray, expected_period_px: float) -> tuple[float, float] | None:
    """The (fx, fy) frequency (cycles/px) of a grating near the expected period: the peak of
    the windowed, zero-padded spectrum, refined by parabolic interpolation; None if no clear
    peak stands out."""
    h, w = grey.shape
    flat = grey - cv2.GaussianBlur(grey, (0, 0), 4 * expected_period_px)
    windowed = flat * np.outer(np.hanning(h), np.hanning(w))
    n = 1 << (2 * max(h, w) - 1).bit_length()  # at least 2x zero-padding
    power = np.abs(np.fft.fftshift(np.fft.fft2(windowed, s=(n, n)))) ** 2
    f = np.fft.fftshift(np.fft.fftfreq(n))
    fy, fx = np.meshgrid(f, f, indexing="ij")
    radius = np.hypot(fx, fy)
    f0 = 1 / expected_period_px
    annulus = (radius > f0 / 1.6) & (radius < f0 * 1.6) & (fx >= 0)
    if not annulus.any():
        return None
    masked = np.where(annulus, power, 0.0)
    iy, ix = np.unravel_index(int(np.argmax(masked)), masked.shape)
    peak = float(masked[iy, ix])
    if peak <= 0 or peak < 100 * float(np.median(power[annulus])):
        return None

    def refine(a: float, b: float, c: float) -> float:
        a, b, c = math.log(a + 1e-30), math.log(b + 1e-30), math.log(c + 1e-30)
        den = a - 2 * b + c
        return 0.5 * (a - c) / den if den != 0 else 0.0

    dy = refine(power[iy - 1, ix], power[iy, ix], power[(iy + 1) % n, ix])
    dx = refine(power[iy, ix - 1], power[iy, ix], power[iy, (ix + 1) % n])
    step = 1.0 / n
    return float(f[ix] + dx * step), float(f[iy] + dy * step)


def reference_finger(
    image: np.ndarray, config: FingerprintConfig, previous_scores: Sequence[float] = ()
) -> CalibrationResult:
    """The NFIQ 2 quality of the kiosk's reference finger: at least the minimum, and not more
    than ``reference_max_drop`` below the median of its earlier results (``previous_scores``,
    e.g. ``DeviceHistory.reference_scores``): a scanner that degrades shows it there first."""
    from biometrics import fingerprint

    cal = config.calibration
    score = float(fingerprint.quality(image, config.capture.dpi))
    targets = {
        "reference_min_quality": float(cal.reference_min_quality),
        "reference_max_drop": float(cal.reference_max_drop),
    }
    measured = {"nfiq2": score}
    failures = []
    usual: float | None = None
    if previous_scores:
        usual = float(statistics.median(previous_scores))
        measured["previous_median"] = usual
        measured["drop"] = usual - score
    low = score < cal.reference_min_quality
    dropped = usual is not None and usual - score > cal.reference_max_drop
    if low or dropped:
        why = []
        if low:
            why.append(f"below the minimum {cal.reference_min_quality}")
        if usual is not None and dropped:
            why.append(
                f"{usual - score:.0f} below its usual {usual:.0f} (at most "
                f"{cal.reference_max_drop})"
            )
        failures.append(
            f"reference finger quality {'dropped' if dropped else 'too low'}: NFIQ 2 "
            f"{score:.0f}, {' and '.join(why)} — clean the platen and the reference finger, "
            "check the finger for wear, place it in its jig again and run again; if it stays "
            "low, the scanner needs service"
        )
    ok = f"reference finger quality good: NFIQ 2 {score:.0f}" + (
        f" (usual {usual:.0f})" if usual is not None else ""
    )
    return _result("reference_finger", config.model, measured, targets, failures, ok)


# -------------------------------------------------------------------------- card reader
_MIN_SAMPLES = 5


def apdu_round_trip(samples_ms: Sequence[float], config: CardReaderConfig) -> CalibrationResult:
    """Command-response times of the card reader (milliseconds per APDU, e.g. from
    :func:`measure_apdu_round_trip`): their median and 95th percentile within the targets."""
    cal = config.calibration
    targets = {"max_median_ms": cal.max_median_ms, "max_p95_ms": cal.max_p95_ms}
    times = np.asarray(list(samples_ms), dtype=np.float64)
    if len(times) < _MIN_SAMPLES or not np.isfinite(times).all() or (times < 0).any():
        failure = (
            f"{len(times)} valid timings, at least {_MIN_SAMPLES} needed — put a card on the "
            "reader and measure again"
        )
        return _result("apdu_round_trip", config.model, {}, targets, [failure], "")
    median = float(np.median(times))
    p95 = float(np.percentile(times, 95))
    measured = {"median_ms": median, "p95_ms": p95, "samples": float(len(times))}
    failures = []
    if median > cal.max_median_ms or p95 > cal.max_p95_ms:
        failures.append(
            f"slow card reader: median {median:.0f} ms, p95 {p95:.0f} ms per command (at most "
            f"{cal.max_median_ms:.0f} and {cal.max_p95_ms:.0f}) — plug the reader straight "
            "into the kiosk (no hub), check its driver and firmware, keep metal away from a "
            "contactless reader's antenna, and measure again"
        )
    ok = f"card reader responsive: median {median:.1f} ms, p95 {p95:.1f} ms per command"
    return _result("apdu_round_trip", config.model, measured, targets, failures, ok)


def measure_apdu_round_trip(reader: str | None = None, n: int = 50) -> list[float]:
    """Time ``n`` round trips (milliseconds) of a harmless command to the card on ``reader``
    (default: the first reader): SELECT of the eMRTD application (ICAO 9303-10), which reads
    and changes nothing. Any answer counts (a card without the application answers 6A82 as
    fast). One untimed command first: the card's wake-up is not the reader's speed.
    CardError subclasses (``NoReader``, ``NoCard``, ``CardRemoved``) as ``devices.card``."""
    from devices import card
    from devices.icao import secure
    from devices.icao.lds import EMRTD_AID

    if n < 1:
        raise ValueError("n must be at least 1")
    select = secure.build_command(0x00, 0xA4, 0x04, 0x0C, EMRTD_AID)
    times: list[float] = []
    with card.session(reader) as s:
        s.transmit_plain(select)
        for _ in range(n):
            start = time.perf_counter()
            s.transmit_plain(select)
            times.append((time.perf_counter() - start) * 1000.0)
    return times
