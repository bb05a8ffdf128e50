"""A population of synthetic fingers at the template level (minutiae, no images), to measure
the registry's ABIS at sizes that image-based fingers cannot reach on this machine (an image
and its LEADER extraction cost 1-2.5 s a finger: 100k persons would take weeks).

A finger (:func:`finger`) is a master set of minutiae on the ridge flow of one of the five
finger classes (``biometrics.synthetic.OrientationModel``: cores and deltas of the zero-pole
model, the class shares of real fingers): positions thrown at random over the finger's area,
never closer than real minutiae come (``MIN_GAP``), each pointing along the flow one way or
the other, endings and bifurcations in their measured shares. An impression of it
(:func:`impression`) is what one capture sees: the contact area (an ellipse of the size of a
real capture, placed off-centre at random), a smooth non-linear distortion of the skin, the
finger turned and shifted, every minutia moved a little, some missed (more towards the edge of
the contact), and spurious ones added along the flow.

Faces (:func:`face`, :func:`face_capture`): the shared photos are of 12 people, too few to
draw faces from, so a person's dlib template is drawn from a model of the measured statistics:
a part common to everyone (dlib templates of any two people are alike: cosine about 0.8), a
person's own part, and each capture's noise, sized so that the cosine similarities' mean and
spread between two people and between two captures of one person are those of the shared
photos (``bench_abis.py population`` compares them). Labelled as such wherever used.

The numbers below are set from the project's templates of FVC2004 DB1_B and DB2_B (minutiae
counts, spacing, shares) and from what is known of captures (rotation, distortion); DB3_B and
DB4_B stay held out. ``bench_abis.py population`` compares its genuine and impostor score
distributions with the real sets' (two-sample KS test, impostor tail): figures made on this
population say so, and hold only where that comparison passes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from biometrics import fingerprint as fp
from biometrics.face import TEMPLATE_DIM
from biometrics.synthetic import CLASS_WEIGHTS, FINGER_CLASSES, OrientationModel, orientation_model

# the master finger's canvas and area (500 dpi): larger than any capture of it
CANVAS_H, CANVAS_W = 720, 560
FINGER_AXES = (0.40 * CANVAS_W, 0.46 * CANVAS_H)  # semi-axes of the finger's ellipse
DENSITY = 7.0e-4  # minutiae per px^2 (FVC2004 DB1_B, DB2_B: 6.4-7.2 per 10,000 px^2)
MIN_GAP = 11.0  # px: the closest two minutiae come (5th percentile of nearest neighbours 12 px)
BIFURCATIONS = 0.44  # share of bifurcations (DB1_B 0.46, DB2_B 0.42)
QUALITY = (74, 93, 96)  # 10th, 50th, 90th percentile of the minutiae's quality (1-100)

# one capture
# semi-axes' ranges of the contact ellipse: set so that the minutiae a capture holds come as
# many as in DB1_B + DB2_B's templates (10th / 50th / 90th percentile 17 / 30.5 / 44)
CONTACT_AXES = ((75.0, 140.0), (100.0, 190.0))
CONTACT_SHIFT = 25.0  # px: sd of the contact's centre from the finger's
TURN_SD = math.radians(12)  # the finger's rotation on the sensor
DISTORTION = 1.5  # px: sd of each of four bumps of the skin's displacement
DISTORTION_SCALE = 110.0  # px: how far the displacement field varies smoothly
JITTER_XY, JITTER_ANGLE = 1.5, math.radians(3.5)  # where the extractor puts a minutia
MISSED, MISSED_AT_EDGE = 0.08, 0.3  # a minutia missed (within EDGE px of the contact's edge)
EDGE = 18.0
SPURIOUS = 0.08  # spurious minutiae, as a share of the true ones seen
HARDNESS_SD = 0.7  # captures differ: distortion, shift and misses scaled by a lognormal factor
IMAGE_W, IMAGE_H = 400, 500  # the capture's image (templates carry its geometry)
MIN_MINUTIAE = fp.ExtractionSettings().min_minutiae  # fewer: the extractor refuses the image

# faces: fitted (moments, by simulation) to every pair of the shared photos' dlib templates:
# impostor cosine mean 0.806 sd 0.040, genuine mean 0.974 sd 0.010
FACE_SPREAD = 0.1375  # sd of a person's length along the common direction (its length: 1)
FACE_IDENTITY = 0.03946  # sd of each of the other 127 values of a person's own part
FACE_CAPTURE = 0.01501  # sd of each value of one capture's noise ...
FACE_HARDNESS = 0.2003  # ... scaled by a lognormal factor per capture (light, pose)


@dataclass(frozen=True)
class Finger:
    """A synthetic finger: its master minutiae (canvas coordinates, y down) and ridge flow."""

    xy: np.ndarray  # (m, 2) float
    angle: np.ndarray  # (m,) ISO angle: radians counter-clockwise, y axis up
    bifurcation: np.ndarray  # (m,) bool
    quality: np.ndarray  # (m,) int
    flow: OrientationModel
    centre: tuple[float, float]


def _quality(rng: np.random.Generator, n: int) -> np.ndarray:
    """Minutia qualities with the measured percentiles (piecewise-linear quantile function)."""
    lo, mid, hi = QUALITY
    u = rng.random(n)
    q = np.interp(u, [0.0, 0.1, 0.5, 0.9, 1.0], [max(lo - 30, 1), lo, mid, hi, 100])
    return np.round(q).astype(int)


def _along_flow(flow: OrientationModel, xy: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """ISO angles of minutiae at ``xy``: along the ridge flow, either way."""
    theta = flow.at(xy[:, 0], xy[:, 1])  # image coordinates, y down, modulo pi
    return np.asarray((-theta + math.pi * (rng.random(len(xy)) < 0.5)) % (2 * math.pi))


def finger(rng: np.random.Generator) -> Finger:
    """A new synthetic finger."""
    kind = str(rng.choice(FINGER_CLASSES, p=CLASS_WEIGHTS))
    flow = orientation_model(kind, CANVAS_H, CANVAS_W, rng)
    cx, cy = CANVAS_W / 2, 0.52 * CANVAS_H
    ax, ay = FINGER_AXES
    target = rng.poisson(DENSITY * math.pi * ax * ay)
    # dart throwing: uniform over the ellipse, refused when nearer than MIN_GAP to another
    # (the points already taken are looked up in a grid of MIN_GAP cells: only the 3 x 3
    # cells around a dart can hold one that near)
    points: list[tuple[float, float]] = []
    grid: dict[tuple[int, int], list[tuple[float, float]]] = {}
    tries = rng.random((target * 8, 2))
    for u, v in tries:
        if len(points) == target:
            break
        r, phi = math.sqrt(u), 2 * math.pi * v
        x, y = cx + ax * r * math.cos(phi), cy + ay * r * math.sin(phi)
        gx, gy = int(x // MIN_GAP), int(y // MIN_GAP)
        near = (
            p
            for i in (gx - 1, gx, gx + 1)
            for j in (gy - 1, gy, gy + 1)
            for p in grid.get((i, j), ())
        )
        if all((x - px) ** 2 + (y - py) ** 2 >= MIN_GAP**2 for px, py in near):
            points.append((x, y))
            grid.setdefault((gx, gy), []).append((x, y))
    xy = np.asarray(points, np.float64).reshape(-1, 2)
    return Finger(
        xy,
        _along_flow(flow, xy, rng),
        rng.random(len(xy)) < BIFURCATIONS,
        _quality(rng, len(xy)),
        flow,
        (cx, cy),
    )


def _displacement(rng: np.random.Generator, xy: np.ndarray) -> np.ndarray:
    """A smooth random displacement of the skin at ``xy``: a few Gaussian bumps."""
    out = np.zeros_like(xy)
    for _ in range(4):
        centre = rng.uniform((0, 0), (CANVAS_W, CANVAS_H))
        shift = rng.normal(0, DISTORTION, 2)
        d2 = ((xy - centre) ** 2).sum(axis=1)
        out += np.exp(-d2 / (2 * DISTORTION_SCALE**2))[:, None] * shift
    return out


def impression(f: Finger, rng: np.random.Generator, position: int = 0) -> fp.FingerprintTemplate:
    """One capture of finger ``f`` as the extractor would report it (ISO/IEC 19794-2 template
    of a IMAGE_W x IMAGE_H image at 500 dpi; ``position``: its ISO finger position). Raises
    ``fingerprint.FingerprintError`` where the extractor would: too few minutiae seen."""
    hard = float(rng.lognormal(0, HARDNESS_SD))
    cx, cy = f.centre
    ex, ey = cx + rng.normal(0, CONTACT_SHIFT * hard), cy + rng.normal(0, CONTACT_SHIFT * hard)
    ax, ay = rng.uniform(*CONTACT_AXES[0]), rng.uniform(*CONTACT_AXES[1])
    rel = ((f.xy[:, 0] - ex) / ax) ** 2 + ((f.xy[:, 1] - ey) / ay) ** 2
    inside = rel <= 1
    # distance to the contact's edge, roughly (in px along the smaller axis)
    edge = (1 - np.sqrt(np.minimum(rel, 1))) * min(ax, ay)
    missed = np.minimum(np.where(edge < EDGE, MISSED_AT_EDGE, MISSED) * hard, 0.9)
    keep = inside & (rng.random(len(rel)) >= missed)
    xy, angle = f.xy[keep], f.angle[keep]
    kinds, quality = f.bifurcation[keep], f.quality[keep]
    # spurious minutiae inside the contact, along the flow
    extra = rng.poisson(SPURIOUS * max(len(xy), 1))
    r, phi = np.sqrt(rng.random(extra)), 2 * math.pi * rng.random(extra)
    fake = np.stack([ex + ax * r * np.cos(phi), ey + ay * r * np.sin(phi)], axis=1)
    xy = np.concatenate([xy, fake])
    angle = np.concatenate([angle, _along_flow(f.flow, fake, rng)])
    kinds = np.concatenate([kinds, rng.random(extra) < BIFURCATIONS])
    quality = np.concatenate([quality, _quality(rng, extra) * 0.8]).astype(int)
    # the skin stretched, the finger turned about the contact's centre and placed in the image
    xy = xy + hard * _displacement(rng, xy) + rng.normal(0, JITTER_XY, xy.shape)
    turn = rng.normal(0, TURN_SD)  # counter-clockwise as seen (image y down: clockwise sign)
    c, s = math.cos(turn), math.sin(turn)
    dx, dy = xy[:, 0] - ex, xy[:, 1] - ey
    x = IMAGE_W / 2 + c * dx + s * dy + rng.normal(0, 10)
    y = IMAGE_H / 2 - s * dx + c * dy + rng.normal(0, 10)
    angle = (angle + turn + rng.normal(0, JITTER_ANGLE, len(angle))) % (2 * math.pi)
    seen = (x >= 0) & (x < IMAGE_W) & (y >= 0) & (y < IMAGE_H)
    kind: dict[bool, fp.MinutiaKind] = {True: "bifurcation", False: "ending"}
    xi, yi = np.round(x).astype(int), np.round(y).astype(int)
    minutiae = tuple(
        fp.Minutia(
            int(xi[i]),
            int(yi[i]),
            float(angle[i]),
            kind[bool(kinds[i])],
            int(np.clip(quality[i], 1, 100)),
        )
        for i in np.flatnonzero(seen)
    )
    if len(minutiae) < MIN_MINUTIAE:  # what the extractor refuses (its no_fingerprint)
        raise fp.FingerprintError(f"only {len(minutiae)} minutiae seen", "no_fingerprint")
    return fp.FingerprintTemplate(IMAGE_W, IMAGE_H, minutiae, 500, 60, position)


def face(rng: np.random.Generator) -> np.ndarray:
    """A new person's face: the template without capture noise (128 values)."""
    out = np.empty(TEMPLATE_DIM)
    out[0] = 1 + FACE_SPREAD * rng.normal()
    out[1:] = FACE_IDENTITY * rng.normal(size=TEMPLATE_DIM - 1)
    return out


def face_capture(person: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One capture of a person's face as dlib would template it (unit length, float32)."""
    x = person.copy()
    noise = FACE_CAPTURE * float(rng.lognormal(0, FACE_HARDNESS))
    x[1:] += noise * rng.normal(size=len(x) - 1)
    return np.asarray(x / np.linalg.norm(x), np.float32)
