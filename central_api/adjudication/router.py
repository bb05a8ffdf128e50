"""The kiosk's door to adjudication: showing a duplicate citizen the IDCS they hold."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Header, Request
from fastapi.concurrency import run_in_threadpool

from central_api.adjudication import service
from central_api.db import transaction
from central_api.dependencies import RegistryDep
from central_api.enrolment import service as intake
from central_api.enrolment.gate import read_small_body
from central_api.enrolment.schemas import KIOSK_HEADER, RevealAnswer

router = APIRouter(prefix="/v1/kiosk", tags=["adjudication"])
MAX_REVEAL_BYTES = 64 * 1024  # a sealed reveal request is about 4 KB


@router.post("/reveal", response_model=RevealAnswer)
async def reveal(
    request: Request, reg: RegistryDep, kiosk_id: Annotated[str, Header(alias=KIOSK_HEADER)]
) -> RevealAnswer:
    """A sealed :class:`~central_api.enrolment.schemas.RevealRequest`: the IDCS of the person
    a duplicate enrolment of this kiosk was linked to, if the live face sent matches them 1:1
    (signed :class:`~central_api.enrolment.schemas.RevealAnswer`, ``shown``, ``mismatch`` or
    ``refused`` after too many mismatches)."""
    body = await read_small_body(request, MAX_REVEAL_BYTES)
    window = timedelta(seconds=reg.settings.replay_window_seconds)

    def work() -> RevealAnswer:
        kiosk, ask, send_id, sent_at = intake.open_reveal(
            body, reg.packet_key, reg.kiosks, window, sender=kiosk_id
        )
        with transaction(reg.sessions) as s:
            intake.still_active(s, kiosk)
            intake.accept_send(s, kiosk.id, send_id, sent_at, window)
            return service.reveal_idcs(s, reg.cipher, kiosk.id, ask, reg.signing_key.sign)

    return await run_in_threadpool(work)
