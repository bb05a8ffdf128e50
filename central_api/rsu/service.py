"""The social registry's (RSU) service: households and their members, declaration versions,
partner data, eligibility decisions, appeals with their clocks, and bulk re-score jobs.

Every change queues an audit row (:func:`central_api.audit.service.record`) on the caller's
transaction, and so does every read of a household's data (who read what). Audit rows hold
internal ids, versions and states, never what was declared.

Rules kept here:

* **Declarations are never overwritten**: each is a new :class:`DeclarationVersion` row,
  encrypted under ``rsu_declaration:<reference>:<version>``.
* **Every member holds an IDCS** of the population register, and **one person is in one
  household at a time**: checked here and enforced by the database (a partial unique index
  on open memberships). Moving is :func:`transfer_member` (the old membership is closed, the
  history stays).
* **Each decision records its versions**: the declaration version, the model version, the
  threshold version and the partner records used (``inputs``), so it recomputes to the same
  score (:func:`recompute`), whatever is in force later.
* **Partner data replace declared expenses** (see :mod:`~central_api.rsu.scoring`): per kind,
  the latest record of each key (the household, or each member's own contract) no older
  than :data:`PARTNER_MAX_AGE`, summed over the keys.
* **Appeals**: only a rejection, within :data:`APPEAL_WINDOW` (15 days) of the decision;
  answered within :data:`ANSWER_WINDOW` (30 days) of filing.
* **Re-score jobs** commit their cursor and counts with each batch's decisions: stopped at any
  point, a job resumes after its last committed batch and counts nothing twice.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any, cast

import numpy as np
from sqlalchemy import Table, bindparam, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from biometrics import face
from central_api.audit.models import AuditEvent
from central_api.audit.service import count_recent, record
from central_api.crypto import FieldCipher
from central_api.db import transaction, utcnow
from central_api.dedup.service import face_similarity
from central_api.enrolment.exceptions import RateLimited
from central_api.identity.models import Person
from central_api.rsu import notices, scoring
from central_api.rsu.exceptions import (
    AppealNotAllowed,
    AppealStateConflict,
    AppealTooLate,
    HouseholdNotFound,
    InvalidDeclaration,
    NotFoundInRSU,
    PersonInAnotherHousehold,
    PersonNotRegistered,
    RescoreJobConflict,
    RSURefusal,
)
from central_api.rsu.feeds import FeedRecord, UtilityFeed
from central_api.rsu.models import (
    Appeal,
    DeclarationVersion,
    EligibilityDecision,
    Household,
    HouseholdMember,
    Notice,
    PartnerEntry,
    RescoreJob,
)
from central_api.rsu.schemas import (
    KIOSK_RSU_ATTEMPTS,
    KIOSK_RSU_FMR,
    AppealIn,
    AppealMove,
    AppealOut,
    AppealState,
    DeclarationReceipt,
    EligibilityOut,
    ExplanationOut,
    FactorOut,
    HouseholdDeclaration,
    HouseholdView,
    KioskHousehold,
    KioskOutcome,
    KioskRSUAnswer,
    KioskRSURequest,
    MemberOut,
    RescoreSummary,
    SignedRSUAnswer,
    VersionContent,
    VersionOut,
)

DEFAULT_MODEL = "pmt-illustrative-2026.1"
APPEAL_WINDOW = timedelta(days=15)
ANSWER_WINDOW = timedelta(days=30)
PARTNER_MAX_AGE = timedelta(days=400)  # a yearly amount, a month late at most
DEFAULT_BATCH = 500
ENTITY = "rsu_household"
JOB_ENTITY = "rsu_rescore_job"
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_OPEN_APPEALS = (AppealState.SUBMITTED.value, AppealState.UNDER_REVIEW.value)
_MOVES = {
    AppealState.SUBMITTED: {AppealState.UNDER_REVIEW},
    AppealState.UNDER_REVIEW: {AppealState.UPHELD, AppealState.CORRECTED},
}


# ------------------------------------------------------------------------------ the model
@dataclass(frozen=True)
class Scorer:
    """The model and thresholds in force, and where past models are loaded from by version
    (``directory``: the bundled models by default)."""

    model: scoring.ScoringModel
    thresholds: scoring.ThresholdTable
    directory: Path | None = None

    def model_for(self, version: str) -> scoring.ScoringModel:
        """The model of ``version`` (the one in force, or loaded once from ``directory``)."""
        if version == self.model.version:
            return self.model
        return _model(version, self.directory)


@cache
def _model(version: str, directory: Path | None) -> scoring.ScoringModel:
    return scoring.load_model(version, directory=directory)


@cache
def scorer_for(model_source: str | None = None, thresholds_file: str | None = None) -> Scorer:
    """The model (a version or a ``.json`` path; None: :data:`DEFAULT_MODEL`) and the
    thresholds (a threshold file; None: the bundled one) in force, read once."""
    thresholds = (
        scoring.load_thresholds(Path(thresholds_file))
        if thresholds_file
        else scoring.load_thresholds()
    )
    return Scorer(scoring.load_model(model_source or DEFAULT_MODEL), thresholds)


def default_scorer() -> Scorer:
    """The bundled model (ILLUSTRATIVE, NOT THE OFFICIAL MODEL) and thresholds."""
    return scorer_for()


# ------------------------------------------------------------------------------ references
def _luhn32(body: str) -> str:
    """The Luhn mod 32 check character of ``body`` (Crockford base 32): catches every single
    wrong character and every swap of two adjacent ones."""
    total, factor = 0, 2
    for ch in reversed(body):
        addend = factor * _CROCKFORD.index(ch)
        total += addend // 32 + addend % 32
        factor = 1 if factor == 2 else 2
    return _CROCKFORD[(32 - total % 32) % 32]


def new_reference() -> str:
    """A random RSU reference ``RSU-XXXXX-XXXXX``: 45 random bits and a check character."""
    body = "".join(secrets.choice(_CROCKFORD) for _ in range(9))
    chars = body + _luhn32(body)
    return f"RSU-{chars[:5]}-{chars[5:]}"


def valid_reference(reference: str) -> bool:
    """True if ``reference`` has the RSU format and its check character is right."""
    parts = reference.split("-")
    if len(parts) != 3 or parts[0] != "RSU" or len(parts[1]) != 5 or len(parts[2]) != 5:
        return False
    chars = parts[1] + parts[2]
    if any(c not in _CROCKFORD for c in chars):
        return False
    return _luhn32(chars[:9]) == chars[9]


def _fresh_reference(s: Session) -> str:
    for _ in range(20):
        ref = new_reference()
        if s.scalar(select(Household.id).where(Household.reference == ref)) is None:
            return ref
    raise scoring.RSUError("20 random RSU references in a row were taken")


# ------------------------------------------------------------------------------ contexts
def _declaration_context(reference: str, version: int) -> str:
    return f"rsu_declaration:{reference}:{version}"


def _decision_context(row: EligibilityDecision | Decided) -> str:
    return _decision_context_of(row.id, row.household_id, row.programme)


def _decision_context_of(decision_id: int, household_id: int, programme: str) -> str:
    return f"rsu_decision:{decision_id}:{household_id}:{programme}"


def _partner_context(feed: str, external_id: str) -> str:
    return f"rsu_partner:{feed}:{external_id}"


def _appeal_context(appeal_id: int, what: str) -> str:
    return f"rsu_appeal:{appeal_id}:{what}"


# ------------------------------------------------------------------------------ look-ups
def _household(s: Session, reference: str, *, lock: bool = False) -> Household:
    stmt = select(Household).where(Household.reference == reference)
    if lock:
        stmt = stmt.with_for_update()
    household = s.scalar(stmt)
    if household is None:
        raise HouseholdNotFound(f"no household has the reference {reference}")
    return household


def _person(s: Session, idcs: str) -> Person:
    person = s.scalar(select(Person).where(Person.idcs == idcs))
    if person is None:
        raise PersonNotRegistered(
            f"IDCS {idcs} is not in the population register: every member must be enrolled "
            "and hold an IDCS first"
        )
    return person


def _open_membership(s: Session, person_id: int) -> HouseholdMember | None:
    return s.scalar(
        select(HouseholdMember).where(
            HouseholdMember.person_id == person_id, HouseholdMember.until.is_(None)
        )
    )


def read_declaration(
    s: Session, cipher: FieldCipher, household: Household, version: int
) -> HouseholdDeclaration:
    """Decrypt one declaration version (not audited: callers that show it audit the view)."""
    row = s.scalar(
        select(DeclarationVersion).where(
            DeclarationVersion.household_id == household.id, DeclarationVersion.version == version
        )
    )
    if row is None:
        raise NotFoundInRSU(f"{household.reference} has no declaration version {version}")
    plain = cipher.decrypt(row.content, _declaration_context(household.reference, version))
    return HouseholdDeclaration.model_validate_json(plain)


# ------------------------------------------------------------------------------ partner data
def _aggregate(cipher: FieldCipher, entries: Sequence[Any]) -> scoring.PartnerData | None:
    """Per kind, the sum of the entries' amounts (capped at the scoring's maximum); the
    entries are partner records (rows or objects with their columns as attributes)."""
    by_kind: dict[str, list[PartnerEntry]] = {}
    for e in entries:
        by_kind.setdefault(e.kind, []).append(e)
    if not by_kind:
        return None
    fields: dict[str, scoring.PartnerRecord] = {}
    for kind, rows in by_kind.items():
        amount = sum(
            float(cipher.decrypt(r.amount, _partner_context(r.feed, r.external_id))) for r in rows
        )
        sources = ",".join(sorted({r.source for r in rows}))[:64]
        fields[kind] = scoring.PartnerRecord(
            amount=min(round(amount, 2), scoring.MAX_EXPENSE),
            source=sources,
            as_of=max(r.as_of for r in rows),
        )
    return scoring.PartnerData(**fields)


def _partners_in_force(
    s: Session, cipher: FieldCipher, household_ids: Sequence[int], on: date
) -> dict[int, tuple[scoring.PartnerData | None, list[int]]]:
    """Per household, the partner data that apply on ``on`` and the ids of their records:
    per kind, the latest record of each key no older than :data:`PARTNER_MAX_AGE`."""
    rows = s.execute(
        select(
            PartnerEntry.id,
            PartnerEntry.household_id,
            PartnerEntry.kind,
            PartnerEntry.key_kind,
            PartnerEntry.key,
            PartnerEntry.feed,
            PartnerEntry.external_id,
            PartnerEntry.source,
            PartnerEntry.amount,
            PartnerEntry.as_of,
        )
        .where(
            PartnerEntry.household_id.in_(household_ids),
            PartnerEntry.as_of <= on,
            PartnerEntry.as_of >= on - PARTNER_MAX_AGE,
        )
        .order_by(PartnerEntry.as_of, PartnerEntry.id)
    ).all()
    latest: dict[int, dict[tuple[str, str, str], Any]] = {}
    for r in rows:  # oldest first: the last one of each key stays
        latest.setdefault(r.household_id, {})[(r.kind, r.key_kind, r.key)] = r
    out: dict[int, tuple[scoring.PartnerData | None, list[int]]] = {}
    for hid in household_ids:
        chosen = sorted(latest.get(hid, {}).values(), key=lambda r: r.id)
        out[hid] = (_aggregate(cipher, chosen), [r.id for r in chosen])
    return out


def _partner_by_ids(
    s: Session, cipher: FieldCipher, ids: Sequence[int]
) -> scoring.PartnerData | None:
    if not ids:
        return None
    rows = s.scalars(select(PartnerEntry).where(PartnerEntry.id.in_(ids))).all()
    if len(rows) != len(set(ids)):
        raise scoring.RSUError("a partner record used by a decision is gone")
    return _aggregate(cipher, rows)


# ------------------------------------------------------------------------------ decisions
@dataclass(frozen=True)
class Decided:
    """A decision as just stored: its row's columns (what the callers read of it)."""

    id: int
    household_id: int
    declaration_version: int
    programme: str
    model_version: str
    threshold_version: str
    decided_on: date
    score: bytes
    eligible: bool
    changed: bool
    reason: str
    computed_at: datetime


