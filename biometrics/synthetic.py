"""Synthetic variations of real face photos, for simulated devices and tests.

``FaceModel`` takes one real photo and renders camera frames of that person: placed and
sized in the frame, head rolled or turned (a piecewise-affine warp that moves each facial
landmark by an approximate depth), eyes closed (lids painted over with skin from the cheek),
lighting changed, blurred. Good enough to drive quality checks, liveness and auto-capture
end to end; not a substitute for real captures when measuring accuracy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property, lru_cache

import cv2
import numpy as np

from biometrics import face as _face

# Approximate depth (towards the camera, in face widths) of the dlib landmark groups,
# used to turn the head: nearer points move further sideways.
_DEPTH = {
    "left_eyebrow": 0.25,
    "right_eyebrow": 0.25,
    "nose_bridge": 0.38,
    "nose_tip": 0.42,
    "left_eye": 0.2,
    "right_eye": 0.2,
    "top_lip": 0.35,
    "bottom_lip": 0.33,
}


BACKDROP = (196, 200, 204)  # the kiosk's plain light-grey backdrop, RGB


@dataclass(frozen=True)
class Pose:
    """How the person appears in one frame."""

    eye_distance: float = 110.0  # pixels between the eye centres
    centre: tuple[float, float] = (0.5, 0.45)  # eye midpoint, fraction of frame W and H
    roll: float = 0.0  # degrees
    yaw: float = 0.0  # degrees, positive: nose towards the image's right
    eyes_closed: bool = False
    brightness: float = 1.0  # multiplies the pixel values
    side_light: float = 0.0  # -1..1: darkens one side of the frame
    blur: float = 0.0  # Gaussian sigma in pixels


class FaceModel:
    """One real photo of one person, turned into frames of any pose."""

    def __init__(self, image: np.ndarray) -> None:
        box = _face._one_face(image)
        self.image = image
        self.marks = _face._landmarks(image, box)
        self.box = box
        pts, depth = [], []
        for key, arr in self.marks.items():
            for i, p in enumerate(arr):
                # the jaw line is 0 deep at the ears and deeper towards the chin
                z = 0.25 * (1 - abs(i - 8) / 8) ** 0.7 if key == "chin" else _DEPTH[key]
                pts.append(p)
                depth.append(z)
        geometry = _face._geometry(self.marks)
        self.base_yaw = geometry.yaw  # how far the person in the photo is already turned
        pts_arr = np.asarray(pts)
        _, keep = np.unique(np.round(pts_arr), axis=0, return_index=True)
        keep = np.sort(keep)
        self._points, self._depth = pts_arr[keep], np.asarray(depth)[keep]
        self._turn_cache: dict[tuple[int, float], np.ndarray] = {}

    @cached_property
    def _eyes_closed(self) -> np.ndarray:
        return _closed_eyes(self.image, self.marks)

    def _turned(self, base: np.ndarray, yaw: float) -> np.ndarray:
        if abs(yaw) < 0.5:
            return base
        key = (id(base), round(yaw, 1))
        if key not in self._turn_cache:
            if len(self._turn_cache) > 16:
                self._turn_cache.clear()
            self._turn_cache[key] = self._warp_yaw(base, yaw)
        return self._turn_cache[key]

    def _warp_yaw(self, base: np.ndarray, yaw: float) -> np.ndarray:
        b = self.box
        w = b.width
        shift = self._depth * w * math.sin(math.radians(yaw))
        dst = self._points.copy()
        dst[:, 0] += shift
        # a fixed ring around the head and the image border keep the rest in place
        cx, cy = (b.left + b.right) / 2, (b.top + b.bottom) / 2
        ring = [
            (cx + 1.1 * w * math.cos(a), cy + 1.3 * b.height * math.sin(a))
            for a in np.linspace(0, 2 * math.pi, 16, endpoint=False)
        ]
        h, wi = base.shape[:2]
        border = [(0, 0), (wi - 1, 0), (0, h - 1), (wi - 1, h - 1)]
        src = np.vstack([self._points, ring, border]).astype(np.float32)
        dst = np.vstack([dst, ring, border]).astype(np.float32)
        return _piecewise_affine(base, src, dst)

    def render(self, pose: Pose, size: tuple[int, int] = (640, 480)) -> np.ndarray:
        """An RGB frame of ``size`` (W, H) showing the person in ``pose``."""
        src = self._eyes_closed if pose.eyes_closed else self.image
        # the warp's yaw is about 1.25x what the landmark estimate reads back: compensate the
        # photo's own turn so that yaw=0 looks straight at the camera
        src = self._turned(src, pose.yaw - 1.25 * self.base_yaw)
        le = self.marks["left_eye"].mean(axis=0)
        re = self.marks["right_eye"].mean(axis=0)
        mid = (le + re) / 2
        dist = float(np.linalg.norm(re - le))
        roll = math.degrees(math.atan2(re[1] - le[1], re[0] - le[0]))
        w, h = size
        m = cv2.getRotationMatrix2D(
            (float(mid[0]), float(mid[1])), roll - pose.roll, pose.eye_distance / dist
        )
        m[0, 2] += pose.centre[0] * w - mid[0]
        m[1, 2] += pose.centre[1] * h - mid[1]
        frame = cv2.warpAffine(
            src,
            m,
            (w, h),
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=BACKDROP,
        )
        f = frame.astype(np.float32) * pose.brightness
        if pose.side_light:
            ramp = np.linspace(1 - max(pose.side_light, 0), 1 + min(pose.side_light, 0), w)
            f *= ramp[None, :, None]
        frame = np.clip(f, 0, 255).astype(np.uint8)
        if pose.blur > 0:
            frame = np.asarray(cv2.GaussianBlur(frame, (0, 0), pose.blur), dtype=np.uint8)
        return frame


def _closed_eyes(image: np.ndarray, marks: dict[str, np.ndarray]) -> np.ndarray:
    """Close the eyes: pull each upper lid down onto the lower lid (the lid skin below the
    brow stretches over the eye, as in a real blink), with brows and cheeks held fixed."""
    src, dst = [], []
    for eye, brow in (("left_eye", "left_eyebrow"), ("right_eye", "right_eyebrow")):
        p = marks[eye]
        q = p.copy()
        q[1] = p[5] * 0.85 + p[1] * 0.15  # upper lid points onto the lower lid
        q[2] = p[4] * 0.85 + p[2] * 0.15
        width = float(np.linalg.norm(p[3] - p[0]))
        below = p[[3, 4, 5, 0]] + np.array([0.0, 0.35 * width])  # cheek, fixed
        src += [*p, *marks[brow], *below]
        dst += [*q, *marks[brow], *below]
    box_pts = np.asarray(src)
    x0, y0 = box_pts.min(axis=0) - 40
    x1, y1 = box_pts.max(axis=0) + 40
    ring = [(x0, y0), (x1, y0), (x0, y1), (x1, y1), ((x0 + x1) / 2, y0), ((x0 + x1) / 2, y1)]
    h, w = image.shape[:2]
    border = [(0, 0), (w - 1, 0), (0, h - 1), (w - 1, h - 1)]
    out = _piecewise_affine(
        image,
        np.vstack([src, ring, border]).astype(np.float32),
        np.vstack([dst, ring, border]).astype(np.float32),
    )
    for eye in ("left_eye", "right_eye"):  # the lashes meet along the closed lid
        p = marks[eye]
        lid = np.array([p[0], p[5] * 0.8 + p[1] * 0.2, p[4] * 0.8 + p[2] * 0.2, p[3]])
        width = float(np.linalg.norm(p[3] - p[0]))
        cv2.polylines(
            out,
            [np.round(lid).astype(np.int32)],
            False,
            (40, 28, 26),
            max(1, round(width / 9)),
            cv2.LINE_AA,
        )
    return out


def _piecewise_affine(image: np.ndarray, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Warp ``image`` so that each ``src`` point lands on its ``dst`` point."""
    h, w = image.shape[:2]
    subdiv = cv2.Subdiv2D((0, 0, w, h))
    index = {}
    for i, (x, y) in enumerate(src):
        xc, yc = float(min(max(x, 0), w - 1)), float(min(max(y, 0), h - 1))
        index[(round(xc, 2), round(yc, 2))] = i
        subdiv.insert((xc, yc))
    out = image.copy()
    for t in subdiv.getTriangleList():
        tri = [(round(float(t[k]), 2), round(float(t[k + 1]), 2)) for k in (0, 2, 4)]
        if not all(p in index for p in tri):
            continue
        ids = [index[p] for p in tri]
        s, d = src[ids].astype(np.float32), dst[ids].astype(np.float32)
        x, y, bw, bh = cv2.boundingRect(d)
        if bw <= 0 or bh <= 0:
            continue
        offset = np.array([x, y], dtype=np.float32)
        m = cv2.getAffineTransform(s, d - offset)
        patch = cv2.warpAffine(
            image, m, (bw, bh), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101
        )
        mask = np.zeros((bh, bw), np.uint8)
        cv2.fillConvexPoly(mask, (d - offset).astype(np.int32), 1)
        x0, y0 = max(x, 0), max(y, 0)
        x1, y1 = min(x + bw, w), min(y + bh, h)
        if x1 <= x0 or y1 <= y0:
            continue
        sub_mask = mask[y0 - y : y1 - y, x0 - x : x1 - x].astype(bool)
        out[y0:y1, x0:x1][sub_mask] = patch[y0 - y : y1 - y, x0 - x : x1 - x][sub_mask]
    return out


