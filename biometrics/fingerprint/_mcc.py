"""Matching: Minutia Cylinder-Code (MCC, bit-based; Cappelli, Ferrara and Maltoni 2010) with
LSS-R consolidation, a score in bits of evidence, and 1:N search with a descriptor pre-selection.
A template's cylinders are built once, on first use, and kept with it."""

from __future__ import annotations

import functools
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources

import cv2
import numpy as np

from biometrics.fingerprint._iso import FingerprintTemplate

# MCC's parameters (Cappelli, Ferrara and Maltoni 2010)
_R, _NS, _ND = 70.0, 16, 6
_SIGMA_S, _SIGMA_D = 28 / 3, 2 * math.pi / 9
_MU_PSI = 0.01
_OMEGA = 50.0  # px the minutiae's convex hull is grown by to approximate the finger area
_MIN_VC = 0.75  # a cylinder needs this share of its disc's cells valid
_MIN_M = 2  # ... and this many neighbouring minutiae
_MIN_ME = 0.6  # share of matchable cells for two cylinders to be compared
_DS = 2 * _R / _NS
_DD = 2 * math.pi / _ND


def _dphi(a: np.ndarray | float, b: np.ndarray | float) -> np.ndarray:
    """Signed angle difference a - b wrapped to [-pi, pi)."""
    return np.asarray((a - b + math.pi) % (2 * math.pi) - math.pi)


@dataclass(frozen=True)
class _Cylinders:
    xy: np.ndarray  # (n, 2) float, y axis up
    angle: np.ndarray  # (n,)
    bits: np.ndarray  # (n, W) uint64
    valid: np.ndarray  # (n, W) uint64
    ok: np.ndarray  # (n,) bool
    descriptor: np.ndarray  # (1536,) float32, unit length: for 1:N pre-selection


_OFFSETS = np.array(
    [((i - (_NS - 1) / 2) * _DS, (j - (_NS - 1) / 2) * _DS) for j in range(_NS) for i in range(_NS)]
)
_AXIS = (np.arange(_NS) - (_NS - 1) / 2) * _DS  # cell centres along either axis
_IN_DISC = np.hypot(_OFFSETS[:, 0], _OFFSETS[:, 1]) <= _R
_BIN_CENTRES = -math.pi + (np.arange(_ND) + 0.5) * _DD


def _cylinders(t: FingerprintTemplate) -> _Cylinders:
    """The template's cylinders, built on first use and kept on the (frozen) template: its
    features are immutable, so the search structure never goes stale (as SourceAFIS does)."""
    cached = t.__dict__.get("_cylinders")
    if cached is None:
        cached = _build_cylinders(t)
        object.__setattr__(t, "_cylinders", cached)
    return cached


def _build_cylinders(t: FingerprintTemplate) -> _Cylinders:
    from scipy.special import erf

    n = len(t.minutiae)
    xy = np.array([(m.x, -m.y) for m in t.minutiae], dtype=np.float64).reshape(n, 2)
    ang = np.array([m.angle for m in t.minutiae], dtype=np.float64)
    # finger area: the minutiae's convex hull grown by OMEGA
    area = np.zeros((t.height + 1, t.width + 1), np.uint8)
    if n >= 3:
        hull = cv2.convexHull(np.array([(m.x, m.y) for m in t.minutiae], np.int32))
        cv2.fillConvexPoly(area, hull, 1)
        outside = cv2.distanceTransform(1 - area, cv2.DIST_L2, 3)
        area = (outside <= _OMEGA).astype(np.uint8)
    c, s = np.cos(ang), np.sin(ang)
    # cell centres, rotated with each minutia: (n, cells, 2)
    px = xy[:, None, 0] + c[:, None] * _OFFSETS[None, :, 0] - s[:, None] * _OFFSETS[None, :, 1]
    py = xy[:, None, 1] + s[:, None] * _OFFSETS[None, :, 0] + c[:, None] * _OFFSETS[None, :, 1]
    ix = np.clip(np.round(px).astype(int), 0, t.width)
    iy = np.clip(np.round(-py).astype(int), 0, t.height)
    inside = (px >= 0) & (px <= t.width) & (-py >= 0) & (-py <= t.height)
    valid_cells = _IN_DISC[None, :] & inside & (area[iy, ix] > 0)
    # contributions of every other minutia to every cell of every cylinder. In minutia i's
    # own frame, neighbour t sits at q = R(-angle_i) (xy_t - xy_i) and the cells on the grid
    # (u_a, u_b): the spatial Gaussian of their distance factors into one along each axis,
    # exp(-(u_a - q_x)^2 / 2s^2) exp(-(u_b - q_y)^2 / 2s^2), so the sum over neighbours is a
    # batched matrix product (five times faster than a sum over every cell and neighbour)
    rel = xy[None, :, :] - xy[:, None, :]  # (n, t, 2)
    qx = c[:, None] * rel[:, :, 0] + s[:, None] * rel[:, :, 1]
    qy = -s[:, None] * rel[:, :, 0] + c[:, None] * rel[:, :, 1]
    norm = 1 / (_SIGMA_S * math.sqrt(2 * math.pi))
    gx = np.exp(-((qx[:, :, None] - _AXIS[None, None, :]) ** 2) / (2 * _SIGMA_S**2)) * norm
    gy = np.exp(-((_AXIS[None, :, None] - qy[:, None, :]) ** 2) / (2 * _SIGMA_S**2))
    gx[np.arange(n), np.arange(n), :] = 0.0  # a minutia does not count itself
    dtheta = _dphi(ang[:, None], ang[None, :])  # (n, n)
    alpha = _dphi(_BIN_CENTRES[None, None, :], dtheta[:, :, None])  # (n, n, ND)
    k = math.sqrt(2) * _SIGMA_D
    gd = 0.5 * (erf((alpha + _DD / 2) / k) - erf((alpha - _DD / 2) / k))
    # (n, t, a, ND): the x factor and the direction term of each neighbour, then the y factor
    per_t = np.einsum("nta,ntk->ntak", gx, gd).reshape(n, n, _NS * _ND)
    contrib = np.matmul(gy, per_t).reshape(n, _NS * _NS, _ND)  # cell b * NS + a
    bits = (contrib > _MU_PSI) & valid_cells[:, :, None]
    neighbours = (
        np.hypot(xy[:, None, 0] - xy[None, :, 0], xy[:, None, 1] - xy[None, :, 1])
        <= _R + 3 * _SIGMA_S
    ).sum(axis=1) - 1
    ok = (valid_cells.sum(axis=1) >= _MIN_VC * _IN_DISC.sum()) & (neighbours >= _MIN_M)
    valid3 = np.repeat(valid_cells[:, :, None], _ND, axis=2)

    def pack(a: np.ndarray) -> np.ndarray:
        return np.packbits(a.reshape(n, DESCRIPTOR_SIZE), axis=1).view(">u8").astype(np.uint64)

    desc = (
        bits[ok].reshape(int(ok.sum()), DESCRIPTOR_SIZE).mean(axis=0)
        if ok.any()
        else np.zeros(DESCRIPTOR_SIZE)
    )
    norm = float(np.linalg.norm(desc))
    desc = (desc / norm if norm > 0 else desc).astype(np.float32)
    return _Cylinders(xy, ang, pack(bits), pack(valid3), ok, desc)


