"""Adjudication: the work queue, claims, what a case shows, decisions with four eyes, fraud
flags, look-ups with a reason, and the numbers of the dashboard.

The rules:

- a case is in one adjudicator's hands at a time (a lease of ``CLAIM_MINUTES``, renewed while
  they work on it); nobody else is shown it meanwhile;
- the machine's *leaning* is where its fused score stands between the two thresholds: at or
  above their midpoint it leans ``same person``, below it ``different persons``;
- a decision against the leaning, and any ``different persons`` at or above the duplicate
  threshold, waits for a second eye: a senior adjudicator who did not make it; they confirm
  it (it takes effect) or send the case back to the queue with both decisions in its history;
- ``same person`` links the enrolment to the candidate (nothing issued) and flags fraud when
  the identity claimed differs from the registered one; ``different persons`` issues the IDCS
  (through the deduplicator, which first searches again for anyone enrolled since);
  ``needs more information`` tells the citizen to come back (the receipt says so).

Every view of personal data writes an audit row (who, what, why); notes are encrypted.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

import numpy as np
from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from biometrics import face
from biometrics import fingerprint as fp
from central_api.adjudication.models import AdjudicationCase, AdjudicationDecision, FraudFlag
from central_api.audit.models import AuditEvent
from central_api.audit.service import record
from central_api.crypto import DecryptionError, FieldCipher
from central_api.db import transaction, utcnow
from central_api.dedup.fusion import Comparison
from central_api.dedup.service import (
    Deduplicator,
    face_similarity,
    finger_context,
    probe_context,
    probe_from_bytes,
)
from central_api.enrolment.models import Enrolment, Kiosk
from central_api.enrolment.schemas import (
    MAX_REVEAL_ATTEMPTS,
    REVEAL_FMR,
    CaptureInfo,
    Demographics,
    EnrolmentState,
    RevealAnswer,
    RevealRequest,
)
from central_api.enrolment.service import (
    ctx,
    face_templates,
    finger_images,
    finger_templates,
)
from central_api.exceptions import InvalidRequest, NotFound
from central_api.identity.models import FingerReference, Person
from central_api.operators.exceptions import Conflict, Forbidden
from central_api.operators.service import ADJUDICATORS, Role, Signed

CLAIM_MINUTES = 15
SLA_HOURS = 48  # a case older than this is overdue (shown red in the queue)


class Decision(StrEnum):
    """What an adjudicator decides on a case."""

    SAME_PERSON = "same_person"
    DIFFERENT_PERSONS = "different_persons"
    MORE_INFORMATION = "more_information"


class CaseStatus(StrEnum):
    """Where a case stands."""

    OPEN = "open"
    SECOND_REVIEW = "second_review"
    CLOSED = "closed"


# reason codes: what a decision rests on (the note adds detail); labels for the console
REASONS: dict[Decision, dict[str, str]] = {
    Decision.SAME_PERSON: {
        "biometrics_match": "Faces and fingerprints agree",
        "face_match_no_fingers": "Faces agree; fingerprints unavailable",
        "identity_fraud": "Same person under another identity",
    },
    Decision.DIFFERENT_PERSONS: {
        "fingerprints_differ": "Fingerprints clearly differ",
        "faces_differ": "Faces clearly differ",
        "twins_or_relatives": "Twins or close relatives",
    },
    Decision.MORE_INFORMATION: {
        "capture_quality": "Captures too poor to decide",
        "document_doubt": "The document must be checked in person",
        "interview_needed": "The citizen must be interviewed",
    },
}
REVIEW_REASONS = {
    "evidence_confirms": "The evidence supports the first decision",
    "evidence_insufficient": "The evidence does not support it",
    "procedure_not_followed": "The procedure was not followed",
}
LOOKUP_REASONS = {
    "citizen_at_counter": "The citizen is at the counter",
    "adjudication": "Adjudication of a related case",
    "fraud_investigation": "Fraud investigation",
    "data_correction": "Correction of registered data",
    "judicial_request": "Judicial request",
}
# what a look-up may be by: never a name (no free-text search of the register)
LOOKUP_KINDS = {"idcs": "IDCS", "receipt": "Receipt number", "packet": "Packet id"}
_COMPARED = (
    "surname_latin",
    "given_names_latin",
    "surname_arabic",
    "given_names_arabic",
    "date_of_birth",
    "place_of_birth",
    "sex",
    "nationality",
)
_FRAUD_FIELDS = ("surname_latin", "given_names_latin", "date_of_birth", "place_of_birth")


# ------------------------------------------------------------------- machine's view
@dataclass(frozen=True)
class Machine:
    """What the dedup decided the case on: its fused score, thresholds and leaning."""

    best_llr: float | None
    adjudication: float
    duplicate: float
    gallery_size: int
    reason: str
    candidates: list[dict[str, Any]]
    probe: dict[str, Any]

    @property
    def shown(self) -> list[dict[str, Any]]:
        """The candidates an adjudicator is shown: those at or above the adjudication
        threshold, or the best one when none is (a case opened for its capture evidence)."""
        above = [c for c in self.candidates if c["llr"] >= self.adjudication]
        return above or self.candidates[:1]

    @property
    def leaning(self) -> Decision:
        """Same person at or above the thresholds' midpoint, different persons below."""
        if self.best_llr is None:
            return Decision.DIFFERENT_PERSONS
        midpoint = (self.adjudication + self.duplicate) / 2
        return Decision.SAME_PERSON if self.best_llr >= midpoint else Decision.DIFFERENT_PERSONS

    def needs_second_eye(self, decision: Decision) -> bool:
        """Four eyes: against the leaning, or different persons above the duplicate line."""
        if decision == Decision.MORE_INFORMATION:
            return False
        above = self.best_llr is not None and self.best_llr >= self.duplicate
        return decision != self.leaning or (decision == Decision.DIFFERENT_PERSONS and above)