@lru_cache(maxsize=32)
def _model_for(path: str) -> FaceModel:
    data = np.fromfile(path, dtype=np.uint8)
    return FaceModel(_face.decode_image(data.tobytes()))


def face_model(path: str) -> FaceModel:
    """A cached FaceModel of the photo at ``path``."""
    return _model_for(path)


# ======================================================================== fingerprints
# An SFinGe-style generator (after Cappelli, Maio, Maltoni): a master fingerprint grows from
# random seeds by iterated Gabor filtering along an orientation field with singular points;
# impressions of it differ by contact area, rotation, translation, elastic distortion,
# pressure, noise and background. Synthetic accuracy is an upper bound on real accuracy.

FINGER_CLASSES = ("arch", "tented_arch", "left_loop", "right_loop", "whorl")
# approximate natural frequencies of the classes (Henry system statistics)
CLASS_WEIGHTS = (0.037, 0.029, 0.338, 0.317, 0.279)
# share of pixels that seed ridge growth: more seeds, more minutiae (0.002 gave prints with
# about 1.7x the minutiae LEADER finds in the FVC2004 prints; fewer left blank patches)
_SEED_DENSITY = 0.0005


@dataclass(frozen=True)
class MasterFingerprint:
    """A finger: its ridge pattern in [-1, 1] (ridges negative), class and identity seed."""

    ridges: np.ndarray
    finger_class: str
    seed: int