def _match(a: _Cylinders, b: _Cylinders) -> float:
    """The raw LSS-R score of two cylinder sets (compiled: ``_kernel``)."""
    from biometrics.fingerprint import _kernel  # lazy: numba's import and compilation

    return float(
        _kernel.match(
            a.xy, a.angle, a.bits, a.valid, a.ok,
            b.xy, b.angle, b.bits, b.valid, b.ok,
            _MIN_ME * float(_IN_DISC.sum() * _ND),
        )
    )  # fmt: skip


# Raw LSS-R scores -> bits of evidence, -log2(FMR): the empirical impostor survival function
# of real prints, the 11,520 cross-finger pairs of the four FVC2004 B sets pooled (LEADER's
# minutiae; `bench/bench_fingerprint.py fvc` measures each set). Between knots the bits are
# interpolated. Past the last knot (11 bits: 5 pairs scored higher) they follow the last
# segment's slope: an extrapolation, and real impostor tails thin out more slowly than an
# exponential, so evidence far past 11 bits may be overstated (thresholds up to about 13 bits
# rest on data).
_CAL_SCORES = np.array([0.0, 0.0131, 0.0153, 0.0177, 0.0211, 0.0275, 0.0383])
_CAL_BITS = np.array([0.0, 1.0, 3.0, 5.0, 7.0, 9.0, 11.0])
_TAIL_SLOPE = float((_CAL_BITS[-1] - _CAL_BITS[-2]) / (_CAL_SCORES[-1] - _CAL_SCORES[-2]))


def score_to_bits(raw: float) -> float:
    """Bits of evidence for a raw LSS-R score: a threshold of t bits has an FMR of 2**-t."""
    if raw <= _CAL_SCORES[-1]:
        return float(np.interp(raw, _CAL_SCORES, _CAL_BITS))
    return float(_CAL_BITS[-1] + _TAIL_SLOPE * (raw - _CAL_SCORES[-1]))


DESCRIPTOR_SIZE = _NS * _NS * _ND


def descriptor(t: FingerprintTemplate) -> np.ndarray:
    """The template's cylinder descriptor (DESCRIPTOR_SIZE float32 values, unit length or all
    zero): the mean of its valid cylinders' bits, for 1:N pre-selection."""
    return _cylinders(t).descriptor


CODE_BITS = 256
_CODE_SEED = 2011  # the hyperplanes are part of the code's definition: never change them


@functools.cache
def _code_basis() -> tuple[np.ndarray, np.ndarray]:
    """The mean descriptor of real fingers (FVC2004 DB1_B and DB2_B, the project's extractor:
    ``bench/bench_abis.py index --fit`` wrote it) and the code's random hyperplanes."""
    centre = np.load(io.BytesIO((resources.files(__package__) / "mcc_centre.npy").read_bytes()))
    planes = np.random.default_rng(_CODE_SEED).standard_normal((CODE_BITS, DESCRIPTOR_SIZE))
    return centre.astype(np.float32), planes.astype(np.float32)