@dataclass(frozen=True)
class Outcome:
    """One programme's new decision and the eligibility before it (None: the first)."""

    row: Decided
    before: bool | None

    @property
    def changed(self) -> bool:
        """The eligibility differs from the previous decision's."""
        return self.before is not None and self.before != self.row.eligible


def _evaluate(
    s: Session,
    cipher: FieldCipher,
    model: scoring.ScoringModel,
    thresholds: scoring.ThresholdTable,
    household: Household,
    on: date,
    reason: str,
    now: datetime,
) -> list[Outcome]:
    """Score one household's current declaration and decide (see :func:`_evaluate_many`)."""
    outcomes = _evaluate_many(s, cipher, model, thresholds, [household], on, reason, now)
    return outcomes[household.id]


def _evaluate_many(
    s: Session,
    cipher: FieldCipher,
    model: scoring.ScoringModel,
    thresholds: scoring.ThresholdTable,
    households: Sequence[Household],
    on: date,
    reason: str,
    now: datetime,
    job_id: int | None = None,
) -> dict[int, list[Outcome]]:
    """Score households' current declarations with the partner data in force on ``on``,
    decide for every programme with a threshold in force, and store the decisions (and a
    notice for each eligibility that changed without the citizen there), by household id.

    A batch at a time: a few queries for the whole batch, the vectorised kernel
    (:func:`~central_api.rsu.scoring.points_many`, the same points as ``score``), the
    decisions inserted together."""
    if not households:
        return {}
    ids = [h.id for h in households]
    contents = dict(
        s.execute(
            select(DeclarationVersion.household_id, DeclarationVersion.content)
            .join(
                Household,
                (Household.id == DeclarationVersion.household_id)
                & (Household.current_version == DeclarationVersion.version),
            )
            .where(DeclarationVersion.household_id.in_(ids))
        ).all()
    )
    declarations = []
    for h in households:
        if h.id not in contents:
            raise NotFoundInRSU(f"{h.reference} has no declaration version {h.current_version}")
        plain = cipher.decrypt(contents[h.id], _declaration_context(h.reference, h.current_version))
        declarations.append(HouseholdDeclaration.model_validate_json(plain).to_scoring())
    partners = _partners_in_force(s, cipher, ids, on)
    points = scoring.points_many(
        model, scoring.to_table(declarations, [partners[i][0] for i in ids])
    )
    newest = (
        select(func.max(EligibilityDecision.id))
        .where(EligibilityDecision.household_id.in_(ids))
        .group_by(EligibilityDecision.household_id, EligibilityDecision.programme)
    )
    before: dict[tuple[int, str], bool] = {
        (hid, programme): eligible
        for hid, programme, eligible in s.execute(
            select(
                EligibilityDecision.household_id,
                EligibilityDecision.programme,
                EligibilityDecision.eligible,
            ).where(EligibilityDecision.id.in_(newest))
        ).all()
    }
    rows: list[dict[str, Any]] = []
    for programme in thresholds.programmes():
        try:
            t = thresholds.in_force(programme, on)
        except scoring.NoThresholdInForce:
            continue  # the programme did not exist yet on that day
        for h, p in zip(households, points.tolist(), strict=True):
            eligible = p <= t.points
            was = before.get((h.id, programme.value))
            rows.append(
                {
                    "household_id": h.id,
                    "declaration_version": h.current_version,
                    "programme": programme.value,
                    "model_version": model.version,
                    "threshold_version": t.version,
                    "decided_on": on,
                    "score": json.dumps({"points": p, "threshold": t.value}).encode(),
                    "eligible": eligible,
                    "changed": was is not None and was != eligible,
                    "reason": reason,
                    "inputs": {"partner_records": partners[h.id][1]},
                    "job_id": job_id,
                    "computed_at": now,
                }
            )
    out: dict[int, list[Outcome]] = {h.id: [] for h in households}
    if not rows:
        return out
    table = cast(Table, EligibilityDecision.__table__)  # Core statements: no ORM objects
    conn = s.connection()
    new_ids = conn.execute(
        insert(table).returning(table.c.id, sort_by_parameter_order=True),
        [{**r, "score": b""} for r in rows],
    ).scalars()
    sealed = []
    for row_id, r in zip(new_ids, rows, strict=True):
        context = _decision_context_of(row_id, r["household_id"], r["programme"])
        r["score"] = cipher.encrypt(r["score"], context)
        sealed.append({"row_id": row_id, "sealed": r["score"]})
        del r["inputs"], r["job_id"]
        decided = Decided(id=row_id, **r)
        out[decided.household_id].append(
            Outcome(decided, before.get((decided.household_id, decided.programme)))
        )
    conn.execute(
        update(table).where(table.c.id == bindparam("row_id")).values(score=bindparam("sealed")),
        sealed,
    )
    if reason != "declaration":  # the citizen was not there to see a change: tell them
        notices_rows = [
            {
                "household_id": o.row.household_id,
                "kind": "eligibility_changed",
                "decision_id": o.row.id,
                "created_at": now,
            }
            for outcomes in out.values()
            for o in outcomes
            if o.row.changed
        ]
        if notices_rows:
            s.execute(insert(Notice), notices_rows)
    return out