def machine_view(e: Enrolment, case: AdjudicationCase) -> Machine:
    """The dedup's evidence of the case's enrolment (stored with its decision)."""
    ev = json.loads(e.evidence or "{}")
    th = ev.get("thresholds", {})
    candidates = ev.get("candidates", [])
    return Machine(
        best_llr=candidates[0]["llr"] if candidates else None,
        adjudication=float(th.get("adjudication", 0.0)),
        duplicate=float(th.get("duplicate", 0.0)),
        gallery_size=int(th.get("gallery_size", 0)),
        reason=case.reason or ev.get("reason") or "",
        candidates=candidates,
        probe=ev.get("probe", {}),
    )


# ------------------------------------------------------------------------- the queue
@dataclass(frozen=True)
class QueueRow:
    """A case as the queue lists it (no personal data)."""

    case_id: int
    status: str
    reason: str
    opened_at: datetime
    age: timedelta
    overdue: bool
    best_llr: float | None
    leaning: Decision
    held_by_me: bool
    held_by_other: bool


def _claimable(op: Signed) -> list[str]:
    if op.role == Role.SENIOR_ADJUDICATOR:
        return [CaseStatus.OPEN, CaseStatus.SECOND_REVIEW]
    if op.role == Role.ADJUDICATOR:
        return [CaseStatus.OPEN]
    raise Forbidden("adjudication is for adjudicators")


def _first_decider(s: Session, case_id: int) -> str | None:
    return s.scalar(
        select(AdjudicationDecision.operator_id)
        .where(AdjudicationDecision.case_id == case_id, AdjudicationDecision.stage == "first")
        .order_by(AdjudicationDecision.id.desc())
        .limit(1)
    )


def queue(
    s: Session, op: Signed, status: str | None = None, reason: str | None = None, limit: int = 200
) -> list[QueueRow]:
    """Cases this operator may take, oldest first; ``status`` / ``reason`` filter (reason:
    ``near_match``, ``face_only`` or ``policy``)."""
    statuses = _claimable(op)
    if status:
        statuses = [x for x in statuses if x == status]
    q = select(AdjudicationCase, Enrolment).join(
        Enrolment, Enrolment.id == AdjudicationCase.enrolment_id
    )
    q = q.where(AdjudicationCase.status.in_(statuses))
    if reason == "policy":
        q = q.where(AdjudicationCase.reason.like("policy:%"))
    elif reason:
        q = q.where(AdjudicationCase.reason == reason)
    now = utcnow()
    rows = []
    for case, e in s.execute(
        q.order_by(AdjudicationCase.opened_at, AdjudicationCase.id).limit(limit)
    ):
        if case.status == CaseStatus.SECOND_REVIEW and _first_decider(s, case.id) == op.operator_id:
            continue  # the first eye is never the second
        held = (
            case.claimed_by is not None and case.claim_until is not None and case.claim_until > now
        )
        m = machine_view(e, case)
        rows.append(
            QueueRow(
                case.id,
                case.status,
                case.reason or "",
                case.opened_at,
                now - case.opened_at,
                now - case.opened_at > timedelta(hours=SLA_HOURS),
                m.best_llr,
                m.leaning,
                held and case.claimed_by == op.operator_id,
                held and case.claimed_by != op.operator_id,
            )
        )
    return rows


def claim(s: Session, case_id: int, op: Signed) -> AdjudicationCase:
    """Take the case (or renew this operator's hold on it) for ``CLAIM_MINUTES``. Conflict when
    someone else holds it, when it is not waiting for this operator's role, or when the
    operator made the first decision of a case waiting for a second eye."""
    statuses = _claimable(op)
    now = utcnow()
    case = s.get(AdjudicationCase, case_id)
    if case is None:
        raise NotFound("no such case")
    if case.status not in statuses:
        raise Conflict("this case is not waiting for you")
    if case.status == CaseStatus.SECOND_REVIEW and _first_decider(s, case_id) == op.operator_id:
        raise Conflict("you made the first decision: a second adjudicator must review it")
    taken = s.execute(
        update(AdjudicationCase)
        .where(
            AdjudicationCase.id == case_id,
            AdjudicationCase.status == case.status,
            or_(
                AdjudicationCase.claimed_by.is_(None),
                AdjudicationCase.claimed_by == op.operator_id,
                AdjudicationCase.claim_until < now,
            ),
        )
        .values(claimed_by=op.operator_id, claim_until=now + timedelta(minutes=CLAIM_MINUTES))
        .execution_options(synchronize_session=False)
    )
    if taken.rowcount != 1:  # type: ignore[attr-defined]
        raise Conflict("another adjudicator holds this case")
    s.refresh(case)
    return case


