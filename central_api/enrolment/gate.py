"""The intake gate: what a request may cost the registry before anyone knows who sent it.

An ASGI middleware in front of the application. For every request: a declared or actual body
over ``max_body_bytes`` is refused (413) before it is parsed. For a packet
(``POST /v1/enrolments``), before a byte of the body is read: the ``X-Kiosk-Id`` header must
name a registered kiosk (401, the same answer as a wrong signature), the dedup queue must have
room (503 ``overloaded`` with Retry-After, so kiosks back off instead of piling up work), and
one of ``max_concurrent_bodies`` body slots must be free (503 ``busy``; no other route reads
a body). The body must then
arrive without pausing longer than ``body_idle_seconds`` and within ``body_total_seconds``
(408). A slot is held until the packet is stored (the route releases it before waiting for
the decision, :data:`SLOT_RELEASE`) or the answer is sent, so memory held by bodies is bounded
by slots x max size, and is handed back to the operating system (``malloc_trim``) when the last
body in flight is released.

A kiosk that proved who it is but keeps sending packets the registry refuses (malformed,
image bombs, failing the capture policy) is throttled (:class:`RefusalThrottle`): past
``refusals_per_minute`` its packets are answered 429 at the gate, body unread, for a minute.
Only refusals after its signature was verified count, so nobody can get another kiosk
throttled by naming it. The gate answers an unknown or throttled sender after
``refusal_delay_seconds`` (a tarpit costing no CPU), so such a flood cannot take the CPU that
honest kiosks need; a wrong signature found later waits as long, so that it looks like an
unknown kiosk in time as well as in content.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import threading
import time
from collections import deque
from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from central_api.enrolment.exceptions import NotAuthenticated, RateLimited
from central_api.enrolment.service import KioskDirectory
from central_api.exceptions import BodyTimeout, Busy, Overloaded, RegistryError, TooLarge
from central_api.ops.service import QueueGauge

INTAKE_PATH = "/v1/enrolments"
SLOT_RELEASE = "rnp.release_body_slot"
"""Scope key of a packet request's body-slot release: the route calls it once the packet is
stored, so a request waiting for its decision holds no slot (and no body)."""


class _Trim:
    """glibc's ``malloc_trim(0)``: give freed heap pages back to the OS (no-op elsewhere)."""

    def __init__(self) -> None:
        name = ctypes.util.find_library("c")
        fn = getattr(ctypes.CDLL(name), "malloc_trim", None) if name else None
        self._fn: Callable[[int], int] | None = fn
        self._last = 0.0

    def __call__(self) -> None:
        now = time.monotonic()
        if self._fn is not None and now - self._last > 1.0:
            self._last = now
            self._fn(0)


class BodySlots:
    """At most ``size`` packet bodies in memory at once; the last one out trims the heap."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.in_flight = 0
        self._lock = threading.Lock()
        self._trim = _Trim()

    def take(self) -> bool:
        """Take a slot; False when all are taken."""
        with self._lock:
            if self.in_flight >= self.size:
                return False
            self.in_flight += 1
            return True

    def give_back(self) -> None:
        """Release a slot taken with :meth:`take`."""
        with self._lock:
            self.in_flight -= 1
            idle = self.in_flight == 0
        if idle:
            self._trim()


class RefusalThrottle:
    """Refusals of authenticated kiosks in the last minute, by kiosk."""

    WINDOW = 60.0

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._times: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def record(self, kiosk_id: str) -> None:
        """One more refusal of ``kiosk_id``'s packets."""
        now = time.monotonic()
        with self._lock:
            times = self._times.setdefault(kiosk_id, deque())
            times.append(now)
            while times and now - times[0] > self.WINDOW:
                times.popleft()

    def blocked(self, kiosk_id: str) -> int | None:
        """Seconds until ``kiosk_id`` may send again, or None if it may now."""
        now = time.monotonic()
        with self._lock:
            times = self._times.get(kiosk_id)
            while times and now - times[0] > self.WINDOW:
                times.popleft()
            if not times:
                self._times.pop(kiosk_id, None)
                return None
            if len(times) < self.per_minute:
                return None
            return max(1, int(self.WINDOW - (now - times[0])) + 1)