def _stored(cipher: FieldCipher, row: EligibilityDecision | Decided) -> scoring.Eligibility:
    """A stored decision as the scoring's :class:`~central_api.rsu.scoring.Eligibility`."""
    payload = json.loads(cipher.decrypt(row.score, _decision_context(row)))
    points, threshold = int(payload["points"]), float(payload["threshold"])
    t_points = round(threshold * scoring.SCALE)
    return scoring.Eligibility(
        programme=scoring.Programme(row.programme),
        eligible=row.eligible,
        score=points / scoring.SCALE,
        threshold=threshold,
        threshold_version=row.threshold_version,
        distance=(points - t_points) / scoring.SCALE,
        model_version=row.model_version,
        on=row.decided_on,
    )


def _decision_out(cipher: FieldCipher, row: EligibilityDecision | Decided) -> EligibilityOut:
    d = _stored(cipher, row)
    return EligibilityOut(
        id=row.id,
        programme=d.programme,
        declaration_version=row.declaration_version,
        model_version=row.model_version,
        threshold_version=row.threshold_version,
        on=row.decided_on,
        score=d.score,
        threshold=d.threshold,
        distance=d.distance,
        eligible=row.eligible,
        changed=row.changed,
        reason=row.reason,
        computed_at=row.computed_at,
    )


def _rescore_score(
    s: Session, cipher: FieldCipher, scorer: Scorer, row: EligibilityDecision
) -> scoring.Score:
    household = s.get(Household, row.household_id)
    assert household is not None
    declaration = read_declaration(s, cipher, household, row.declaration_version)
    partner = _partner_by_ids(s, cipher, row.inputs.get("partner_records", []))
    return scoring.score(scorer.model_for(row.model_version), declaration.to_scoring(), partner)


def recompute(
    s: Session, cipher: FieldCipher, scorer: Scorer, decision_id: int
) -> tuple[scoring.Eligibility, scoring.Eligibility]:
    """A stored decision and the same decision recomputed from its own declaration version,
    partner records, model version and threshold version (looked up in ``scorer``'s table,
    else the stored value): the two are equal unless something was altered."""
    row = s.get(EligibilityDecision, decision_id)
    if row is None:
        raise NotFoundInRSU(f"no decision {decision_id}")
    stored = _stored(cipher, row)
    result = _rescore_score(s, cipher, scorer, row)
    try:
        threshold = scorer.thresholds.get(row.threshold_version)
    except scoring.NoThresholdInForce:
        threshold = scoring.Threshold(
            programme=stored.programme,
            version=row.threshold_version,
            value=stored.threshold,
            effective_from=row.decided_on,
            source="as stored with the decision",
        )
    t_points = threshold.points
    again = scoring.Eligibility(
        programme=stored.programme,
        eligible=result.points <= t_points,
        score=result.value,
        threshold=threshold.value,
        threshold_version=threshold.version,
        distance=(result.points - t_points) / scoring.SCALE,
        model_version=result.model_version,
        on=row.decided_on,
    )
    return stored, again


