"""What a technician puts in front of simulated devices to calibrate them, as the devices
would capture it: test charts, flat fields, a blank platen, a ridge-spacing grating, a person
at the standing mark, a reference finger (tests and demo only).

Each takes the fault a calibration must catch (a dim lamp, a colour cast, a defocused lens,
lens shading, dirt on the platen, a reader that really scans at 450 dpi while declaring 500, a
worn reference finger, a person standing too far) and renders it with what a real capture
has besides: sensor noise, a little shading, optics that are never perfectly sharp.

Camera images are RGB uint8 (H, W, 3); fingerprint images grey uint8 (H, W); sizes are
given as (W, H), as ``biometrics.synthetic`` renders frames.
"""

from __future__ import annotations

import inspect
import math
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from biometrics import synthetic
from biometrics.synthetic import BACKDROP, Pose
from devices.fingerprint import DeviceInfo, FingerprintReader, FingerprintReaderError

# what every simulated camera adds
_CAMERA_NOISE = 1.8  # sensor noise, grey levels (std)
_LENS_BLUR = 0.55  # the lens's own blur (Gaussian sigma, px): a good lens, MTF50 ~0.33 c/px
_LENS_SHADING = 0.06  # light fall-off from the centre to the corners of a good lens
# what every simulated fingerprint scanner adds
_PLATEN_LEVEL = 232.0  # a blank platen's grey level (synthetic prints' background: 235)
_PLATEN_NOISE = 2.5


def _srgb_to_linear(v: np.ndarray) -> np.ndarray:
    v = np.clip(v / 255.0, 0, 1)
    return np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4)


def _linear_to_srgb(v: np.ndarray) -> np.ndarray:
    v = np.clip(v, 0, 1)
    return np.where(v <= 0.0031308, 12.92 * v, 1.055 * v ** (1 / 2.4) - 0.055) * 255.0


def _radial(size: tuple[int, int]) -> np.ndarray:
    """Distance from the frame centre, 1 at the corners."""
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    return np.asarray(np.hypot(xx - (w - 1) / 2, yy - (h - 1) / 2) / math.hypot(w / 2, h / 2))


def _shading(size: tuple[int, int], corner_falloff: float) -> np.ndarray:
    """Lens shading: 1 at the centre, ``1 - corner_falloff`` at the corners (cos^4-like)."""
    r = _radial(size)
    return np.asarray(1 - corner_falloff * r**2, dtype=np.float32)


def _camera_output(linear: np.ndarray, rng: np.random.Generator, blur: float = 0.0) -> np.ndarray:
    """A scene in linear light (H, W, 3), as the camera delivers it: through the lens (blur),
    gamma-encoded to sRGB, with sensor noise."""
    sigma = math.hypot(_LENS_BLUR, blur)
    img = cv2.GaussianBlur(linear.astype(np.float32), (0, 0), sigma)
    out = _linear_to_srgb(img) + rng.normal(0, _CAMERA_NOISE, img.shape)
    return np.asarray(np.clip(np.round(out), 0, 255), dtype=np.uint8)


def grey_card(
    size: tuple[int, int] = (640, 480),
    level: float = 118.0,
    wb: tuple[float, float, float] = (1.0, 1.0, 1.0),
    dim: float = 1.0,
    seed: int = 0,
) -> np.ndarray:
    """An 18 % grey card filling the centre of the frame (70 % of it), on the kiosk's backdrop.

    ``level``: the card's sRGB level at the camera's present exposure (118: right);
    ``wb``: the camera's white-balance error, gains on R, G, B in linear light ((1.15, 1, 0.85):
    a warm cast); ``dim``: the light on it, in linear light (0.5: one stop too dark).
    """
    w, h = size
    rng = np.random.default_rng(seed)
    card = float(_srgb_to_linear(np.asarray(level)))
    scene = np.empty((h, w, 3), np.float32)
    scene[:] = _srgb_to_linear(np.asarray(BACKDROP, np.float32))
    x0, x1, y0, y1 = int(w * 0.15), int(w * 0.85), int(h * 0.15), int(h * 0.85)
    scene[y0:y1, x0:x1] = card
    # the card is lit from above a little more than below
    scene *= np.linspace(1.02, 0.98, h, dtype=np.float32)[:, None, None]
    scene *= _shading(size, _LENS_SHADING)[..., None]
    scene *= np.asarray(wb, np.float32) * dim
    return _camera_output(scene, rng)