def claim_next(s: Session, op: Signed) -> int | None:
    """Claim the oldest case this operator may take; its id, or None when there is none."""
    for row in queue(s, op):
        if row.held_by_other:
            continue
        try:
            claim(s, row.case_id, op)
        except Conflict:
            continue  # taken meanwhile
        return row.case_id
    return None


def release(s: Session, case_id: int, op: Signed) -> None:
    """Give the case back to the queue."""
    s.execute(
        update(AdjudicationCase)
        .where(AdjudicationCase.id == case_id, AdjudicationCase.claimed_by == op.operator_id)
        .values(claimed_by=None, claim_until=None)
        .execution_options(synchronize_session=False)
    )


def _held(s: Session, case_id: int, op: Signed) -> AdjudicationCase:
    case = s.get(AdjudicationCase, case_id, with_for_update=True)
    if case is None:
        raise NotFound("no such case")
    if (
        case.claimed_by != op.operator_id
        or case.claim_until is None
        or case.claim_until <= utcnow()
    ):
        raise Conflict("claim the case first (or your hold on it ran out)")
    return case


# ------------------------------------------------------------------------- case view
@dataclass
class Side:
    """One identity of a case: the probe enrolment, or a candidate's issuing enrolment."""

    enrolment_id: int | None
    receipt: str | None
    kiosk_id: str | None
    received_at: datetime | None
    demographics: dict[str, str]
    capture: dict[str, Any]
    idcs: str | None = None
    differs: set[str] = field(default_factory=set)


@dataclass
class CandidateView:
    """A candidate beside the probe: their identity and the scores against the probe."""

    person_id: int
    rank: int
    llr: float
    face: dict[str, float] | None
    fingers: dict[int, dict[str, float]]  # by probe position
    side: Side


@dataclass
class CaseView:
    """Everything the case page shows."""

    case_id: int
    status: str
    opened_at: datetime
    machine: Machine
    probe: Side
    candidates: list[CandidateView]
    positions: list[dict[str, Any]]  # each finger position: probe's state
    history: list[dict[str, Any]]
    first_decision: dict[str, Any] | None
    needs_second_eye_for: dict[str, bool]


def _demographics(cipher: FieldCipher, e: Enrolment) -> dict[str, str]:
    raw = cipher.decrypt(e.demographics, ctx(e.kiosk_id, e.packet_id, "demographics"))
    d = Demographics.model_validate_json(raw)
    out = {k: str(v) for k, v in d.model_dump(exclude={"document", "address"}).items() if v}
    if d.document is not None:
        out["document"] = f"{d.document.type} {d.document.number} ({d.document.issuing_country})"
    return out


def _capture(cipher: FieldCipher, e: Enrolment) -> dict[str, Any]:
    if e.capture is None:
        return {}
    raw = cipher.decrypt(e.capture, ctx(e.kiosk_id, e.packet_id, "capture"))
    c = CaptureInfo.model_validate_json(raw)
    return {
        "document_source": c.document_source.value,
        "passive_authentication": c.passive_authentication,
        "access_control": c.access_control,
        "chip_authentication": c.chip_authentication,
        "active_authentication": c.active_authentication,
        "face_quality": c.face_quality,
        "face_liveness": c.face_liveness,
        "face_document_similarity": c.face_document_similarity,
        "finger_exceptions": {int(x.position): x.reason for x in c.finger_exceptions},
        "overrides": grouped_overrides(c),
        "operators": sorted({o.operator_id for o in c.overrides}),
        "devices": [f"{d.kind}: {d.model} ({d.firmware})" for d in c.devices],
        "policy_hold": e.policy_hold,
    }


def grouped_overrides(c: CaptureInfo) -> list[dict[str, Any]]:
    """The capture's overrides, one line per operator, action and reason (ten fingers
    excepted for one reason are one line naming the ten)."""
    lines: dict[tuple[str, str, str, str], list[str]] = defaultdict(list)
    for o in c.overrides:
        lines[(o.operator_id, o.role, o.action, o.reason)].append(o.subject or "")
    return [
        {
            "operator": operator,
            "role": role,
            "action": action,
            "subject": ", ".join(x for x in subjects if x) or None,
            "reason": reason,
        }
        for (operator, role, action, reason), subjects in lines.items()
    ]


def _side(cipher: FieldCipher, e: Enrolment | None, idcs: str | None = None) -> Side:
    if e is None:
        return Side(None, None, None, None, {}, {}, idcs)
    return Side(
        e.id,
        e.receipt_number,
        e.kiosk_id,
        e.received_at,
        _demographics(cipher, e),
        _capture(cipher, e),
        idcs,
    )