# ------------------------------------------------------------------------------ declaring
def declare(
    s: Session,
    cipher: FieldCipher,
    scorer: Scorer,
    declaration: HouseholdDeclaration,
    actor: str,
    *,
    reference: str | None = None,
    now: datetime | None = None,
) -> DeclarationReceipt:
    """Declare a new household (``reference`` None) or a new version of one: every member must
    hold an IDCS and belong to no other household; members no longer declared leave it. The
    new version is scored with the model in force and the partner data, and decided for every
    programme."""
    now = now or utcnow()
    persons = {m.idcs: _person(s, m.idcs) for m in declaration.members}
    if reference is None:
        household = Household(reference=_fresh_reference(s), current_version=0, created_at=now)
        s.add(household)
        s.flush()
        record(s, actor, "rsu.household.created", ENTITY, household.id)
    else:
        household = _household(s, reference, lock=True)
    current = {
        m.person_id: m
        for m in s.scalars(
            select(HouseholdMember).where(
                HouseholdMember.household_id == household.id, HouseholdMember.until.is_(None)
            )
        )
    }
    declared_ids = set()
    for m in declaration.members:
        person = persons[m.idcs]
        declared_ids.add(person.id)
        membership = current.get(person.id) or _open_membership(s, person.id)
        if membership is not None and membership.household_id != household.id:
            raise PersonInAnotherHousehold(
                f"IDCS {m.idcs} already belongs to another household: one person is in one "
                "household at a time (a move is a transfer)"
            )
        if membership is not None and membership.relation == m.relation.value:
            continue
        if membership is not None:
            # a relation that changes is a new membership row: the old one stays as history
            membership.until, membership.ended_by = now, "declaration"
            s.flush()
        s.add(
            HouseholdMember(
                household_id=household.id,
                person_id=person.id,
                relation=m.relation.value,
                since=now,
            )
        )
        event = "rsu.member.joined" if membership is None else "rsu.member.relation"
        record(s, actor, event, ENTITY, household.id, person=person.id)
    for person_id, membership in current.items():
        if person_id not in declared_ids:
            membership.until, membership.ended_by = now, "declaration"
            record(s, actor, "rsu.member.left", ENTITY, household.id, person=person_id)
    version = household.current_version + 1
    s.add(
        DeclarationVersion(
            household_id=household.id,
            version=version,
            declarant_person_id=persons[declaration.declarant.idcs].id,
            content=cipher.encrypt(
                declaration.model_dump_json().encode(),
                _declaration_context(household.reference, version),
            ),
            declared_by=actor,
            declared_at=now,
        )
    )
    household.current_version = version
    try:
        s.flush()
    except IntegrityError as exc:  # a concurrent declaration took a member first
        raise PersonInAnotherHousehold(
            "a member joined another household meanwhile: one person is in one household"
        ) from exc
    record(s, actor, "rsu.declared", ENTITY, household.id, version=version)
    outcomes = _evaluate(
        s, cipher, scorer.model, scorer.thresholds, household, now.date(), "declaration", now
    )
    _record_decided(s, actor, household, outcomes)
    return DeclarationReceipt(
        reference=household.reference,
        version=version,
        decisions=[_decision_out(cipher, o.row) for o in outcomes],
    )


def _record_decided(
    s: Session, actor: str, household: Household, outcomes: Sequence[Outcome]
) -> None:
    if outcomes:
        record(
            s,
            actor,
            "rsu.decided",
            ENTITY,
            household.id,
            version=household.current_version,
            decisions=[o.row.id for o in outcomes],
            model=outcomes[0].row.model_version,
            thresholds=[o.row.threshold_version for o in outcomes],
            changed=[o.row.programme for o in outcomes if o.changed],
        )


def transfer_member(
    s: Session,
    idcs: str,
    to_reference: str,
    relation: scoring.Relation,
    actor: str,
    *,
    now: datetime | None = None,
) -> HouseholdMember:
    """Move a person to another household: their open membership (if any) is closed and a
    new one opened; both stay in the history. The households' declarations are updated by
    their declarants (a new version each)."""
    now = now or utcnow()
    if relation is scoring.Relation.DECLARANT:
        raise InvalidDeclaration("a household's declarant is set by a declaration, not a transfer")
    person = _person(s, idcs)
    household = _household(s, to_reference, lock=True)
    old = _open_membership(s, person.id)
    if old is not None and old.household_id == household.id:
        raise InvalidDeclaration(f"IDCS {idcs} is already a member of {to_reference}")
    if old is not None:
        old.until, old.ended_by = now, "transfer"
        s.flush()  # closed before the new one opens (the partial unique index)
        record(s, actor, "rsu.member.transferred_out", ENTITY, old.household_id, person=person.id)
    new = HouseholdMember(
        household_id=household.id, person_id=person.id, relation=relation.value, since=now
    )
    s.add(new)
    try:
        s.flush()
    except IntegrityError as exc:
        raise PersonInAnotherHousehold(f"IDCS {idcs} joined another household meanwhile") from exc
    record(s, actor, "rsu.member.transferred_in", ENTITY, household.id, person=person.id)
    return new


def memberships(s: Session, idcs: str, actor: str) -> list[HouseholdMember]:
    """A person's memberships, oldest first (the history of transfers; audited)."""
    person = _person(s, idcs)
    record(s, actor, "rsu.memberships.viewed", "person", person.id)
    return list(
        s.scalars(
            select(HouseholdMember)
            .where(HouseholdMember.person_id == person.id)
            .order_by(HouseholdMember.since, HouseholdMember.id)
        )
    )


# ------------------------------------------------------------------------------ partner feeds
@dataclass
class IngestResult:
    """What an ingest did: records stored, already known, matching no household; households
    re-scored and those whose eligibility changed (RSU references)."""

    stored: int = 0
    duplicates: int = 0
    unmatched: int = 0
    rescored: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)


def _resolve(s: Session, r: FeedRecord) -> int | None:
    if r.key_kind == "household":
        return s.scalar(select(Household.id).where(Household.reference == r.key))
    person = s.scalar(select(Person.id).where(Person.idcs == r.key))
    if person is None:
        return None
    membership = _open_membership(s, person)
    return None if membership is None else membership.household_id