def focus_chart(
    size: tuple[int, int] = (640, 480),
    blur_sigma: float = 0.0,
    angle_deg: float = 5.0,
    seed: int = 0,
) -> np.ndarray:
    """An ISO 12233 slanted-edge chart: a dark and a light half (4:1 contrast, as e-SFR
    charts print them), the edge through the centre tilted ``angle_deg`` from the vertical.
    ``blur_sigma``: the defocus (Gaussian sigma, px) added to the lens's own blur."""
    w, h = size
    rng = np.random.default_rng(seed)
    over = 4  # drawn at 4x and averaged down: the edge is anti-aliased as a sensor sees it
    yy, xx = np.mgrid[0 : h * over, 0 : w * over].astype(np.float32)
    xx = (xx + 0.5) / over - w / 2
    yy = (yy + 0.5) / over - h / 2
    t = math.radians(angle_deg)
    light = (xx * math.cos(t) - yy * math.sin(t)) > 0
    fine = np.where(light, 0.60, 0.15).astype(np.float32)
    plane = cv2.resize(fine, (w, h), interpolation=cv2.INTER_AREA)
    plane *= _shading(size, _LENS_SHADING)
    scene = np.repeat(plane[..., None], 3, axis=2)
    return _camera_output(scene, rng, blur=blur_sigma)


def flat_field(
    size: tuple[int, int] = (640, 480),
    vignetting: float = 0.08,
    level: float = 200.0,
    tilt: float = 0.02,
    seed: int = 0,
) -> np.ndarray:
    """A flat white field (a diffuser over the lens, or an evenly lit white board).

    ``vignetting``: the light lost at the corners (0.3: corners get 70 % of the centre's
    light, in linear light); ``level``: the centre's sRGB level; ``tilt``: the light falling
    off from left to right (uneven lighting of the board)."""
    w = size[0]
    rng = np.random.default_rng(seed)
    centre = float(_srgb_to_linear(np.asarray(level)))
    plane = centre * _shading(size, vignetting)
    plane *= np.linspace(1 + tilt / 2, 1 - tilt / 2, w, dtype=np.float32)[None, :]
    scene = np.repeat(plane[..., None], 3, axis=2)
    return _camera_output(scene, rng)


def person_at_mark(
    photo: str | Path,
    eye_distance_px: float = 110.0,
    size: tuple[int, int] = (640, 480),
    centre: tuple[float, float] = (0.5, 0.45),
    seed: int = 0,
) -> np.ndarray:
    """A person (rendered from a real photo, ``biometrics.synthetic``) standing at the mark,
    looking at the camera: ``eye_distance_px`` is where the camera's distance puts them
    (too far: smaller; too close: larger); ``centre``: where the eye midpoint lands (W, H
    fractions; a camera aimed off the mark moves it)."""
    rng = np.random.default_rng(seed)
    model = synthetic.face_model(str(photo))
    frame = model.render(Pose(eye_distance=eye_distance_px, centre=centre), size)
    noisy = frame.astype(np.float32) + rng.normal(0, _CAMERA_NOISE, frame.shape)
    return np.asarray(np.clip(np.round(noisy), 0, 255), dtype=np.uint8)


def _mm_to_px(mm: float, dpi: float) -> float:
    return mm / 25.4 * dpi


def blank_platen(
    size: tuple[int, int] = (800, 750),
    dirt: int = 0,
    seed: int = 0,
    dpi: int = 500,
    shading: float = 4.0,
) -> np.ndarray:
    """A capture of the scanner's empty platen: near white, with the illumination's gentle
    shading (``shading`` grey levels from one side to the other; 30 or more: a failing lamp
    or a misaligned prism), noise and ``dirt`` dark spots (0.8 - 2.5 mm: dust, skin grease,
    dried sanitiser)."""
    w, h = size
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    grad = (xx / max(w - 1, 1) - 0.5) * 0.8 + (yy / max(h - 1, 1) - 0.5) * 0.6
    img = _PLATEN_LEVEL - shading * (grad + 0.7) / 1.4
    img -= 2.0 * _radial(size) ** 2  # a prism's own fall-off towards the corners
    for _ in range(dirt):
        d = _mm_to_px(rng.uniform(0.8, 2.5), dpi)
        cx, cy = rng.uniform(0.1, 0.9) * w, rng.uniform(0.1, 0.9) * h
        axes = (max(1, round(d / 2)), max(1, round(d / 2 * rng.uniform(0.5, 1.0))))
        spot = np.zeros((h, w), np.float32)
        cv2.ellipse(spot, (round(cx), round(cy)), axes, rng.uniform(0, 180), 0, 360, 1.0, -1)
        img -= np.asarray(cv2.GaussianBlur(spot, (0, 0), 1.0)) * rng.uniform(60, 140)
    img += rng.normal(0, _PLATEN_NOISE, img.shape)
    return np.asarray(np.clip(np.round(img), 0, 255), dtype=np.uint8)


