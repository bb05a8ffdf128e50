"""HTTP endpoints of enrolment intake and status."""

from __future__ import annotations

import time
import uuid
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Header, HTTPException, Request, Response, status
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.exc import IntegrityError
from starlette.datastructures import State

from central_api.db import transaction
from central_api.enrolment import service
from central_api.enrolment.schemas import (
    KIOSK_HEADER,
    READ_SKEW,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    EnrolmentStatus,
    SealedPacket,
    read_message,
)

router = APIRouter(prefix="/v1/enrolments", tags=["enrolment"])

_ERRORS = {
    401: {"description": "Missing or invalid kiosk signature"},
    403: {"description": "Unknown or inactive kiosk"},
    409: {
        "description": "Another packet was already received under this packet id, or the "
        "envelope is a replay (seen before, or sealed outside the replay window)"
    },
    413: {"description": "Request body too large"},
    422: {"description": "The packet is malformed; the detail says which field and why"},
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
        400: {"description": "Not a sealed packet, or not sealed to this registry's key"},
        202: {"description": "Accepted; decision still pending"},
        **_ERRORS,
    },
)
async def submit_enrolment(
    request: Request,
    response: Response,
    prefer: Annotated[str | None, Header()] = None,
) -> EnrolmentStatus:
    """Receive a sealed enrolment packet (:class:`SealedPacket`: signed by the kiosk, encrypted
    to the registry). Idempotent on ``packet_id``; each envelope is accepted once only.

    Answers 201 with the decision when it is ready within the server's wait time, 202 when the
    identity check is still running (poll GET) or the kiosk sent ``Prefer: respond-async``,
    200 for a packet received before.
    """
    body = await request.body()
    state = request.app.state
    window = timedelta(seconds=state.settings.replay_window_seconds)

    def store() -> tuple[uuid.UUID, bool]:
        for _ in range(3):
            try:
                with transaction(state.sessions) as s:
                    e, created = service.receive(s, state.cipher, state.packet_key, body, window)
                    return e.packet_id, created
            except IntegrityError:
                continue  # the same packet arrived concurrently: read it back
        raise HTTPException(503, "could not store the packet; retry later")

    try:
        packet_id, created = await run_in_threadpool(store)
    except service.InvalidPacket as exc:
        raise HTTPException(exc.status_code, exc.errors) from exc
    except service.IntakeError as exc:
        raise HTTPException(exc.status_code, str(exc)) from exc
    result = await run_in_threadpool(_status, state, packet_id)
    if created:
        state.dedup.wake()
        # Wait a little for the decision (unless the kiosk prefers not to, e.g. when draining
        # its outbox): this process's worker signals at once; a decision taken by another
        # process (same database) is seen by re-reading the status.
        wait = 0.0 if "respond-async" in (prefer or "") else state.settings.sync_wait_seconds
        deadline = time.monotonic() + wait
        while not result.final and (left := deadline - time.monotonic()) > 0:
            await run_in_threadpool(state.dedup.wait_for, packet_id, min(left, 0.25))
            result = await run_in_threadpool(_status, state, packet_id)
    if not created:
        response.status_code = status.HTTP_200_OK
    elif not result.final:
        response.status_code = status.HTTP_202_ACCEPTED
    return result


def _status(state: State, packet_id: uuid.UUID, kiosk_id: str | None = None) -> EnrolmentStatus:
    with state.sessions() as s:
        e = service.find(s, packet_id)
        if e is None or (kiosk_id is not None and e.kiosk_id != kiosk_id):
            raise HTTPException(404, f"no enrolment with packet id {packet_id} from this kiosk")
        return service.status_of(s, e)


@router.get(
    "/{packet_id}",
    response_model=EnrolmentStatus,
    responses={401: _ERRORS[401], 403: _ERRORS[403], 404: {"description": "Not found"}},
)
def get_enrolment(
    packet_id: uuid.UUID,
    request: Request,
    kiosk_id: Annotated[str, Header(alias=KIOSK_HEADER)],
    timestamp: Annotated[int, Header(alias=TIMESTAMP_HEADER)],
    signature: Annotated[str | None, Header(alias=SIGNATURE_HEADER)] = None,
) -> EnrolmentStatus:
    """Status of an enrolment, its receipt number, and its IDCS once issued.

    Only the kiosk that sent the packet may read it: it signs ``read_message(path, timestamp)``.
    """
    if abs(time.time() - timestamp) > READ_SKEW.total_seconds():
        raise HTTPException(401, "request timestamp too far from the server clock")
    state = request.app.state
    with state.sessions() as s:
        try:
            service.authenticate(s, kiosk_id, read_message(request.url.path, timestamp), signature)
        except service.IntakeError as exc:
            raise HTTPException(exc.status_code, str(exc)) from exc
    return _status(state, packet_id, kiosk_id)