def ingest(
    s: Session,
    cipher: FieldCipher,
    scorer: Scorer,
    feed: str,
    records: Iterable[FeedRecord],
    actor: str,
    *,
    now: datetime | None = None,
) -> IngestResult:
    """Store partner records (each once per ``(feed, external_id)``) and re-score the declared
    households they concern with the model in force."""
    now = now or utcnow()
    out = IngestResult()
    touched: set[int] = set()
    for r in records:
        known = s.scalar(
            select(PartnerEntry.id).where(
                PartnerEntry.feed == feed, PartnerEntry.external_id == r.external_id
            )
        )
        if known is not None:
            out.duplicates += 1
            continue
        household_id = _resolve(s, r)
        entry = PartnerEntry(
            feed=feed,
            external_id=r.external_id,
            source=r.source,
            kind=r.kind.value,
            key_kind=r.key_kind,
            key=r.key,
            household_id=household_id,
            amount=cipher.encrypt(
                repr(float(r.amount)).encode(), _partner_context(feed, r.external_id)
            ),
            as_of=r.as_of,
            received_at=now,
        )
        s.add(entry)
        s.flush()
        out.stored += 1
        if household_id is None:
            out.unmatched += 1
            record(s, actor, "rsu.partner.unmatched", "rsu_partner_record", entry.id, feed=feed)
            continue
        touched.add(household_id)
        record(s, actor, "rsu.partner.received", ENTITY, household_id, record=entry.id, feed=feed)
    for household in s.scalars(
        select(Household).where(Household.id.in_(touched)).order_by(Household.id)
    ):
        if household.current_version == 0:
            continue
        outcomes = _evaluate(
            s,
            cipher,
            scorer.model,
            scorer.thresholds,
            household,
            now.date(),
            "partner_data",
            now,
        )
        _record_decided(s, actor, household, outcomes)
        out.rescored.append(household.reference)
        if any(o.changed for o in outcomes):
            out.changed.append(household.reference)
    return out


def ingest_feed(
    s: Session,
    cipher: FieldCipher,
    scorer: Scorer,
    feed: UtilityFeed,
    actor: str,
    *,
    now: datetime | None = None,
) -> IngestResult:
    """:func:`ingest` what ``feed`` delivers now."""
    return ingest(s, cipher, scorer, feed.name, feed.fetch(), actor, now=now)


# ------------------------------------------------------------------------------ re-scoring
def _summary(job: RescoreJob) -> RescoreSummary:
    return RescoreSummary(
        id=job.id,
        state=job.state,
        model_version=job.model_version,
        threshold_versions=list(job.threshold_versions),
        batches=job.batches,
        processed=job.processed,
        changed=job.changed,
        became_eligible=job.became_eligible,
        lost_eligibility=job.lost_eligibility,
    )


def bundled_thresholds_data() -> dict[str, Any]:
    """The bundled threshold file's content."""
    data: dict[str, Any] = json.loads(
        (scoring.DATA_DIR / scoring.THRESHOLDS_FILE).read_text(encoding="utf-8")
    )
    return data


def start_rescore(
    s: Session,
    *,
    model_source: str,
    actor: str,
    reason: str = "new model or thresholds",
    thresholds: dict[str, Any] | None = None,
    batch: int = DEFAULT_BATCH,
    on: date | None = None,
    directory: Path | None = None,
) -> RescoreJob:
    """Create a job that re-scores every declared household with the model ``model_source``
    (a version, or a ``.json`` path) and the thresholds in force on ``on`` in ``thresholds``
    (a threshold file's content; the bundled file by default). Checks both now."""
    if not 1 <= batch <= 100_000:
        raise InvalidDeclaration("a batch is 1 to 100,000 households")
    data = thresholds if thresholds is not None else bundled_thresholds_data()
    model = scoring.load_model(model_source, directory=directory)
    table = scoring.parse_thresholds(data)
    on = on or utcnow().date()
    versions = []
    for programme in table.programmes():
        try:
            versions.append(table.in_force(programme, on).version)
        except scoring.NoThresholdInForce:
            continue
    job = RescoreJob(
        reason=reason[:200],
        model_source=model_source,
        model_version=model.version,
        thresholds=data,
        threshold_versions=versions,
        thresholds_on=on,
        batch_size=batch,
        created_by=actor,
    )
    s.add(job)
    s.flush()
    record(
        s,
        actor,
        "rsu.rescore.started",
        JOB_ENTITY,
        job.id,
        model=model.version,
        thresholds=versions,
        batch=batch,
    )
    return job


def run_rescore(
    factory: sessionmaker[Session],
    cipher: FieldCipher,
    job_id: int,
    actor: str,
    *,
    directory: Path | None = None,
    progress: Callable[[RescoreSummary], None] | None = None,
    now: Callable[[], datetime] = utcnow,
) -> RescoreSummary:
    """Run (or resume) a re-score job to its end, one transaction per batch: the batch's
    decisions, the job's cursor and counts commit together. ``progress`` is called after each
    committed batch. ``changed`` counts households whose eligibility changed for at least one
    programme; ``became_eligible`` / ``lost_eligibility`` count household-programme pairs."""
    with transaction(factory) as s:
        job = s.get(RescoreJob, job_id)
        if job is None:
            raise NotFoundInRSU(f"no re-score job {job_id}")
        if job.state == "done":
            raise RescoreJobConflict(f"re-score job {job_id} is finished")
        model = scoring.load_model(job.model_source, directory=directory)
        if model.version != job.model_version:
            raise scoring.RSUError(f"{job.model_source} is no longer model {job.model_version}")
        table = scoring.parse_thresholds(job.thresholds)
    while True:
        with transaction(factory) as s:
            job = s.get(RescoreJob, job_id, with_for_update=True)
            assert job is not None
            if job.state == "done":
                return _summary(job)
            households = s.scalars(
                select(Household)
                .where(Household.id > job.cursor, Household.current_version > 0)
                .order_by(Household.id)
                .limit(job.batch_size)
            ).all()
            at = now()
            if not households:
                job.state, job.finished_at, job.updated_at = "done", at, at
                record(
                    s,
                    actor,
                    "rsu.rescore.finished",
                    JOB_ENTITY,
                    job.id,
                    processed=job.processed,
                    changed=job.changed,
                )
                return _summary(job)
            changed_ids = []
            decided = _evaluate_many(
                s, cipher, model, table, households, job.thresholds_on, "rescore", at, job.id
            )
            for hid, outcomes in decided.items():
                if any(o.changed for o in outcomes):
                    changed_ids.append(hid)
                job.became_eligible += sum(o.changed and o.row.eligible for o in outcomes)
                job.lost_eligibility += sum(o.changed and not o.row.eligible for o in outcomes)
            job.cursor = households[-1].id
            job.batches += 1
            job.processed += len(households)
            job.changed += len(changed_ids)
            job.updated_at = at
            record(
                s,
                actor,
                "rsu.rescore.batch",
                JOB_ENTITY,
                job.id,
                batch=job.batches,
                cursor=job.cursor,
                processed=len(households),
                changed_households=changed_ids,
            )
            summary = _summary(job)
        if progress is not None:
            progress(summary)


def job_summary(s: Session, job_id: int) -> RescoreSummary:
    """A job's progress."""
    job = s.get(RescoreJob, job_id)
    if job is None:
        raise NotFoundInRSU(f"no re-score job {job_id}")
    return _summary(job)