def issuing_enrolment(s: Session, person_id: int) -> Enrolment | None:
    """The enrolment that issued a person's IDCS (their registered identity and captures)."""
    return s.scalar(
        select(Enrolment)
        .where(Enrolment.person_id == person_id, Enrolment.status == EnrolmentState.ISSUED)
        .order_by(Enrolment.id)
        .limit(1)
    )


def _history(s: Session, cipher: FieldCipher, case_id: int) -> list[dict[str, Any]]:
    out = []
    for d in s.scalars(
        select(AdjudicationDecision)
        .where(AdjudicationDecision.case_id == case_id)
        .order_by(AdjudicationDecision.id)
    ):
        note = None
        if d.note is not None:
            note = cipher.decrypt(d.note, f"adjudication_note:{d.id}").decode()
        out.append(
            {
                "stage": d.stage,
                "operator": d.operator_id,
                "decision": d.decision,
                "candidate": d.candidate_person_id,
                "reason_code": d.reason_code,
                "note": note,
                "agrees": d.agrees,
                "against_machine": d.against_machine,
                "at": d.at,
            }
        )
    return out


def view_case(s: Session, cipher: FieldCipher, case_id: int, op: Signed) -> CaseView:
    """The case page of a case this operator holds (the hold is renewed); audited."""
    case = _held(s, case_id, op)
    case.claim_until = utcnow() + timedelta(minutes=CLAIM_MINUTES)
    e = s.get(Enrolment, case.enrolment_id)
    assert e is not None
    m = machine_view(e, case)
    probe = _side(cipher, e)
    candidates = []
    for c in m.shown:
        pid = int(c["person_id"])
        person = s.get(Person, pid)
        side = _side(cipher, issuing_enrolment(s, pid), person.idcs if person else None)
        side.differs = {
            k
            for k in _COMPARED
            if probe.demographics.get(k, "") != side.demographics.get(k, "")
            and (probe.demographics.get(k) or side.demographics.get(k))
        }
        fingers = {int(f["position"]): f for f in c.get("fingers", [])}
        candidates.append(
            CandidateView(pid, int(c.get("rank", 0)), float(c["llr"]), c.get("face"), fingers, side)
        )
    compared = set(m.probe.get("fingers", []))
    unusable = set(m.probe.get("unusable", []))
    exceptions = probe.capture.get("finger_exceptions", {})
    positions = []
    for p in range(1, 11):
        if p in compared:
            state = "compared"
        elif p in exceptions:
            state = f"exception: {exceptions[p]}"
        elif p in unusable:
            state = "image unusable"
        else:
            state = "missing"
        positions.append({"position": p, "name": finger_name(p), "state": state})
    history = _history(s, cipher, case.id)
    first = next((h for h in reversed(history) if h["stage"] == "first"), None)
    record(
        s,
        op.operator_id,
        "case.viewed",
        "adjudication_case",
        case.id,
        enrolment=e.id,
        candidates=[c.person_id for c in candidates],
        reason="adjudication",
    )
    return CaseView(
        case.id,
        case.status,
        case.opened_at,
        m,
        probe,
        candidates,
        positions,
        history,
        first if case.status == CaseStatus.SECOND_REVIEW else None,
        {d.value: m.needs_second_eye(d) for d in Decision},
    )


def finger_name(position: int) -> str:
    """A finger's name for the console ("right thumb"), from its ISO/IEC 19794-2 position."""
    return fp.FingerPosition(position).name.lower().replace("_", " ")


# ----------------------------------------------------------------- evidence for images
def probe_templates(
    s: Session, cipher: FieldCipher, case: AdjudicationCase
) -> tuple[np.ndarray, dict[int, fp.FingerprintTemplate]]:
    """The templates the dedup searched with: the registry's own (kept with the case), or the
    kiosk's for a case opened before they were kept."""
    if case.probe is not None:
        return probe_from_bytes(cipher.decrypt(case.probe, probe_context(case.enrolment_id)))
    e = s.get(Enrolment, case.enrolment_id)
    assert e is not None
    return face_templates(cipher, e), finger_templates(cipher, e)


def candidate_fingers(
    s: Session, cipher: FieldCipher, person_id: int
) -> dict[int, fp.FingerprintTemplate]:
    """A registered person's finger references of the current algorithm, by position."""
    out = {}
    for r in s.scalars(
        select(FingerReference).where(
            FingerReference.person_id == person_id, FingerReference.algorithm == fp.ALGORITHM
        )
    ):
        raw = cipher.decrypt(r.template, finger_context(person_id, r.position))
        t = fp.FingerprintTemplate.from_iso19794_2(raw)
        out[r.position] = t
    return out


@dataclass(frozen=True)
class FingerEvidence:
    """What the finger plot of a case shows at one position."""

    probe: fp.FingerprintTemplate | None
    probe_image: bytes | None  # ISO/IEC 19794-4 record
    candidate: fp.FingerprintTemplate | None
    candidate_image: bytes | None
    pairs: list[tuple[int, int, float]]
    score: dict[str, float] | None


