"""Issuing IDCS to new persons and removing persons, with the audit trail."""

from __future__ import annotations

import random

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from central_api.audit.service import record
from central_api.enrolment.models import Enrolment
from central_api.exceptions import InternalError
from central_api.identity.idcs import IdcsPolicy, draw
from central_api.identity.models import (
    FaceReference,
    FingerReference,
    IssuedIdentifier,
    Person,
)


class IssuanceError(InternalError):
    """No fresh IDCS could be reserved."""


def issue_person(
    session: Session, policy: IdcsPolicy, actor: str, rng: random.Random | None = None
) -> Person:
    """Create a person with a fresh random IDCS, in the caller's transaction.

    The number is first reserved in ``issued_identifiers`` (primary key), whose rows are
    never deleted: a number taken once, even by a person since removed, is never drawn again.
    """
    for _ in range(50):
        number = draw(policy, rng)
        try:
            with session.begin_nested():
                session.add(IssuedIdentifier(idcs=number))
        except IntegrityError:
            continue  # already issued at some time: draw again
        person = Person(idcs=number)
        session.add(person)
        session.flush()
        record(session, actor, "person.created", "person", person.id)
        return person
    raise IssuanceError("50 draws in a row were already issued; the IDCS space is full")


def delete_person(session: Session, idcs: str, actor: str) -> int | None:
    """Remove a person and their biometric references. Their IDCS stays reserved forever.

    Returns the person's internal id, or None if no such person exists.
    """
    person = session.scalar(select(Person).where(Person.idcs == idcs))
    if person is None:
        return None
    pid = person.id
    session.execute(delete(FaceReference).where(FaceReference.person_id == pid))
    session.execute(delete(FingerReference).where(FingerReference.person_id == pid))
    session.execute(update(Enrolment).where(Enrolment.person_id == pid).values(person_id=None))
    session.delete(person)
    record(session, actor, "person.deleted", "person", pid)
    return pid