def changed_by_job(s: Session, job_id: int) -> list[tuple[str, str, bool]]:
    """The households whose eligibility a job changed: (RSU reference, programme, eligible
    now), by household then programme."""
    rows = s.execute(
        select(Household.reference, EligibilityDecision.programme, EligibilityDecision.eligible)
        .join(Household, Household.id == EligibilityDecision.household_id)
        .where(EligibilityDecision.job_id == job_id, EligibilityDecision.changed.is_(True))
        .order_by(Household.id, EligibilityDecision.programme)
    )
    return [(r[0], r[1], bool(r[2])) for r in rows]


# ------------------------------------------------------------------------------ appeals
def _appeal_out(
    s: Session, cipher: FieldCipher, a: Appeal, now: datetime, *, texts: bool = False
) -> AppealOut:
    household = s.get(Household, a.household_id)
    assert household is not None
    state = AppealState(a.state)

    def text(blob: bytes | None, what: str) -> str | None:
        if blob is None or not texts:
            return None
        return cipher.decrypt(blob, _appeal_context(a.id, what)).decode()

    return AppealOut(
        id=a.id,
        reference=household.reference,
        decision_id=a.decision_id,
        state=state,
        submitted_by=a.submitted_by,
        submitted_at=a.submitted_at,
        answer_due=a.answer_due,
        overdue=a.state in _OPEN_APPEALS and now > a.answer_due,
        reviewed_by=a.reviewed_by,
        answered_at=a.answered_at,
        grounds=text(a.grounds, "grounds"),
        answer=text(a.answer, "answer"),
    )


def submit_appeal(
    s: Session,
    cipher: FieldCipher,
    reference: str,
    appeal: AppealIn,
    actor: str,
    *,
    now: datetime | None = None,
) -> AppealOut:
    """File an appeal against a rejection of the household, within :data:`APPEAL_WINDOW` of
    the decision (:class:`AppealTooLate` after); one open appeal per decision. The answer is
    due :data:`ANSWER_WINDOW` after filing."""
    now = now or utcnow()
    household = _household(s, reference, lock=True)
    decision = s.get(EligibilityDecision, appeal.decision_id)
    if decision is None or decision.household_id != household.id:
        raise NotFoundInRSU(f"{reference} has no decision {appeal.decision_id}")
    if decision.eligible:
        raise AppealNotAllowed("only a rejection can be appealed; this decision found eligible")
    deadline = decision.computed_at + APPEAL_WINDOW
    if now > deadline:
        late = (now - deadline).days + 1
        raise AppealTooLate(
            f"the appeal period ended on {deadline:%Y-%m-%d %H:%M} UTC, "
            f"{APPEAL_WINDOW.days} days after the decision of {decision.computed_at:%Y-%m-%d}; "
            f"this appeal comes {late} day(s) late and cannot be filed"
        )
    taken = s.scalar(
        select(Appeal.id).where(Appeal.decision_id == decision.id, Appeal.state.in_(_OPEN_APPEALS))
    )
    if taken is not None:
        raise AppealNotAllowed(f"appeal {taken} against this decision is still open")
    a = Appeal(
        household_id=household.id,
        decision_id=decision.id,
        state=AppealState.SUBMITTED.value,
        submitted_by=actor,
        submitted_at=now,
        answer_due=now + ANSWER_WINDOW,
    )
    s.add(a)
    s.flush()
    if appeal.grounds:
        a.grounds = cipher.encrypt(appeal.grounds.encode(), _appeal_context(a.id, "grounds"))
    record(
        s, actor, "rsu.appeal.submitted", ENTITY, household.id, appeal=a.id, decision=decision.id
    )
    return _appeal_out(s, cipher, a, now)


def move_appeal(
    s: Session,
    cipher: FieldCipher,
    appeal_id: int,
    move: AppealMove,
    actor: str,
    *,
    now: datetime | None = None,
) -> AppealOut:
    """Move an appeal: ``submitted`` -> ``under_review`` -> ``upheld`` | ``corrected``
    (:class:`AppealStateConflict` for any other move)."""
    now = now or utcnow()
    a = s.get(Appeal, appeal_id, with_for_update=True)
    if a is None:
        raise NotFoundInRSU(f"no appeal {appeal_id}")
    state = AppealState(a.state)
    if move.state not in _MOVES.get(state, set()):
        raise AppealStateConflict(f"an appeal {state.value} cannot become {move.state.value}")
    a.state, a.reviewed_by = move.state.value, actor
    if move.state in (AppealState.UPHELD, AppealState.CORRECTED):
        a.answered_at = now
        s.add(
            Notice(
                household_id=a.household_id, kind="appeal_answered", appeal_id=a.id, created_at=now
            )
        )
    if move.answer:
        a.answer = cipher.encrypt(move.answer.encode(), _appeal_context(a.id, "answer"))
    record(
        s,
        actor,
        "rsu.appeal.moved",
        ENTITY,
        a.household_id,
        appeal=a.id,
        came_from=state.value,
        to=move.state.value,
        late=now > a.answer_due,
    )
    return _appeal_out(s, cipher, a, now)


def overdue_appeals(
    s: Session, cipher: FieldCipher, actor: str, *, now: datetime | None = None
) -> list[AppealOut]:
    """Open appeals whose answer is overdue (past :data:`ANSWER_WINDOW`), oldest first
    (the listing is audited)."""
    now = now or utcnow()
    rows = s.scalars(
        select(Appeal)
        .where(Appeal.state.in_(_OPEN_APPEALS), Appeal.answer_due < now)
        .order_by(Appeal.answer_due, Appeal.id)
    ).all()
    record(s, actor, "rsu.appeals.overdue_viewed", "rsu_appeal", "overdue", count=len(rows))
    return [_appeal_out(s, cipher, a, now) for a in rows]


# ------------------------------------------------------------------------------ views
def _latest_decisions(s: Session, household_id: int) -> list[EligibilityDecision]:
    newest = (
        select(func.max(EligibilityDecision.id))
        .where(EligibilityDecision.household_id == household_id)
        .group_by(EligibilityDecision.programme)
    )
    return list(
        s.scalars(
            select(EligibilityDecision)
            .where(EligibilityDecision.id.in_(newest))
            .order_by(EligibilityDecision.programme)
        )
    )


def _explanation(
    s: Session,
    cipher: FieldCipher,
    scorer: Scorer,
    rows: Sequence[EligibilityDecision],
    language: scoring.Language,
) -> ExplanationOut | None:
    """The explanation of the latest decisions (those of the newest evaluation)."""
    if not rows:
        return None
    newest = max(rows, key=lambda r: r.id)
    result = _rescore_score(s, cipher, scorer, newest)
    decisions = [
        d
        for d in (_stored(cipher, r) for r in rows)
        if d.model_version == result.model_version and d.score == result.value
    ]
    e = scoring.explain(result, decisions, language)
    return ExplanationOut(
        language=e.language,
        text=e.text,
        sentences=list(e.sentences),
        top=[FactorOut(name=f.name, label=f.label, deviation=f.deviation) for f in e.top],
        distances={p.value: v for p, v in e.distances.items()},
    )


