"""HTTP endpoints of enrolment intake and status.

Every error answer is an :class:`~central_api.enrolment.schemas.ErrorAnswer` with a stable
``code`` and ``retryable``; every status answer is signed by the registry."""

from __future__ import annotations

import base64
import binascii
import time
import uuid
from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Request, Response, status
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.exc import IntegrityError, OperationalError

from central_api.db import transaction
from central_api.dependencies import Registry, RegistryDep
from central_api.enrolment import policy, service
from central_api.enrolment.exceptions import (
    CapturePolicyViolation,
    NotAuthenticated,
    WitnessesNotRegistered,
)
from central_api.enrolment.gate import SLOT_RELEASE, read_small_body
from central_api.enrolment.schemas import (
    KIOSK_HEADER,
    READ_SKEW,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    EnrolmentStatus,
    ErrorAnswer,
    OperatorList,
    QueryAnswer,
    SealedPacket,
    read_message,
)
from central_api.exceptions import NotFound, Unavailable

router = APIRouter(prefix="/v1/enrolments", tags=["enrolment"])

_ERROR: dict[str, Any] = {"model": ErrorAnswer}
_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {**_ERROR, "description": "not_authenticated: unknown kiosk or wrong signature"},
    403: {**_ERROR, "description": "kiosk_deactivated"},
    408: {**_ERROR, "description": "body_timeout"},
    409: {**_ERROR, "description": "replay, clock_skew (with server_time) or packet_conflict"},
    413: {**_ERROR, "description": "too_large"},
    422: {
        **_ERROR,
        "description": "invalid_packet (the fields named), capture_policy (reason codes) or "
        "witnesses_not_registered",
    },
    429: {**_ERROR, "description": "rate_limited (Retry-After)"},
    503: {**_ERROR, "description": "overloaded or busy (Retry-After), unavailable"},
}


@router.post(
    "",
    response_model=EnrolmentStatus,
    status_code=status.HTTP_201_CREATED,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": SealedPacket.model_json_schema()}},
        }
    },
    responses={
        200: {"description": "Already received (idempotent resend)"},
        202: {"description": "Accepted; decision still pending"},
        400: {**_ERROR, "description": "undecryptable: not sealed to this registry's key"},
        **_ERRORS,
    },
)
async def submit_enrolment(
    request: Request,
    response: Response,
    reg: RegistryDep,
    kiosk_id: Annotated[str, Header(alias=KIOSK_HEADER)],
    prefer: Annotated[str | None, Header()] = None,
) -> EnrolmentStatus:
    """Receive a sealed enrolment packet (:class:`SealedPacket`: signed by the kiosk named in
    ``X-Kiosk-Id``, encrypted to the registry). Idempotent on the kiosk's ``packet_id``; each
    envelope is accepted once only. The capture evidence must satisfy the intake policy.

    Answers 201 with the decision when it is ready within the server's wait time, 202 when the
    identity check is still running (poll GET) or the kiosk sent ``Prefer: respond-async``,
    200 for a packet received before. Every answer is signed by the registry.
    """
    kiosk, packet_id, enrolment_id, created = await _intake(request, reg, kiosk_id)
    if release := request.scope.get(SLOT_RELEASE):
        release()  # stored: the wait below holds neither a body slot nor the body
    result = await run_in_threadpool(_status, reg, kiosk, packet_id)
    if created:
        reg.dedup.wake()
        # Wait a little for the decision (unless the kiosk prefers not to, e.g. when draining
        # its outbox): this process's worker signals at once; a decision taken by another
        # process (same database) is seen by re-reading the status.
        wait = 0.0 if "respond-async" in (prefer or "") else reg.settings.sync_wait_seconds
        deadline = time.monotonic() + wait
        while not result.decided and (left := deadline - time.monotonic()) > 0:
            await run_in_threadpool(reg.dedup.wait_for, enrolment_id, min(left, 0.25))
            result = await run_in_threadpool(_status, reg, kiosk, packet_id)
    reg.intake_answers.add("accepted" if created else "resent")
    if not created:
        response.status_code = status.HTTP_200_OK
    elif not result.decided:
        response.status_code = status.HTTP_202_ACCEPTED
    return result


async def _intake(
    request: Request, reg: Registry, kiosk_id: str
) -> tuple[str, uuid.UUID, int, bool]:
    """Read, open, check and store a packet: (kiosk, packet id, enrolment id, created). The
    body and the opened packet live only in here (read as a stream: the request keeps no copy)."""
    chunks = [chunk async for chunk in request.stream() if chunk]
    body = b"".join(chunks)  # one chunk (the gate's): no copy
    del chunks
    window = timedelta(seconds=reg.settings.replay_window_seconds)
    opened = await run_in_threadpool(
        service.open_packet, body, reg.packet_key, reg.kiosks, window, kiosk_id
    )
    del body
    with service.refused_for(opened.kiosk.id):
        hold = await run_in_threadpool(_checked, reg, opened)
        enrolment_id, created = await run_in_threadpool(_store, reg, opened, hold, window)
    return opened.kiosk.id, opened.packet.packet_id, enrolment_id, created