def index_code(t: FingerprintTemplate) -> np.ndarray:
    """The template's index code: CODE_BITS bits (``CODE_BITS // 8`` uint8), the signs of
    random projections (SimHash, Charikar 2002) of its cylinder descriptor less the mean
    descriptor of real fingers. The Hamming distance of two codes estimates the angle between
    the two centred descriptors (``d / CODE_BITS * pi``): 32 bytes a finger, searched by
    faiss's binary indexes. Rotation and translation invariant, like the cylinders."""
    centre, planes = _code_basis()
    return np.packbits(planes @ (descriptor(t) - centre) > 0)


class FingerprintMatcher:
    """1:N use: the probe's cylinders are built once, then matched against many candidates."""

    def __init__(self, probe: FingerprintTemplate) -> None:
        self.probe = probe
        self._cyl = _cylinders(probe)

    def match_raw(self, candidate: FingerprintTemplate) -> float:
        """The raw LSS-R score in [0, 1]. Thread-safe."""
        return _match(self._cyl, _cylinders(candidate))

    def match(self, candidate: FingerprintTemplate) -> float:
        """Similarity in bits of evidence (threshold t bits: FMR about 2**-t)."""
        return score_to_bits(self.match_raw(candidate))


def paired_minutiae(
    a: FingerprintTemplate, b: FingerprintTemplate, n: int = 12
) -> list[tuple[int, int, float]]:
    """The ``n`` most similar minutia pairs of ``a`` and ``b``, each minutia used once:
    (index in ``a.minutiae``, index in ``b.minutiae``, local similarity in [0, 1]), best
    first. They are the pairs the score consolidates (LSS-R starts from the same greedy
    choice): what an examiner is shown beside the score, not a second score."""
    from biometrics.fingerprint import _kernel

    ca, cb = _cylinders(a), _cylinders(b)
    if len(ca.angle) == 0 or len(cb.angle) == 0:
        return []
    sim = _kernel.similarities(
        ca.angle, ca.bits, ca.valid, ca.ok,
        cb.angle, cb.bits, cb.valid, cb.ok,
        _MIN_ME * float(_IN_DISC.sum() * _ND),
    )  # fmt: skip
    pairs: list[tuple[int, int, float]] = []
    while len(pairs) < n:
        i, j = np.unravel_index(int(np.argmax(sim)), sim.shape)
        if sim[i, j] <= 0:
            break
        pairs.append((int(i), int(j), float(sim[i, j])))
        sim[i, :], sim[:, j] = 0.0, 0.0
    return pairs


def compare(a: FingerprintTemplate, b: FingerprintTemplate) -> float:
    """Similarity of two templates in bits of evidence; rotation and translation invariant."""
    return FingerprintMatcher(a).match(b)


class FingerprintGallery:
    """Templates prepared for 1:N search (cylinders and pre-selection descriptors)."""

    def __init__(self) -> None:
        self.ids: list[object] = []
        self._templates: list[FingerprintTemplate] = []
        self._desc = np.zeros((0, _NS * _NS * _ND), np.float32)
        self._pending: list[np.ndarray] = []
        self._centre: tuple[np.ndarray, np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self.ids)

    def add(self, key: object, template: FingerprintTemplate) -> None:
        """Add one template under ``key``."""
        self.ids.append(key)
        self._templates.append(template)
        self._pending.append(_cylinders(template).descriptor)

    def _descriptors(self) -> np.ndarray:
        if self._pending:
            self._desc = np.vstack([self._desc, np.stack(self._pending)])
            self._pending = []
            self._centre = None
        return self._desc

    def preselection_scores(self, probe: FingerprintTemplate) -> np.ndarray:
        """Cosine similarity of the gallery's descriptors to the probe's after removing
        the gallery's mean descriptor (what every finger shares says nothing about identity;
        centring moved mates from a mean rank of 3.4 to 0.6 among 40 fingers)."""
        d = self._descriptors()
        if self._centre is None:
            mu = d.mean(axis=0)
            norms = np.sqrt(np.maximum(1 - 2 * (d @ mu) + mu @ mu, 1e-12))
            self._centre = (mu, norms)
        mu, norms = self._centre
        return np.asarray((d @ (_cylinders(probe).descriptor - mu)) / norms)

    def search(
        self, probe: FingerprintTemplate, top_k: int = 10, preselect: int | None = 200
    ) -> list[tuple[object, float]]:
        """Best ``top_k`` (key, bits) pairs. With ``preselect``, only that many candidates,
        ranked by their cylinder descriptor, are fully matched; None matches them all."""
        matcher = FingerprintMatcher(probe)
        candidates: Sequence[int] | np.ndarray
        if preselect is None or preselect >= len(self):
            candidates = range(len(self))
        else:
            scores = self.preselection_scores(probe)
            candidates = np.argpartition(-scores, preselect)[:preselect]
        results = [(self.ids[i], matcher.match(self._templates[i])) for i in candidates]
        results.sort(key=lambda r: r[1], reverse=True)
        return results[:top_k]