def view_household(
    s: Session,
    cipher: FieldCipher,
    scorer: Scorer,
    reference: str,
    actor: str,
    language: scoring.Language | str = scoring.Language.FR,
) -> HouseholdView:
    """A household's members now, latest decision per programme and their explanation in
    ``language`` (audited: ``rsu.household.viewed``)."""
    household = _household(s, reference)
    rows = s.execute(
        select(HouseholdMember, Person.idcs)
        .outerjoin(Person, Person.id == HouseholdMember.person_id)
        .where(HouseholdMember.household_id == household.id, HouseholdMember.until.is_(None))
        .order_by(HouseholdMember.since, HouseholdMember.id)
    ).all()
    latest = _latest_decisions(s, household.id)
    record(s, actor, "rsu.household.viewed", ENTITY, household.id)
    return HouseholdView(
        reference=household.reference,
        created_at=household.created_at,
        current_version=household.current_version,
        members=[
            MemberOut(
                idcs=idcs,
                relation=scoring.Relation(m.relation),
                since=m.since,
                until=m.until,
            )
            for m, idcs in rows
        ],
        decisions=[_decision_out(cipher, r) for r in latest],
        explanation=_explanation(s, cipher, scorer, latest, scoring.Language(language)),
    )


def list_versions(s: Session, reference: str, actor: str) -> list[VersionOut]:
    """The household's declaration versions, oldest first (audited)."""
    household = _household(s, reference)
    rows = s.scalars(
        select(DeclarationVersion)
        .where(DeclarationVersion.household_id == household.id)
        .order_by(DeclarationVersion.version)
    )
    record(s, actor, "rsu.versions.viewed", ENTITY, household.id)
    return [
        VersionOut(version=r.version, declared_at=r.declared_at, declared_by=r.declared_by)
        for r in rows
    ]


def view_version(
    s: Session, cipher: FieldCipher, reference: str, version: int, actor: str
) -> VersionContent:
    """One declaration version with what was declared (audited)."""
    household = _household(s, reference)
    row = s.scalar(
        select(DeclarationVersion).where(
            DeclarationVersion.household_id == household.id, DeclarationVersion.version == version
        )
    )
    if row is None:
        raise NotFoundInRSU(f"{reference} has no declaration version {version}")
    declaration = read_declaration(s, cipher, household, version)
    record(s, actor, "rsu.declaration.viewed", ENTITY, household.id, version=version)
    return VersionContent(
        version=row.version,
        declared_at=row.declared_at,
        declared_by=row.declared_by,
        declaration=declaration,
    )


def list_decisions(
    s: Session, cipher: FieldCipher, reference: str, actor: str
) -> list[EligibilityOut]:
    """Every decision of the household, newest first (audited)."""
    household = _household(s, reference)
    rows = s.scalars(
        select(EligibilityDecision)
        .where(EligibilityDecision.household_id == household.id)
        .order_by(EligibilityDecision.id.desc())
    )
    out = [_decision_out(cipher, r) for r in rows]
    record(s, actor, "rsu.decisions.viewed", ENTITY, household.id)
    return out


def list_appeals(
    s: Session, cipher: FieldCipher, reference: str, actor: str, *, now: datetime | None = None
) -> list[AppealOut]:
    """The household's appeals with their grounds and answers, newest first (audited)."""
    now = now or utcnow()
    household = _household(s, reference)
    rows = s.scalars(
        select(Appeal).where(Appeal.household_id == household.id).order_by(Appeal.id.desc())
    )
    out = [_appeal_out(s, cipher, a, now, texts=True) for a in rows]
    record(s, actor, "rsu.appeals.viewed", ENTITY, household.id)
    return out


# ------------------------------------------------------------------------------ notices
def _message(s: Session, n: Notice, reference: str, language: str) -> notices.Message:
    lang = scoring.Language(language)
    day = n.created_at.date()
    if n.kind == "appeal_answered":
        appeal = s.get(Appeal, n.appeal_id)
        outcome = None if appeal is None else appeal.state
        words = notices.text("appeal_answered", day, lang, outcome=outcome)
        return notices.Message(
            n.id, reference, "appeal_answered", day, None, None, outcome, lang, words
        )
    row = s.get(EligibilityDecision, n.decision_id)
    assert row is not None
    programme = scoring.Programme(row.programme)
    words = notices.text(
        "eligibility_changed",
        day,
        lang,
        programme=programme,
        eligible=row.eligible,
        reason=row.reason,
    )
    return notices.Message(
        n.id, reference, "eligibility_changed", day, programme, row.eligible, None, lang, words
    )


def pending_notices(
    s: Session,
    *,
    household_id: int | None = None,
    language: str | None = None,
    limit: int = 1000,
) -> list[tuple[Notice, notices.Message]]:
    """Notices not delivered yet, oldest first (of one household, or all), each with its
    words in ``language`` (default: the household's)."""
    query = (
        select(Notice, Household.reference, Household.language)
        .join(Household, Household.id == Notice.household_id)
        .where(Notice.delivered_at.is_(None))
        .order_by(Notice.id)
        .limit(limit)
    )
    if household_id is not None:
        query = query.where(Notice.household_id == household_id)
    return [(n, _message(s, n, ref, language or lang)) for n, ref, lang in s.execute(query).all()]


def _delivered(s: Session, n: Notice, channel: str, actor: str, now: datetime) -> None:
    n.delivered_at, n.channel = now, channel
    record(s, actor, "rsu.notice.delivered", ENTITY, n.household_id, notice=n.id, channel=channel)


def deliver_notices(
    factory: sessionmaker[Session],
    notifier: notices.Notifier,
    actor: str,
    *,
    limit: int = 10_000,
    now: Callable[[], datetime] = utcnow,
) -> int:
    """Hand the pending notices to ``notifier``, one transaction each (a notice is marked
    delivered once the gateway has it; a crash in between sends it again: at least once).
    Returns how many were delivered; a gateway's refusal propagates, the rest stay pending."""
    sent = 0
    while sent < limit:
        with transaction(factory) as s:
            pending = pending_notices(s, limit=1)
            if not pending:
                break
            n, message = pending[0]
            notifier.send(message)
            _delivered(s, n, notifier.channel, actor, now())
            sent += 1
    return sent


