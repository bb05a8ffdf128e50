"""What the routes get from the running registry, as FastAPI dependencies."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from fastapi import Depends, Request
from sqlalchemy.orm import Session, sessionmaker

from central_api.abis.service import AbisWorker
from central_api.config import Settings
from central_api.crypto import FieldCipher
from central_api.dedup.worker import DedupWorker
from central_api.enrolment.gate import BodySlots, RefusalThrottle
from central_api.enrolment.service import KioskDirectory
from central_api.ops.service import Counters, QueueGauge


@dataclass(frozen=True)
class Registry:
    """The running registry: settings, keys, database sessions and shared services."""

    settings: Settings
    cipher: FieldCipher
    audit_key: bytes
    console_key: bytes  # MACs the console's image links (derived from the data key)
    packet_key: X25519PrivateKey
    signing_key: Ed25519PrivateKey
    sessions: sessionmaker[Session]
    dedup: DedupWorker
    kiosks: KioskDirectory
    queue: QueueGauge
    slots: BodySlots
    throttle: RefusalThrottle
    intake_answers: Counters
    abis: AbisWorker | None = None  # the ABIS job worker of this process (None: no ABIS)


def get_registry(request: Request) -> Registry:
    """The registry this app was built for (set once by ``create_app``)."""
    registry: Registry = request.app.state.registry
    return registry


RegistryDep = Annotated[Registry, Depends(get_registry)]