def finger_evidence(
    s: Session, cipher: FieldCipher, case_id: int, person_id: int, position: int, op: Signed
) -> FingerEvidence:
    """The probe's and a candidate's finger at ``position`` and the minutia pairs the
    comparison rests on (the candidate's finger it was matched with, swapped hands included)."""
    case = _held(s, case_id, op)
    e = s.get(Enrolment, case.enrolment_id)
    assert e is not None
    m = machine_view(e, case)
    cand = next((c for c in m.candidates if int(c["person_id"]) == person_id), None)
    if cand is None:
        raise NotFound("no such candidate in this case")
    score = next((f for f in cand.get("fingers", []) if int(f["position"]) == position), None)
    matched = int(score["matched_position"]) if score else position
    _, fingers = probe_templates(s, cipher, case)
    probe = fingers.get(position)
    theirs = candidate_fingers(s, cipher, person_id).get(matched)
    reg = issuing_enrolment(s, person_id)
    try:
        probe_image = finger_images(cipher, e).get(position)
        their_image = None if reg is None else finger_images(cipher, reg).get(matched)
    except DecryptionError:
        probe_image = their_image = None
    pairs = fp.paired_minutiae(probe, theirs) if probe and theirs else []
    return FingerEvidence(probe, probe_image, theirs, their_image, pairs, score)


def face_image_of(s: Session, cipher: FieldCipher, enrolment_id: int) -> bytes:
    """An enrolment's face token image (decrypted for display only)."""
    e = s.get(Enrolment, enrolment_id)
    if e is None:
        raise NotFound("no such enrolment")
    return cipher.decrypt(e.face_image, ctx(e.kiosk_id, e.packet_id, "face_image"))


# ------------------------------------------------------------------------- decisions
def _check_reason(decision: Decision, reason_code: str) -> None:
    if reason_code not in REASONS[decision]:
        raise InvalidRequest(f"reason code {reason_code!r} does not go with {decision.value}")


def _add_decision(
    s: Session,
    cipher: FieldCipher,
    case: AdjudicationCase,
    op: Signed,
    stage: str,
    decision: Decision,
    candidate: int | None,
    reason_code: str,
    note: str,
    against: bool,
    agrees: bool | None = None,
) -> None:
    row = AdjudicationDecision(
        case_id=case.id,
        operator_id=op.operator_id,
        stage=stage,
        decision=decision.value,
        candidate_person_id=candidate,
        reason_code=reason_code,
        agrees=agrees,
        against_machine=against,
    )
    s.add(row)
    s.flush()
    if note.strip():
        row.note = cipher.encrypt(note.strip()[:2000].encode(), f"adjudication_note:{row.id}")


def decide(
    factory: sessionmaker[Session],
    cipher: FieldCipher,
    dedup: Deduplicator,
    case_id: int,
    op: Signed,
    decision: Decision,
    reason_code: str,
    note: str = "",
    candidate: int | None = None,
) -> str:
    """An adjudicator's decision on a case they hold. Takes effect at once, or waits for a
    second eye (four-eyes rules above). Returns what happened: ``second_review``,
    ``closed`` or ``reopened`` (a different-persons decision found someone enrolled since)."""
    _check_reason(decision, reason_code)
    with transaction(factory) as s:
        case = _held(s, case_id, op)
        if case.status != CaseStatus.OPEN:
            raise Conflict("this case waits for a second eye, not a first decision")
        e = s.get(Enrolment, case.enrolment_id)
        assert e is not None
        m = machine_view(e, case)
        candidate = _candidate(m, decision, candidate)
        against = decision != Decision.MORE_INFORMATION and decision != m.leaning
        _add_decision(s, cipher, case, op, "first", decision, candidate, reason_code, note, against)
        record(
            s,
            op.operator_id,
            "case.decided",
            "adjudication_case",
            case.id,
            decision=decision.value,
            reason_code=reason_code,
            against_machine=against,
        )
        if m.needs_second_eye(decision):
            case.status, case.claimed_by, case.claim_until = CaseStatus.SECOND_REVIEW, None, None
            return CaseStatus.SECOND_REVIEW
        if decision != Decision.DIFFERENT_PERSONS:
            _take_effect(s, cipher, case, e, decision, candidate, op.operator_id)
            return CaseStatus.CLOSED
    return _issue(factory, cipher, dedup, case_id, op.operator_id)


