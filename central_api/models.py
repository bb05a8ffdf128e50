"""Every table of the registry, imported in one place for Alembic and the app."""

from central_api.adjudication.models import AdjudicationCase, AdjudicationDecision, FraudFlag
from central_api.audit.models import AuditCheckpoint, AuditEvent
from central_api.db import Base
from central_api.enrolment.models import Enrolment, Kiosk, KioskOperator
from central_api.identity.models import FaceReference, FingerReference, IssuedIdentifier, Person
from central_api.operators.models import ConsoleSession, Operator

__all__ = [
    "AdjudicationCase",
    "AdjudicationDecision",
    "AuditCheckpoint",
    "AuditEvent",
    "Base",
    "ConsoleSession",
    "Enrolment",
    "FaceReference",
    "FingerReference",
    "FraudFlag",
    "IssuedIdentifier",
    "Kiosk",
    "KioskOperator",
    "Operator",
    "Person",
]