def _checked(reg: Registry, opened: service.Opened) -> list[str]:
    """The intake policy on a packet not seen before (a resend skips it): raises
    CapturePolicyViolation, or returns the shortfalls to hold it for (policy "adjudicate")."""
    with reg.sessions() as s:
        if service.find(s, opened.kiosk.id, opened.packet.packet_id) is not None:
            return []  # store() answers for it (or finds a conflict)
    settings = reg.settings
    hold = policy.evidence_shortfalls(opened.packet, settings)
    if hold and settings.intake_on_violation == "refuse":
        raise CapturePolicyViolation(
            "the capture evidence does not satisfy the intake policy: " + ", ".join(hold),
            reasons=hold,
        )
    policy.check_finger_templates(opened.packet)
    return hold + policy.supervisor_holds(opened.packet)


def _store(
    reg: Registry, opened: service.Opened, hold: list[str], window: timedelta
) -> tuple[int, bool]:
    s = reg.settings
    for _ in range(3):
        try:
            with transaction(reg.sessions) as session:
                e, created = service.store(
                    session,
                    reg.cipher,
                    opened,
                    hold,
                    window,
                    s.witness_failures_per_hour,
                    reg.audit_key,
                )
                return e.id, created
        except (IntegrityError, OperationalError):
            continue  # the same packet arrived concurrently, or a deadlock: read it back
        except WitnessesNotRegistered as exc:
            with transaction(reg.sessions) as session:
                service.witness_check_failed(session, opened.kiosk.id, exc.reasons)
            exc.reasons = []  # the fingerprints are for the audit, not for the kiosk
            raise
    raise Unavailable("could not store the packet; retry later", retry_after=5)


def signed_reader(
    request: Request,
    reg: RegistryDep,
    kiosk_id: Annotated[str, Header(alias=KIOSK_HEADER)],
    timestamp: Annotated[int, Header(alias=TIMESTAMP_HEADER)],
    signature: Annotated[str | None, Header(alias=SIGNATURE_HEADER)] = None,
) -> service.KioskKey:
    """The kiosk behind a read: it signs ``read_message(path, timestamp)`` with its key
    (NotAuthenticated if not, or if the timestamp is off by more than ``READ_SKEW``)."""
    if abs(time.time() - timestamp) > READ_SKEW.total_seconds():
        raise NotAuthenticated()
    try:
        raw = base64.b64decode(signature or "", validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    message = read_message(request.url.path, timestamp)
    return reg.kiosks.authenticate(kiosk_id, message, raw)


ReaderDep = Annotated[service.KioskKey, Depends(signed_reader)]


def _status(
    reg: Registry, kiosk_id: str, packet_id: uuid.UUID, reader: service.KioskKey | None = None
) -> EnrolmentStatus:
    """The signed status; for a kiosk's read (``reader``), only while that kiosk is active
    with that key (checked in the database: the directory may be seconds old)."""
    with reg.sessions() as s:
        if reader is not None:
            service.still_active(s, reader)
        e = service.find(s, kiosk_id, packet_id)
        if e is None:
            raise NotFound(f"no enrolment with packet id {packet_id} from this kiosk")
        return service.status_of(s, e, reg.signing_key.sign)


@router.get(
    "/{packet_id}",
    response_model=EnrolmentStatus,
    responses={401: _ERRORS[401], 403: _ERRORS[403], 404: {**_ERROR, "description": "not_found"}},
)
def get_enrolment(packet_id: uuid.UUID, reg: RegistryDep, reader: ReaderDep) -> EnrolmentStatus:
    """Status of an enrolment, its receipt number, and its IDCS once issued, signed.

    Only the kiosk that sent the packet may read it: it signs ``read_message(path, timestamp)``.
    """
    return _status(reg, reader.id, packet_id, reader)


kiosk_router = APIRouter(prefix="/v1/kiosk", tags=["enrolment"])


@kiosk_router.get(
    "/operators", response_model=OperatorList, responses={401: _ERRORS[401], 403: _ERRORS[403]}
)
def get_operators(reg: RegistryDep, reader: ReaderDep) -> OperatorList:
    """The reading kiosk's agents and supervisors (PIN hashes), signed by the registry: the
    kiosk installs the list only if the signature verifies and the version is not older."""
    with reg.sessions() as s:
        service.still_active(s, reader)
        return service.operator_list(s, reader.id, reg.signing_key.sign)


MAX_QUERY_BYTES = 16 * 1024  # a sealed query is under 2 KB


@kiosk_router.post(
    "/query",
    response_model=QueryAnswer,
    responses={401: _ERRORS[401], 403: _ERRORS[403], 413: _ERRORS[413], 429: _ERRORS[429]},
)
async def query(
    request: Request, reg: RegistryDep, kiosk_id: Annotated[str, Header(alias=KIOSK_HEADER)]
) -> QueryAnswer:
    """A sealed kiosk question (:class:`WitnessQuery`: are two witnesses registered, before
    any capture; :class:`ReceiptQuery`: a citizen checks a receipt by its number and their
    date of birth, at any kiosk). Each is accepted once, audited and rate-limited; the
    signed :class:`QueryAnswer` reveals nothing else."""
    body = await read_small_body(request, MAX_QUERY_BYTES)
    window = timedelta(seconds=reg.settings.replay_window_seconds)

    def work() -> QueryAnswer:
        kiosk, ask, send_id, sent_at = service.open_query(
            body, reg.packet_key, reg.kiosks, window, sender=kiosk_id
        )
        with transaction(reg.sessions) as s:
            service.still_active(s, kiosk)
            service.accept_send(s, kiosk.id, send_id, sent_at, window)
            return service.answer_query(
                s,
                reg.cipher,
                kiosk.id,
                ask,
                reg.signing_key.sign,
                reg.settings,
                reg.audit_key,
            )

    return await run_in_threadpool(work)
