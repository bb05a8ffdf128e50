"""Every table of the registry, imported in one place for Alembic and the app."""

from central_api.audit.models import AuditCheckpoint, AuditEvent
from central_api.db import Base
from central_api.dedup.models import AdjudicationCase
from central_api.enrolment.models import Enrolment, Kiosk
from central_api.identity.models import FaceReference, FingerReference, IssuedIdentifier, Person

__all__ = [
    "AdjudicationCase",
    "AuditCheckpoint",
    "AuditEvent",
    "Base",
    "Enrolment",
    "FaceReference",
    "FingerReference",
    "IssuedIdentifier",
    "Kiosk",
    "Person",
]