def review(
    factory: sessionmaker[Session],
    cipher: FieldCipher,
    dedup: Deduplicator,
    case_id: int,
    op: Signed,
    agrees: bool,
    reason_code: str,
    note: str = "",
) -> str:
    """A senior adjudicator's second eye on a first decision: agreeing makes it take effect;
    disagreeing sends the case back to the queue. Returns ``closed``, ``open`` or
    ``reopened``."""
    if op.role != Role.SENIOR_ADJUDICATOR:
        raise Forbidden("the second eye is a senior adjudicator's")
    if reason_code not in REVIEW_REASONS:
        raise InvalidRequest(f"unknown review reason {reason_code!r}")
    with transaction(factory) as s:
        case = _held(s, case_id, op)
        if case.status != CaseStatus.SECOND_REVIEW:
            raise Conflict("this case does not wait for a second eye")
        first = s.scalar(
            select(AdjudicationDecision)
            .where(AdjudicationDecision.case_id == case.id, AdjudicationDecision.stage == "first")
            .order_by(AdjudicationDecision.id.desc())
            .limit(1)
        )
        assert first is not None
        if first.operator_id == op.operator_id:
            raise Conflict("the second eye must be another adjudicator's")
        decision = Decision(first.decision)
        e = s.get(Enrolment, case.enrolment_id)
        assert e is not None
        _add_decision(
            s,
            cipher,
            case,
            op,
            "second",
            decision,
            first.candidate_person_id,
            reason_code,
            note,
            first.against_machine,
            agrees,
        )
        record(
            s,
            op.operator_id,
            "case.reviewed",
            "adjudication_case",
            case.id,
            decision=decision.value,
            agrees=agrees,
            reason_code=reason_code,
        )
        if not agrees:
            case.status, case.claimed_by, case.claim_until = CaseStatus.OPEN, None, None
            return CaseStatus.OPEN
        if decision != Decision.DIFFERENT_PERSONS:
            _take_effect(s, cipher, case, e, decision, first.candidate_person_id, op.operator_id)
            return CaseStatus.CLOSED
    return _issue(factory, cipher, dedup, case_id, op.operator_id)


def _candidate(m: Machine, decision: Decision, candidate: int | None) -> int | None:
    if decision != Decision.SAME_PERSON:
        return None
    shown = [int(c["person_id"]) for c in m.shown]
    if candidate is None and shown:
        candidate = shown[0]
    if candidate not in shown:
        raise InvalidRequest("same person as whom? choose one of the case's candidates")
    return candidate


def _close(case: AdjudicationCase, outcome: Decision) -> None:
    case.status, case.outcome, case.closed_at = CaseStatus.CLOSED, outcome.value, utcnow()
    case.claimed_by = case.claim_until = None


def _take_effect(
    s: Session,
    cipher: FieldCipher,
    case: AdjudicationCase,
    e: Enrolment,
    decision: Decision,
    candidate: int | None,
    actor: str,
) -> None:
    """Same person (linked as a duplicate, fraud flagged if the identity differs) or more
    information (the citizen comes back)."""
    if e.status != EnrolmentState.ADJUDICATION:
        raise Conflict("the enrolment is no longer under adjudication")
    if decision == Decision.SAME_PERSON:
        e.status, e.person_id = EnrolmentState.DUPLICATE, candidate
        record(
            s, actor, "enrolment.duplicate", "enrolment", e.id, candidate=candidate, case=case.id
        )
        _flag_fraud(s, cipher, case, e, candidate, actor)
    else:
        e.status = EnrolmentState.MORE_INFORMATION
        record(s, actor, "enrolment.more_information", "enrolment", e.id, case=case.id)
    _close(case, decision)


def _flag_fraud(
    s: Session,
    cipher: FieldCipher,
    case: AdjudicationCase,
    e: Enrolment,
    person_id: int | None,
    actor: str,
) -> None:
    """One person, two claimed identities: flag it (which fields differ, not their values)."""
    if person_id is None:
        return
    registered = issuing_enrolment(s, person_id)
    if registered is None:
        return
    mine, theirs = _demographics(cipher, e), _demographics(cipher, registered)
    differs = [k for k in _FRAUD_FIELDS if mine.get(k) != theirs.get(k)]
    if not differs:
        return
    s.add(
        FraudFlag(
            case_id=case.id,
            enrolment_id=e.id,
            person_id=person_id,
            kind="two_identities",
            differences=",".join(differs),
            flagged_by=actor,
        )
    )
    record(s, actor, "fraud.flagged", "person", person_id, case=case.id, fields=differs)


def _issue(
    factory: sessionmaker[Session],
    cipher: FieldCipher,
    dedup: Deduplicator,
    case_id: int,
    actor: str,
) -> str:
    """Different persons: the deduplicator issues the IDCS, or finds someone enrolled since
    the case opened (the case goes back to the queue with them as its candidate)."""
    with factory() as s:
        case = s.get(AdjudicationCase, case_id)
        assert case is not None
        e = s.get(Enrolment, case.enrolment_id)
        assert e is not None
        probe = probe_templates(s, cipher, case)
        known = {int(c["person_id"]) for c in machine_view(e, case).candidates}
    outcome: list[str] = []

    def then(s: Session, e: Enrolment, newcomer: Comparison | None) -> None:
        case = s.get(AdjudicationCase, case_id, with_for_update=True)
        assert case is not None
        if newcomer is None:
            _close(case, Decision.DIFFERENT_PERSONS)
            outcome.append(CaseStatus.CLOSED)
            return
        ev = json.loads(e.evidence or "{}")
        ev["candidates"] = [{"rank": 1, **newcomer.evidence()}, *ev.get("candidates", [])][:6]
        e.evidence = json.dumps(ev)
        case.status, case.claimed_by, case.claim_until = CaseStatus.OPEN, None, None
        case.candidate_person_id = newcomer.person_id
        record(
            s, actor, "case.reopened", "adjudication_case", case.id, candidate=newcomer.person_id
        )
        outcome.append("reopened")

    dedup.issue_adjudicated(e.id, probe, known, actor, then)
    return outcome[0]


