"""Fusion: a probe and one enrolled person compared on everything both have (up to ten
fingers and the face), each comparison turned into a calibrated log-likelihood ratio (LLR,
natural log: how much likelier the score is between two captures of one person than between
two people), the LLRs summed, and the sum held against thresholds derived from the target
false-positive identification rate (FPIR) at the gallery's size.

Why the thresholds follow from the target: for a calibrated LLR the impostor mean of the
likelihood ratio is 1, so P(LLR >= t | two people) <= e^-t (Markov), and over a gallery of N
persons FPIR <= N e^-t (union bound). ``t = ln(N / FPIR)`` keeps the false-positive
identification rate at or under the target whatever N is; the bound is loose, the bench
measures the real rate (``bench/bench_abis.py``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np

from biometrics import face
from biometrics import fingerprint as fp


@dataclass(frozen=True)
class Calibration:
    """Linear-logistic calibration of one matcher's scores to LLRs (natural log), fitted with
    both classes weighted equally (the BOSARIS/FoCal recipe); scores outside the range the
    data covers are clamped to it, so no comparison claims more than was measured."""

    slope: float
    offset: float
    lo: float
    hi: float

    def llr(self, score: float) -> float:
        """The LLR of a score."""
        return self.slope * min(max(score, self.lo), self.hi) + self.offset


# Measured by `bench/bench_abis.py calibrate` (its output is in the README). The range: from
# where genuine scores begin (1st percentile) to where impostor scores end (the highest), and
# never more evidence than the pairs measured can show (|LLR| <= ln(pairs of the other class)).
# Fingers: scores in bits (fingerprint.FingerprintMatcher.match) of the four FVC2004 B sets,
# FVC protocol (1,120 genuine, 11,520 impostor pairs), the project's extractor: LLR -4.2..6.6.
FINGER = Calibration(slope=0.7705, offset=-4.9295, lo=0.9312, hi=14.9512)
# Faces: cosine similarity of dlib templates, every pair of the shared photos (296 genuine,
# 2,260 impostor pairs; the classes do not overlap there, so only the evidence bound limits
# the range): LLR -5.7..7.5. Few people: to be measured again on a real set.
FACE = Calibration(slope=80.3352, offset=-72.8264, lo=0.8357, hi=1.0027)
# The prior of a finger captured under its other hand's position (left and right swapped):
# a probe finger is compared with both, and the mixture's likelihood ratio
# (1 - p) LR_same + p LR_mirror stays calibrated (its impostor mean is still 1).
SWAP_PRIOR = 0.01


class Outcome(StrEnum):
    """The three answers of the deduplication."""

    UNIQUE = "unique"
    DUPLICATE = "duplicate"
    ADJUDICATION = "adjudication"


@dataclass(frozen=True)
class FingerScore:
    """One probe finger against one person: the person's finger that explained it best."""

    position: int
    matched_position: int
    bits: float
    llr: float


@dataclass(frozen=True)
class Comparison:
    """A probe against one enrolled person: the fused LLR and what it is made of."""

    person_id: int
    llr: float
    fingers: tuple[FingerScore, ...] = ()
    face_score: float | None = None
    face_llr: float = 0.0

    def evidence(self) -> dict[str, object]:
        """As stored with the decision (scores only: no biometric data)."""
        return {
            "person_id": self.person_id,
            "llr": round(self.llr, 3),
            "face": None
            if self.face_score is None
            else {"score": round(self.face_score, 4), "llr": round(self.face_llr, 3)},
            "fingers": [
                {
                    "position": f.position,
                    "matched_position": f.matched_position,
                    "bits": round(f.bits, 2),
                    "llr": round(f.llr, 3),
                }
                for f in self.fingers
            ],
        }


def compare(
    person_id: int,
    probe_fingers: Mapping[int, fp.FingerprintMatcher],
    probe_faces: np.ndarray,
    fingers: Mapping[int, fp.FingerprintTemplate],
    faces: np.ndarray,
) -> Comparison:
    """Compare a probe (matchers by finger position, face templates) with one person (finger
    templates by position, face templates). A finger either side lacks contributes nothing;
    each probe finger is compared with the person's finger at its position and at the other
    hand's (a swap), mixed by SWAP_PRIOR."""
    scores = []
    for position, matcher in sorted(probe_fingers.items()):
        mixture = []  # log(weight * LR) of each hypothesis: same position, or swapped
        compared: list[tuple[float, int, float]] = []  # (log(weight * LR), position, bits)
        mirror = fp.FingerPosition(position).mirror()
        for where, weight in ((position, 1 - SWAP_PRIOR), (mirror, SWAP_PRIOR)):
            template = fingers.get(where)
            if template is None:  # the person lacks this finger: no evidence, LR 1
                mixture.append(math.log(weight))
            else:
                bits = matcher.match(template)
                compared.append((math.log(weight) + FINGER.llr(bits), where, bits))
                mixture.append(compared[-1][0])
        if compared:
            _, where, bits = max(compared)
            llr = float(np.logaddexp.reduce(mixture))
            scores.append(FingerScore(position, where, bits, llr))
    face_score = None
    face_llr = 0.0
    if len(probe_faces) and len(faces):
        face_score = max(face.compare(a, b) for a in probe_faces for b in faces)
        face_llr = FACE.llr(face_score)
    total = sum(f.llr for f in scores) + face_llr
    return Comparison(person_id, total, tuple(scores), face_score, face_llr)


@dataclass(frozen=True)
class Thresholds:
    """Fused-LLR thresholds for a gallery of ``gallery_size`` persons."""

    gallery_size: int
    target_fpir: float
    adjudication_fpir: float
    duplicate: float = field(init=False)
    adjudication: float = field(init=False)

    def __post_init__(self) -> None:
        n = max(self.gallery_size, 1)
        object.__setattr__(self, "duplicate", math.log(n / self.target_fpir))
        object.__setattr__(self, "adjudication", math.log(n / self.adjudication_fpir))

    def evidence(self) -> dict[str, object]:
        """As stored with the decision."""
        return {
            "gallery_size": self.gallery_size,
            "target_fpir": self.target_fpir,
            "adjudication_fpir": self.adjudication_fpir,
            "duplicate": round(self.duplicate, 3),
            "adjudication": round(self.adjudication, 3),
        }


def decide(best: Comparison | None, thresholds: Thresholds) -> tuple[Outcome, str | None]:
    """The outcome for the best-scoring person (None: nobody to compare with) and, for an
    adjudication, why. Without a single finger compared, the face alone never makes a
    duplicate: a match goes to a person (``face_only``)."""
    if best is None or best.llr < thresholds.adjudication:
        return Outcome.UNIQUE, None
    if not best.fingers:
        return Outcome.ADJUDICATION, "face_only"
    if best.llr >= thresholds.duplicate:
        return Outcome.DUPLICATE, None
    return Outcome.ADJUDICATION, "near_match"