class IntakeGate:
    """The ASGI middleware described in the module docstring."""

    def __init__(
        self,
        app: ASGIApp,
        max_bytes: int,
        slots: BodySlots,
        idle_seconds: float,
        total_seconds: float,
        kiosks: KioskDirectory,
        queue: QueueGauge,
        throttle: RefusalThrottle,
        refusal_delay: float = 1.0,
        on_refusal: Callable[[str], None] = lambda _code: None,
    ) -> None:
        self.app, self.max_bytes, self.slots = app, max_bytes, slots
        self.idle, self.total = idle_seconds, total_seconds
        self.kiosks, self.queue, self.throttle = kiosks, queue, throttle
        self.on_refusal = on_refusal
        self.delay = refusal_delay
        self._tarpit = 0  # refusals being delayed now (one event loop: no lock needed)

    TARPIT = 512

    async def tarpit(self) -> None:
        """Wait ``delay`` seconds before a refusal (unless ``TARPIT`` already wait)."""
        if self.delay > 0 and self._tarpit < self.TARPIT:
            self._tarpit += 1
            try:
                await asyncio.sleep(self.delay)
            finally:
                self._tarpit -= 1

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(send, TooLarge(self._too_large()))
            return
        if scope["method"] != "POST" or scope["path"] != INTAKE_PATH:
            await self.app(scope, receive, send)  # no other route reads a body
            return
        # cheapest first; the database only when a cache cannot answer (in a thread)
        kiosk = headers.get(b"x-kiosk-id", b"").decode("latin-1")
        if wait := self.throttle.blocked(kiosk):
            refusal = RateLimited("too many refused packets from this kiosk", retry_after=wait)
            await self._refuse(send, refusal, slow=True)
            return
        known = self.kiosks.cached(kiosk) if kiosk else False
        if known is None:
            known = await asyncio.to_thread(self.kiosks.get, kiosk) is not None
        if not known:
            await self._refuse(send, NotAuthenticated(), slow=True)
            return
        full = self.queue.cached_full()
        if full is None:
            full = await asyncio.to_thread(self.queue.full)
        if full:
            await self._refuse(
                send, Overloaded("the identity checks are behind; retry later", retry_after=30)
            )
            return
        if not self.slots.take():
            await self._refuse(send, Busy("too many uploads at once; retry", retry_after=2))
            return
        held = True

        def release() -> None:
            nonlocal held
            if held:
                held = False
                self.slots.give_back()

        scope[SLOT_RELEASE] = release
        try:
            await self._pass(scope, receive, send)
        finally:
            release()

    async def _pass(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = bytearray()
        deadline = time.monotonic() + self.total
        more = True
        while more:
            left = min(self.idle, deadline - time.monotonic())
            try:
                if left <= 0:
                    raise TimeoutError
                message = await asyncio.wait_for(receive(), left)
            except TimeoutError:
                await self._refuse(send, BodyTimeout("the request body did not arrive in time"))
                return
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if len(body) > self.max_bytes:
                await self._refuse(send, TooLarge(self._too_large()))
                return
            more = message.get("more_body", False)
        data: bytes | None = bytes(body)
        del body

        async def replay() -> Message:
            nonlocal data
            if data is not None:
                chunk, data = data, None  # the app holds the only reference from now on
                return {"type": "http.request", "body": chunk, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    def _too_large(self) -> str:
        return f"request body exceeds the limit of {self.max_bytes} bytes"

    async def _refuse(self, send: Send, error: RegistryError, slow: bool = False) -> None:
        """Answer ``error``. ``slow``: a sender that is unknown or throttled waits for it (the
        tarpit: no CPU is spent meanwhile), so a flood from one client comes at one request per
        ``delay`` per connection instead of as fast as it can."""
        self.on_refusal(error.code.value)
        if slow:
            await self.tarpit()
        payload = JSONResponse(error.answer().model_dump(mode="json")).body  # as the app's
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(payload)).encode()),
            (b"connection", b"close"),
        ]
        headers += [(k.lower().encode(), v.encode()) for k, v in error.headers().items()]
        await send({"type": "http.response.start", "status": error.status_code, "headers": headers})
        await send({"type": "http.response.body", "body": payload})


async def read_small_body(request: Request, limit: int) -> bytes:
    """The body of a small kiosk request (a reveal, a query), refused past ``limit`` bytes
    however it is sent (chunked too): TooLarge."""
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise TooLarge(f"this request is at most {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