# ------------------------------------------------------------------------- look-ups
@dataclass
class PersonView:
    """A person found by a look-up: their IDCS and every enrolment of theirs."""

    idcs: str | None
    person_id: int | None
    enrolments: list[Side]
    statuses: dict[int, str]


def lookup(
    s: Session, cipher: FieldCipher, op: Signed, kind: str, value: str, reason: str
) -> list[PersonView]:
    """Find a person by IDCS, receipt number or packet id, with a reason (audited, found or
    not). InvalidRequest without a known kind or reason."""
    if op.role not in ADJUDICATORS:
        raise Forbidden("look-ups are for adjudicators")
    if reason not in LOOKUP_REASONS:
        raise InvalidRequest("a look-up needs a reason")
    if kind not in LOOKUP_KINDS:
        raise InvalidRequest("look up by IDCS, receipt number or packet id")
    value = value.strip().upper()
    enrolments: list[Enrolment] = []
    if kind == "idcs":
        person = s.scalar(select(Person).where(Person.idcs == value))
        if person is not None:
            enrolments = list(
                s.scalars(
                    select(Enrolment).where(Enrolment.person_id == person.id).order_by(Enrolment.id)
                )
            )
    elif kind == "receipt":
        enrolments = list(s.scalars(select(Enrolment).where(Enrolment.receipt_number == value)))
    else:
        try:
            pid = uuid.UUID(value.lower())
        except ValueError as exc:
            raise InvalidRequest("a packet id is a UUID") from exc
        enrolments = list(s.scalars(select(Enrolment).where(Enrolment.packet_id == pid)))
    by_person: dict[int | None, list[Enrolment]] = defaultdict(list)
    for e in enrolments:
        by_person[e.person_id].append(e)
    found = []
    for person_id, es in by_person.items():
        person = None if person_id is None else s.get(Person, person_id)
        found.append(
            PersonView(
                person.idcs if person else None,
                person_id,
                [_side(cipher, e, person.idcs if person else None) for e in es],
                {e.id: e.status for e in es},
            )
        )
    record(
        s,
        op.operator_id,
        "person.looked_up",
        "lookup",
        kind,
        reason=reason,
        found=[e.id for e in enrolments],
    )
    return found


def fraud_flags(s: Session, limit: int = 500) -> list[FraudFlag]:
    """The latest fraud flags, newest first."""
    return list(s.scalars(select(FraudFlag).order_by(FraudFlag.id.desc()).limit(limit)))


# ------------------------------------------------------------------------- reports
@dataclass
class Report:
    """The dashboard's numbers (and the metrics')."""

    open_cases: int
    second_review: int
    oldest_age_seconds: float
    decisions_per_day: dict[str, Counter[str]]
    throughput: dict[str, int]  # first and second decisions per operator, last 7 days
    closed: int
    overturned: int  # closed against the machine's leaning
    fpir_estimate: float | None  # non-mated searches that reached an adjudicator
    fnir_estimate: float | None  # confirmed mates the automatic threshold let through
    kiosks: list[tuple[str, bool, datetime | None]]
    outcomes: Counter[str]


def kiosks_last_contact(s: Session) -> list[tuple[str, bool, datetime | None]]:
    """Every kiosk: id, active, when its last packet arrived (None: never)."""
    last_packet = dict(
        s.execute(
            select(Enrolment.kiosk_id, func.max(Enrolment.received_at)).group_by(Enrolment.kiosk_id)
        ).all()
    )
    return [
        (k.id, k.active, last_packet.get(k.id)) for k in s.scalars(select(Kiosk).order_by(Kiosk.id))
    ]


