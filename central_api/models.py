"""Every table of the registry, imported in one place for Alembic and the app."""

from central_api.adjudication.models import AdjudicationCase, AdjudicationDecision, FraudFlag
from central_api.audit.models import AuditCheckpoint, AuditEvent
from central_api.db import Base
from central_api.enrolment.models import Enrolment, Kiosk, KioskOperator
from central_api.identity.models import FaceReference, FingerReference, IssuedIdentifier, Person
from central_api.operators.models import ConsoleSession, Operator
from central_api.rsu.models import (
    Appeal,
    DeclarationVersion,
    EligibilityDecision,
    Household,
    HouseholdMember,
    PartnerEntry,
    RescoreJob,
)

__all__ = [
    "AdjudicationCase",
    "AdjudicationDecision",
    "Appeal",
    "AuditCheckpoint",
    "AuditEvent",
    "Base",
    "ConsoleSession",
    "DeclarationVersion",
    "EligibilityDecision",
    "Enrolment",
    "FaceReference",
    "FingerReference",
    "FraudFlag",
    "Household",
    "HouseholdMember",
    "IssuedIdentifier",
    "Kiosk",
    "KioskOperator",
    "Operator",
    "PartnerEntry",
    "Person",
    "RescoreJob",
]
