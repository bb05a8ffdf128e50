"""The ABIS's queue door: MOSIP's requests taken from ActiveMQ (``mosip-to-abis``) and its
answers put on ``abis-to-mosip``, over STOMP.

At-least-once both ways. A request is acknowledged to the broker only once it is committed
to the job queue (or its refusal to the outbox); a bridge or a broker that dies before leaves
it unacknowledged, and the broker hands it out again (the request id makes the second copy a
no-op). An answer is marked sent only once the broker has receipted it; until then it stays
in the outbox and is sent again after a reconnect. Answers go out in the form the request
came in (MOSIP casts them: a text message for a text request, bytes for bytes), which
ActiveMQ's ``amq-msg-type`` header sets.
"""

from __future__ import annotations

import logging
import threading
import uuid
from typing import Any

import stomp
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from central_api.abis.models import AbisJob
from central_api.abis.service import handle
from central_api.config import Settings
from central_api.db import transaction

log = logging.getLogger(__name__)
_SUBSCRIPTION = "rnp-abis"


class _Listener(stomp.ConnectionListener):  # type: ignore[misc]
    def __init__(self, bridge: BrokerBridge) -> None:
        self._bridge = bridge

    def on_message(self, frame: Any) -> None:
        self._bridge.take(frame)

    def on_receipt(self, frame: Any) -> None:
        self._bridge.receipted(frame.headers.get("receipt-id", ""))

    def on_disconnected(self) -> None:
        self._bridge.lost.set()


class BrokerBridge:
    """Moves requests from the broker into the job queue and answers from the outbox back.
    ``wake``: called when a job was queued (this process's worker)."""

    def __init__(
        self, factory: sessionmaker[Session], settings: Settings, wake: Any = None
    ) -> None:
        self._factory = factory
        self._settings = settings
        self._wake = wake
        self._conn: stomp.Connection | None = None
        self._receipts: dict[str, threading.Event] = {}
        self.lost = threading.Event()
        self.send_now = threading.Event()
        self.connected = threading.Event()

    # -- inbound
    def take(self, frame: Any) -> None:
        """One request off the inbound queue: queued (or answered), then acknowledged."""
        conn, headers = self._conn, frame.headers
        form = (
            "bytes"
            if headers.get("amq-msg-type") == "bytes"
            or ("content-length" in headers and headers.get("amq-msg-type") != "text")
            else "text"
        )
        try:
            with transaction(self._factory) as s:
                job, now = handle(s, frame.body, "stomp", form)
        except Exception:  # the database is away: leave it to the broker to hand out again
            log.exception("an ABIS request could not be queued; the broker will redeliver it")
            if conn is not None:
                conn.nack(headers["message-id"], _SUBSCRIPTION)
            return
        if conn is not None:
            conn.ack(headers["message-id"], _SUBSCRIPTION)
        if job is not None and self._wake is not None:
            self._wake()
        if now is not None:
            self.send_now.set()

    # -- outbound
    def receipted(self, receipt: str) -> None:
        """The broker confirmed a frame."""
        event = self._receipts.get(receipt)
        if event is not None:
            event.set()

    def flush(self, timeout: float = 10.0) -> int:
        """Send the outbox's answers, each marked sent once receipted; returns how many."""
        conn = self._conn
        if conn is None or not conn.is_connected():
            return 0
        sent = 0
        destination = f"/queue/{self._settings.abis_outbound_queue}"
        while True:
            with transaction(self._factory) as s:
                rows = list(
                    s.scalars(
                        select(AbisJob)
                        .where(
                            AbisJob.transport == "stomp",
                            AbisJob.status == "done",
                            AbisJob.replied.is_(False),
                        )
                        .order_by(AbisJob.id)
                        .limit(50)
                        .with_for_update(skip_locked=True)
                    )
                )
                if not rows:
                    return sent
                for row in rows:
                    receipt = uuid.uuid4().hex
                    event = self._receipts[receipt] = threading.Event()
                    try:
                        body = (row.response or "{}").encode()
                        headers = {
                            "persistent": "true",
                            "amq-msg-type": row.reply_form,
                            "receipt": receipt,
                        }
                        if row.reply_form == "bytes":  # a text message has no content-length
                            headers["content-length"] = str(len(body))
                        conn.send(destination, body, headers=headers)
                        if not event.wait(timeout):
                            raise TimeoutError("no receipt from the broker")
                    finally:
                        self._receipts.pop(receipt, None)
                    row.replied = True
                    sent += 1

    # -- the loop
    def _connect(self) -> stomp.Connection:
        host, _, port = self._settings.abis_broker.rpartition(":")
        conn = stomp.Connection(
            [(host or "127.0.0.1", int(port))],
            heartbeats=(10_000, 10_000),
            auto_content_length=False,
            reconnect_attempts_max=1,
        )
        conn.set_listener("abis", _Listener(self))
        password = self._settings.abis_broker_password
        conn.connect(
            self._settings.abis_broker_user,
            None if password is None else password.get_secret_value(),
            wait=True,
        )
        conn.subscribe(
            f"/queue/{self._settings.abis_inbound_queue}",
            _SUBSCRIPTION,
            ack="client-individual",
            headers={"activemq.prefetchSize": "16"},
        )
        return conn

    def run(self, stop: threading.Event) -> None:
        """Bridge until ``stop`` is set, reconnecting (1 s, doubling to 30 s) whenever the
        broker goes away."""
        backoff = 1.0
        while not stop.is_set():
            try:
                self.lost.clear()
                self._conn = self._connect()
                self.connected.set()
                log.info("ABIS bridge connected to %s", self._settings.abis_broker)
                backoff = 1.0
                while not stop.is_set() and not self.lost.is_set():
                    self.flush()
                    self.send_now.wait(self._settings.worker_poll_seconds)
                    self.send_now.clear()
            except Exception as exc:
                log.warning("ABIS bridge: broker unavailable (%s); retrying", type(exc).__name__)
            finally:
                self.connected.clear()
                conn, self._conn = self._conn, None
                if conn is not None:
                    try:
                        conn.disconnect()
                    except Exception:  # already gone
                        log.debug("disconnect after a lost connection failed")
            stop.wait(backoff)
            backoff = min(backoff * 2, 30.0)