def report(s: Session, days: int = 14) -> Report:
    """Queue depth and age, decisions per day by outcome, adjudicators' throughput, the
    share of machine leanings overturned, error-rate estimates, kiosks' last contact."""
    now = utcnow()
    counts = dict(
        s.execute(
            select(AdjudicationCase.status, func.count()).group_by(AdjudicationCase.status)
        ).all()
    )
    oldest = s.scalar(
        select(func.min(AdjudicationCase.opened_at)).where(
            AdjudicationCase.status != CaseStatus.CLOSED
        )
    )
    if oldest is not None and oldest.tzinfo is None:
        oldest = oldest.replace(tzinfo=now.tzinfo)
    since = now - timedelta(days=days)
    per_day: dict[str, Counter[str]] = defaultdict(Counter)
    throughput: Counter[str] = Counter()
    week = now - timedelta(days=7)
    for d in s.scalars(select(AdjudicationDecision).where(AdjudicationDecision.at >= since)):
        at = d.at if d.at.tzinfo else d.at.replace(tzinfo=now.tzinfo)
        per_day[at.date().isoformat()][d.decision if d.stage == "first" else "second_eye"] += 1
        if at >= week:
            throughput[d.operator_id] += 1
    outcomes: Counter[str] = Counter(
        {
            str(outcome): n
            for outcome, n in s.execute(
                select(AdjudicationCase.outcome, func.count())
                .where(AdjudicationCase.status == CaseStatus.CLOSED)
                .group_by(AdjudicationCase.outcome)
            ).all()
        }
    )
    closed = sum(outcomes.values())
    # closed against the machine: the decision that took effect was against its leaning
    overturned = (
        s.scalar(
            select(func.count()).where(
                AdjudicationCase.status == CaseStatus.CLOSED,
                select(AdjudicationDecision.id)
                .where(
                    AdjudicationDecision.case_id == AdjudicationCase.id,
                    AdjudicationDecision.stage == "first",
                    AdjudicationDecision.against_machine.is_(True),
                    AdjudicationDecision.decision == AdjudicationCase.outcome,
                )
                .exists(),
            )
        )
        or 0
    )
    by_status = dict(
        s.execute(select(Enrolment.status, func.count()).group_by(Enrolment.status)).all()
    )
    issued = by_status.get(EnrolmentState.ISSUED, 0)
    auto_duplicates = by_status.get(EnrolmentState.DUPLICATE, 0) - outcomes[Decision.SAME_PERSON]
    different = outcomes[Decision.DIFFERENT_PERSONS]
    same = outcomes[Decision.SAME_PERSON]
    kiosks = kiosks_last_contact(s)
    return Report(
        open_cases=counts.get(CaseStatus.OPEN, 0),
        second_review=counts.get(CaseStatus.SECOND_REVIEW, 0),
        oldest_age_seconds=0.0 if oldest is None else (now - oldest).total_seconds(),
        decisions_per_day=dict(sorted(per_day.items(), reverse=True)),
        throughput=dict(throughput.most_common()),
        closed=closed,
        overturned=overturned,
        fpir_estimate=None if issued == 0 else different / issued,
        fnir_estimate=None if same + auto_duplicates <= 0 else same / (same + auto_duplicates),
        kiosks=kiosks,
        outcomes=outcomes,
    )


# ---------------------------------------------------------- a duplicate citizen's IDCS
def reveal_idcs(
    s: Session,
    cipher: FieldCipher,
    kiosk_id: str,
    request: RevealRequest,
    sign: Callable[[bytes], bytes],
) -> RevealAnswer:
    """Show the citizen of a duplicate enrolment the IDCS of the person it was linked to, if
    their live face matches that person's references 1:1 (threshold at ``REVEAL_FMR``, as the
    kiosk's face-to-chip check); after
    ``MAX_REVEAL_ATTEMPTS`` mismatches, refuse for good (an agent at the registry decides).
    NotFound unless the enrolment is this kiosk's and a duplicate; InvalidRequest without
    liveness. Audited either way (never the template or the IDCS)."""
    e = s.scalar(
        select(Enrolment)
        .where(Enrolment.kiosk_id == kiosk_id, Enrolment.packet_id == request.packet_id)
        .with_for_update()
    )
    if e is None or e.status != EnrolmentState.DUPLICATE or e.person_id is None:
        raise NotFound("no duplicate enrolment with this packet id from this kiosk")
    if not request.face_liveness:
        raise InvalidRequest("the face was not live: capture it again")
    person = s.get(Person, e.person_id)
    failed = (
        s.scalar(
            select(func.count()).where(
                AuditEvent.entity == "enrolment",
                AuditEvent.entity_id == str(e.id),
                AuditEvent.action == "idcs.reveal_mismatch",
            )
        )
        or 0
    )
    actor = f"kiosk:{kiosk_id}"
    outcome: str
    if failed >= MAX_REVEAL_ATTEMPTS or person is None:
        outcome, score = "refused", None
    else:
        probe = np.asarray(request.face_template, np.float32)
        score = face_similarity(s, cipher, person.id, probe)
        matched = score >= face.threshold_for_fmr(REVEAL_FMR)
        outcome = "shown" if matched else "mismatch"
        failed += 0 if matched else 1
    record(
        s,
        actor,
        "idcs.revealed" if outcome == "shown" else f"idcs.reveal_{outcome}",
        "enrolment",
        e.id,
        operator=request.operator_id,
        score=None if score is None else round(score, 4),
    )
    answer = RevealAnswer(
        packet_id=e.packet_id,
        kiosk_id=kiosk_id,
        receipt_number=e.receipt_number,
        outcome=outcome,  # type: ignore[arg-type]
        idcs=person.idcs if outcome == "shown" and person is not None else None,
        attempts_left=max(0, MAX_REVEAL_ATTEMPTS - failed),
        signed_at=int(time.time()),
    )
    return answer.signed(sign)