def ridge_target(
    size: tuple[int, int] = (800, 750),
    period_mm: float = 0.5,
    dpi_actual: float = 500.0,
    angle_deg: float = 2.0,
    seed: int = 0,
) -> np.ndarray:
    """A ridge-spacing target on the platen: a grating of parallel dark lines ``period_mm``
    apart, captured at the scanner's real resolution ``dpi_actual`` (a reader declaring 500
    dpi that really scans at 450 draws the lines 10 % closer together), placed a little
    askew (``angle_deg``)."""
    w, h = size
    rng = np.random.default_rng(seed)
    period = _mm_to_px(period_mm, dpi_actual)
    t = math.radians(angle_deg)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    phase = 2 * math.pi * (xx * math.cos(t) + yy * math.sin(t)) / period + rng.uniform(0, 6.3)
    # printed bars with soft edges (a square wave rounded off by the optics)
    bars = 0.5 + 0.5 * np.tanh(2.5 * np.sin(phase))
    img = _PLATEN_LEVEL - 170.0 * bars
    img = cv2.GaussianBlur(img.astype(np.float32), (0, 0), 0.7)
    img += rng.normal(0, _PLATEN_NOISE, img.shape)
    return np.asarray(np.clip(np.round(img), 0, 255), dtype=np.uint8)


@lru_cache(maxsize=4)
def _reference_master(seed: int) -> synthetic.MasterFingerprint:
    return synthetic.master_fingerprint(seed)


def reference_finger(seed: int = 4242, placement: int = 0, worn: bool = False) -> np.ndarray:
    """A 500-dpi capture of the kiosk's reference finger (a silicone replica kept with the
    scanner), placed in its jig (``placement``: which time). A ``worn`` replica, or a platen
    whose coating has worn, touches with only part of its surface: NFIQ 2 drops by 10 - 20."""
    master = _reference_master(seed)
    condition = "partial" if worn else "normal"
    return synthetic.fingerprint_impression(master, placement, difficulty=0.2, condition=condition)


# ---------------------------------------------------------------------------- the daemon's use
CAMERA_TARGETS = ("grey_card", "focus_chart", "flat_field", "person_at_mark")
PLATEN_TARGETS = ("blank_platen", "ridge_target", "reference_finger")


def check(device: str, spec: dict[str, object]) -> None:
    """ValueError unless ``spec`` (``{"target": name, **params}``) is a target of that
    device and its parameters are that target's."""
    names = {"camera": CAMERA_TARGETS, "fingerprint": PLATEN_TARGETS}.get(device)
    if names is None:
        raise ValueError("device must be camera or fingerprint")
    target = spec.get("target")
    if target not in names:
        raise ValueError(f"a {device} target is one of {', '.join(names)}")
    allowed = set(inspect.signature(globals()[str(target)]).parameters) - {"size"}
    unknown = set(spec) - {"target"} - allowed
    if unknown:
        raise ValueError(f"{target} takes {', '.join(sorted(allowed))}, not {sorted(unknown)}")


def render(spec: dict[str, object]) -> np.ndarray:
    """The image of a checked target spec (``{"target": name, **params}``)."""
    params = {k: (tuple(v) if isinstance(v, list) else v) for k, v in spec.items()}
    name = str(params.pop("target"))
    return np.asarray(globals()[name](**params))


class TargetOnPlaten(FingerprintReader):
    """The simulated reader while a technician's target lies on its platen: every capture
    is that target (a blank platen, a ridge grating, the reference finger)."""

    def __init__(self, spec: dict[str, object]) -> None:
        self.spec = spec
        self._placements = 0

    def info(self) -> DeviceInfo:
        """The simulated reader's identity."""
        return DeviceInfo("fingerprint", "simulated", "RNP", "simulated-fingerprint", "SIM", "1.0")

    def capture(self, position: int) -> np.ndarray:
        """The target (the reference finger placed anew at each capture)."""
        if self.spec.get("target") == "blank_platen":
            raise FingerprintReaderError("no finger detected on the platen")
        spec = dict(self.spec)
        if spec.get("target") == "reference_finger" and "placement" not in spec:
            spec["placement"] = self._placements
            self._placements += 1
        return render(spec)

    def capture_blank(self) -> np.ndarray:
        """The empty platen, when that is the target."""
        if self.spec.get("target") != "blank_platen":
            raise FingerprintReaderError("something lies on the platen", "unsupported")
        return render(self.spec)