# ------------------------------------------------------------------------------ the kiosk
def _kiosk_household(
    s: Session,
    cipher: FieldCipher,
    scorer: Scorer,
    household: Household,
    language: str,
    actor: str,
) -> KioskHousehold:
    """The household as its verified declarant sees it at a kiosk; the notices not yet
    delivered are shown (in ``language``) and so delivered."""
    latest = _latest_decisions(s, household.id)
    declaration = (
        read_declaration(s, cipher, household, household.current_version)
        if household.current_version
        else None
    )
    news = pending_notices(s, household_id=household.id, language=language)
    for n, _ in news:
        _delivered(s, n, "kiosk", actor, utcnow())
    return KioskHousehold(
        reference=household.reference,
        version=household.current_version,
        declaration=declaration,
        decisions=[_decision_out(cipher, r) for r in latest],
        explanation=_explanation(s, cipher, scorer, latest, scoring.Language(language)),
        notices=[m.text for _, m in news],
    )


def _kiosk_answer(
    request: KioskRSURequest, kiosk_id: str, outcome: KioskOutcome, **fields: Any
) -> KioskRSUAnswer:
    return KioskRSUAnswer(
        query_id=request.query_id,
        kiosk_id=kiosk_id,
        kind=request.kind,
        outcome=outcome,
        attempts_left=KIOSK_RSU_ATTEMPTS,
        signed_at=int(time.time()),
        **fields,
    )


def kiosk_request(
    s: Session,
    cipher: FieldCipher,
    scorer: Scorer,
    kiosk_id: str,
    request: KioskRSURequest,
    sign: Callable[[bytes], bytes],
    failures_per_hour: int,
    now: datetime | None = None,
) -> SignedRSUAnswer:
    """Answer a kiosk's RSU request once the citizen's live face matched the references of
    the person holding the IDCS (1:1, at ``KIOSK_RSU_FMR``): their household (``open``), or
    their declaration kept and decided (``declare``: a new household, or a new version of
    the one they are in). An unknown IDCS and a face that does not match answer alike
    (``not_verified``); after ``KIOSK_RSU_ATTEMPTS`` failed checks for one person in a day,
    ``refused``. Audited either way (never the template).

    Raises RateLimited past ``failures_per_hour`` failed checks from one kiosk, and the
    declaration's refusals (:class:`~central_api.rsu.exceptions.RSURefusal`) for the caller
    to roll back and answer with :func:`kiosk_rejected`."""
    now = now or utcnow()
    actor = f"kiosk:{kiosk_id}"
    if count_recent(s, actor, "rsu.kiosk_not_verified", now - timedelta(hours=1)) >= (
        failures_per_hour
    ):
        raise RateLimited("too many failed face checks from this kiosk", retry_after=3600)
    answer = _kiosk_answer(request, kiosk_id, "not_verified")
    person = s.scalar(select(Person).where(Person.idcs == request.idcs))
    if person is None:
        record(s, actor, "rsu.kiosk_not_verified", "kiosk", kiosk_id)
        return SignedRSUAnswer.make(answer, sign)
    failed = (
        s.scalar(
            select(func.count()).where(
                AuditEvent.entity == "person",
                AuditEvent.entity_id == str(person.id),
                AuditEvent.action == "rsu.kiosk_mismatch",
                AuditEvent.at >= now - timedelta(days=1),
            )
        )
        or 0
    )
    if failed >= KIOSK_RSU_ATTEMPTS:
        record(s, actor, "rsu.kiosk_refused", "person", person.id)
        return SignedRSUAnswer.make(
            answer.model_copy(update={"outcome": "refused", "attempts_left": 0}), sign
        )
    probe = np.asarray(request.face_template, np.float32)
    similarity = face_similarity(s, cipher, person.id, probe) if request.face_liveness else -1.0
    if similarity < face.threshold_for_fmr(KIOSK_RSU_FMR):
        record(s, actor, "rsu.kiosk_mismatch", "person", person.id, live=request.face_liveness)
        record(s, actor, "rsu.kiosk_not_verified", "kiosk", kiosk_id)
        left = KIOSK_RSU_ATTEMPTS - failed - 1
        return SignedRSUAnswer.make(answer.model_copy(update={"attempts_left": left}), sign)
    record(s, actor, "rsu.kiosk_verified", "person", person.id, kind=request.kind)
    membership = _open_membership(s, person.id)
    household = None if membership is None else s.get(Household, membership.household_id)
    answer = answer.model_copy(update={"attempts_left": KIOSK_RSU_ATTEMPTS - failed})
    if request.kind == "open":
        if household is None:
            return SignedRSUAnswer.make(answer.model_copy(update={"outcome": "none"}), sign)
        view = _kiosk_household(s, cipher, scorer, household, request.language, actor)
        record(s, actor, "rsu.household.viewed", ENTITY, household.id)
        return SignedRSUAnswer.make(
            answer.model_copy(update={"outcome": "found", "household": view}), sign
        )
    assert request.declaration is not None  # the request's validator
    if (
        household is not None
        and household.current_version
        and request.declaration
        == (read_declaration(s, cipher, household, household.current_version))
    ):  # sent again (a retry after a lost answer): the version in force already says it
        view = _kiosk_household(s, cipher, scorer, household, request.language, actor)
        record(s, actor, "rsu.declaration.unchanged", ENTITY, household.id)
        return SignedRSUAnswer.make(
            answer.model_copy(update={"outcome": "declared", "household": view}), sign
        )
    receipt = declare(
        s,
        cipher,
        scorer,
        request.declaration,
        actor,
        reference=None if household is None else household.reference,
        now=now,
    )
    declared = _household(s, receipt.reference)
    declared.language = request.language.value  # its notices' language from now on
    view = _kiosk_household(s, cipher, scorer, declared, request.language, actor)
    return SignedRSUAnswer.make(
        answer.model_copy(update={"outcome": "declared", "household": view}), sign
    )


def kiosk_rejected(
    s: Session,
    kiosk_id: str,
    request: KioskRSURequest,
    refusal: RSURefusal,
    sign: Callable[[bytes], bytes],
) -> SignedRSUAnswer:
    """The signed answer to a declaration the register refused (after the caller rolled its
    transaction back): the error's code, the rule, and the member at fault if one is."""
    record(
        s,
        f"kiosk:{kiosk_id}",
        "rsu.kiosk_declaration_refused",
        "kiosk",
        kiosk_id,
        code=refusal.code.value,
    )
    member = re.search(r"\b[0-9]{10}\b", str(refusal))
    answer = _kiosk_answer(
        request,
        kiosk_id,
        "rejected",
        problem=_refusal_problem(refusal),
        detail=str(refusal),
        field=member.group(0) if member else None,
    )
    return SignedRSUAnswer.make(answer, sign)


def _refusal_problem(refusal: RSURefusal) -> str:
    """The kiosk's name for a refusal of a declaration."""
    if isinstance(refusal, PersonNotRegistered):
        return "member_not_registered"
    if isinstance(refusal, PersonInAnotherHousehold):
        return "member_in_another_household"
    return "declaration_invalid"