@dataclass(frozen=True)
class OrientationModel:
    """A finger's ridge flow: the zero-pole model of Sherlock and Monro (cores and deltas,
    image coordinates at 500 dpi, y down), or for an arch a smooth bend."""

    cores: tuple[complex, ...]
    deltas: tuple[complex, ...]
    turn: float  # radians added everywhere
    arch: tuple[float, float, float, float, float] | None = None  # centre x, y, bend, w, h

    def at(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """The ridge direction (radians, modulo pi, in image coordinates) at points x, y."""
        x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
        if self.arch is not None:
            cx, cy, k, w, h = self.arch
            return np.asarray(
                np.arctan(-k * (x - cx) / w * np.exp(-(((y - 1.1 * cy) / (0.45 * h)) ** 2)))
            )
        z = x + 1j * y
        theta = np.zeros(np.shape(z))
        for c in self.cores:
            theta += 0.5 * np.angle(z - c)
        for delta in self.deltas:
            theta -= 0.5 * np.angle(z - delta)
        return np.asarray(theta + self.turn)


def orientation_model(kind: str, h: int, w: int, rng: np.random.Generator) -> OrientationModel:
    """The ridge flow of a finger of class ``kind`` (one of FINGER_CLASSES) on an h x w field:
    its singular points placed at random where that class has them."""
    cx, cy = w * rng.uniform(0.42, 0.58), h * rng.uniform(0.36, 0.48)
    if kind == "arch":
        return OrientationModel((), (), 0.0, (cx, cy, rng.uniform(1.5, 3.0), w, h))
    cores: list[complex] = []
    deltas: list[complex] = []
    if kind in ("left_loop", "right_loop"):
        side = -1 if kind == "left_loop" else 1
        cores = [complex(cx, cy)]
        deltas = [complex(cx + side * w * rng.uniform(0.3, 0.42), cy + h * rng.uniform(0.28, 0.4))]
    elif kind == "tented_arch":
        cores = [complex(cx, cy)]
        deltas = [complex(cx, cy + h * rng.uniform(0.22, 0.3))]
    else:  # whorl
        d = h * rng.uniform(0.04, 0.09)
        cores = [complex(cx, cy - d), complex(cx, cy + d)]
        deltas = [
            complex(cx - w * rng.uniform(0.35, 0.45), cy + h * rng.uniform(0.3, 0.4)),
            complex(cx + w * rng.uniform(0.35, 0.45), cy + h * rng.uniform(0.3, 0.4)),
        ]
    return OrientationModel(tuple(cores), tuple(deltas), float(rng.uniform(-0.15, 0.15)))


def _orientation_field(kind: str, h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """Ridge orientation (radians) of every pixel of an h x w field."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    return orientation_model(kind, h, w, rng).at(xx, yy)


def _period_map(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """Ridge period (pixels at 500 dpi) over the finger: a per-finger mean of 8.5-10 px, ridges
    a little wider around the centre of the pattern and narrower towards the tip and the
    flanks, plus smooth random variation: about +-10 % in all."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    r = np.hypot((xx - w / 2) / w, (yy - 0.45 * h) / h)
    blurred = cv2.GaussianBlur(rng.normal(0, 1, (h, w)), (0, 0), 45)
    smooth = np.asarray(blurred, dtype=np.float64) / max(float(np.abs(blurred).max()), 1e-6)
    rel = 0.06 * (1 - 2 * np.clip(r / 0.5, 0, 1)) + 0.05 * smooth
    return np.asarray(rng.uniform(8.5, 10.0) * (1 + rel))


@lru_cache(maxsize=64)
def _gabor_bank(period: float, n: int) -> tuple[np.ndarray, ...]:
    size = int(period * 2.4) | 1
    bank = []
    for i in range(n):
        k = cv2.getGaborKernel(
            (size, size),
            sigma=period * 0.5,
            theta=i * math.pi / n + math.pi / 2,
            lambd=period,
            gamma=1.0,
            psi=0,
        )
        k -= k.mean()
        bank.append((k / np.abs(k).sum()).astype(np.float32))
    return tuple(bank)


def master_fingerprint(
    seed: int, size: tuple[int, int] = (400, 320), finger_class: str | None = None
) -> MasterFingerprint:
    """Generate the master fingerprint of finger ``seed`` (deterministic), 500 dpi, (H, W)."""
    rng = np.random.default_rng(seed)
    kind = finger_class or str(rng.choice(FINGER_CLASSES, p=CLASS_WEIGHTS))
    h, w = size
    theta = _orientation_field(kind, h, w, rng)
    period = _period_map(h, w, rng)
    lo, hi = float(period.min()), float(period.max())
    weight = ((period - lo) / max(hi - lo, 1e-6)).astype(np.float32)  # 0: lo, 1: hi
    n = 24
    bins = (np.round(np.mod(theta, math.pi) / math.pi * n) % n).astype(np.int32)
    banks = _gabor_bank(round(lo, 2), n), _gabor_bank(round(hi, 2), n)
    pad = banks[1][0].shape[0] // 2 + 1
    # each orientation bin is filtered only over its bounding box (plus the kernel's reach)
    regions = []
    for b in range(n):
        ys, xs = np.nonzero(bins == b)
        if len(ys):
            y0, y1 = max(int(ys.min()) - pad, 0), min(int(ys.max()) + pad + 1, h)
            x0, x1 = max(int(xs.min()) - pad, 0), min(int(xs.max()) + pad + 1, w)
            box = (slice(y0, y1), slice(x0, x1))
            regions.append((b, box, bins[box] == b, weight[box][bins[box] == b]))
    img = (rng.random((h, w)) < _SEED_DENSITY).astype(np.float32) * rng.choice([-1.0, 1.0], (h, w))
    img = img.astype(np.float32)
    for _ in range(12):
        out = np.zeros_like(img)
        for b, box, m, wgt in regions:
            crop = img[box]
            a = cv2.filter2D(crop, -1, banks[0][b], borderType=cv2.BORDER_CONSTANT)[m]
            z = cv2.filter2D(crop, -1, banks[1][b], borderType=cv2.BORDER_CONSTANT)[m]
            out[box][m] = a + wgt * (z - a)
        img = np.tanh(out / (float(np.abs(out).mean()) + 1e-6) * 1.5)
    return MasterFingerprint(img.astype(np.float32), kind, seed)


# The hard cases real captures have, and the share of impressions each takes at difficulty 1
# (the rest are ordinary captures). Chosen so that the synthetic EER sits within the range of
# the real FVC2004 sets (see bench/bench_fingerprint.py), not to make the matcher look good.
HARD_CASES = {"dry": 0.1, "wet": 0.1, "smudged": 0.08, "partial": 0.1, "distorted": 0.1}


def hard_case(master: MasterFingerprint, impression: int, difficulty: float = 1.0) -> str:
    """The condition impression ``impression`` of ``master`` is captured in: ``"normal"`` or
    one of ``HARD_CASES``, drawn (deterministically) in their shares times ``difficulty``."""
    # a stream of its own: an impression's ordinary variations do not depend on it
    u = float(np.random.default_rng([master.seed, impression, 1]).random())
    for name, share in HARD_CASES.items():
        u -= share * difficulty
        if u < 0:
            return name
    return "normal"


def fingerprint_impression(
    master: MasterFingerprint,
    impression: int,
    size: tuple[int, int] | None = None,
    difficulty: float = 1.0,
    condition: str | None = None,
) -> np.ndarray:
    """One 500-dpi grey-scale impression (uint8, dark ridges on white) of ``master``.

    Varies with ``impression`` (deterministic): contact area and position, rotation
    (+-15 deg), translation, elastic distortion, pressure (ridge thickness), noise; and, for
    some impressions, one of the ``HARD_CASES``: a dry finger (broken, faint ridges), a wet one
    (ridges run together in blotches), a smudge (the finger slid), a partial contact, a strong
    distortion (the skin pushed sideways). ``condition`` forces one of them (or ``"normal"``).
    ``difficulty`` scales the variations and the share of hard cases (0: the master itself, on
    a clean background).
    """
    rng = np.random.default_rng([master.seed, impression])
    if condition is None:
        condition = hard_case(master, impression, difficulty)
    elif condition != "normal" and condition not in HARD_CASES:
        raise ValueError(f"unknown condition {condition!r}")
    hard = np.random.default_rng([master.seed, impression, 2])
    h, w = master.ridges.shape
    out_h, out_w = size or (h, w)
    d = difficulty
    angle = rng.uniform(-15, 15) * d
    tx, ty = rng.uniform(-40, 40, 2) * d
    m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
    m[:, 2] += (tx + (out_w - w) / 2, ty + (out_h - h) / 2)
    # elastic distortion: a smooth random displacement field
    gx, gy = (
        cv2.GaussianBlur(rng.normal(0, 1, (out_h, out_w)).astype(np.float32), (0, 0), 40)
        for _ in range(2)
    )
    reach = 11.0 * d
    if condition == "distorted":
        reach *= hard.uniform(2.0, 3.0)
    scale = reach / max(float(np.abs(gx).max()), float(np.abs(gy).max()), 1e-6)
    yy, xx = np.mgrid[0:out_h, 0:out_w].astype(np.float32)
    dx, dy = gx * scale, gy * scale
    if condition == "distorted":  # pushed sideways: the far side of the contact moves most
        push = hard.uniform(0, 2 * math.pi)
        along = (math.cos(push) * (xx - out_w / 2) + math.sin(push) * (yy - out_h / 2)) / out_h
        shift = np.float32(hard.uniform(8, 16) * d) * np.clip(along * 2, -1, 1)
        dx, dy = dx + math.cos(push) * shift, dy + math.sin(push) * shift
    inv = cv2.invertAffineTransform(m)
    map_x = inv[0, 0] * xx + inv[0, 1] * yy + inv[0, 2] + dx
    map_y = inv[1, 0] * xx + inv[1, 1] * yy + inv[1, 2] + dy
    ridges = cv2.remap(
        master.ridges,
        map_x.astype(np.float32),
        map_y.astype(np.float32),
        cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0.0,
    )
    # contact area: an ellipse around the finger's centre
    cx = out_w / 2 + tx + rng.uniform(-20, 20) * d
    cy = out_h / 2 + ty + rng.uniform(-30, 30) * d
    area = np.zeros((out_h, out_w), np.float32)
    # a flat capture's contact: nearly the frame (smaller areas scored NFIQ 2 below real prints')
    axes = (int(out_w * rng.uniform(0.36, 0.5)), int(out_h * rng.uniform(0.38, 0.55)))
    if condition == "partial":  # the finger's tip or side only, off centre
        keep = hard.uniform(0.45, 0.65)
        axes = (int(axes[0] * keep), int(axes[1] * keep))
        off = hard.uniform(0, 2 * math.pi)
        cx += math.cos(off) * out_w * 0.22
        cy += math.sin(off) * out_h * 0.22
    cv2.ellipse(area, (int(cx), int(cy)), axes, angle, 0, 360, 1.0, -1)
    contact = cv2.GaussianBlur(area, (0, 0), 6)
    pressure = rng.uniform(-0.35, 0.35) * d  # >0: heavy press, thick ridges
    contrast = 175.0
    if condition == "dry":
        pressure = -hard.uniform(0.35, 0.6)
        contrast *= hard.uniform(0.55, 0.8)
    elif condition == "wet":
        pressure = hard.uniform(0.45, 0.75)
    ink = np.clip((-(ridges) + pressure) * 2.5, -1, 1)  # 1 = ridge
    ink = ink * (
        0.75 + 0.25 * cv2.GaussianBlur(rng.random((out_h, out_w)).astype(np.float32), (0, 0), 8)
    )
    if condition == "dry":  # ridges broken into dots and dashes
        grain = cv2.GaussianBlur(hard.random((out_h, out_w)).astype(np.float32), (0, 0), 1.5)
        gaps = grain < np.quantile(grain, hard.uniform(0.3, 0.5))
        ink = np.where(gaps & (ink > -1), -1.0, ink)
    elif condition == "wet":  # blotches where the moisture fills the valleys
        wet = cv2.GaussianBlur(hard.random((out_h, out_w)).astype(np.float32), (0, 0), 12)
        blot = np.clip((wet - np.quantile(wet, hard.uniform(0.7, 0.85))) * 60, 0, 1)
        ink = ink + blot * (0.9 - ink)
    elif condition == "smudged":  # the finger slid: a streak along the slide, over part of it
        length = int(hard.uniform(9, 17))
        kernel = np.zeros((length, length), np.float32)
        kernel[length // 2] = 1.0 / length
        rot = cv2.getRotationMatrix2D(((length - 1) / 2, (length - 1) / 2), hard.uniform(0, 180), 1)
        line = np.asarray(cv2.warpAffine(kernel, rot, (length, length)), np.float32)
        streak = cv2.filter2D(ink.astype(np.float32), -1, line / max(float(line.sum()), 1e-6))
        side = hard.uniform(0, 2 * math.pi)
        along = np.cos(side) * (xx - cx) + np.sin(side) * (yy - cy)
        share = np.clip(along / 40.0 + 0.5, 0, 1)  # one side of the contact
        ink = ink + share * (streak - ink)
    grey = 235 - contact * (ink + 1) / 2 * contrast
    grey += rng.normal(0, 6 + 6 * d, grey.shape)
    smoothed = cv2.GaussianBlur(grey.astype(np.float32), (0, 0), 0.7)
    return np.asarray(np.clip(smoothed, 0, 255), dtype=np.uint8)
