"""Gauges and counters of the registry, rendered in the Prometheus text format."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from central_api.adjudication.service import report
from central_api.audit.models import AuditEvent
from central_api.db import utcnow
from central_api.enrolment.models import Enrolment
from central_api.identity.models import Person


class QueueGauge:
    """The dedup queue's depth, read from the database at most every ``ttl`` seconds (the
    intake gate asks on every packet)."""

    def __init__(
        self,
        factory: sessionmaker[Session],
        depth: Callable[[Session], int],
        limit: int,
        ttl: float = 1.0,
    ) -> None:
        self._factory, self._depth, self.limit, self._ttl = factory, depth, limit, ttl
        self._value, self._at = 0, -1e9
        self._lock = threading.Lock()

    def depth(self) -> int:
        """Enrolments waiting for or under a decision (at most ``ttl`` seconds old)."""
        if time.monotonic() - self._at > self._ttl:
            with self._lock:
                if time.monotonic() - self._at > self._ttl:
                    with self._factory() as s:
                        self._value = self._depth(s)
                    self._at = time.monotonic()
        return self._value

    def full(self) -> bool:
        """True when the queue holds ``limit`` or more enrolments."""
        return self.depth() >= self.limit

    def cached_full(self) -> bool | None:
        """:meth:`full` from the cached depth, or None when it is stale (no I/O here)."""
        if time.monotonic() - self._at > self._ttl:
            return None
        return self._value >= self.limit


class Counters:
    """Thread-safe event counters (intake answers by code)."""

    def __init__(self) -> None:
        self._counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def add(self, key: str) -> None:
        """Count one ``key``."""
        with self._lock:
            self._counts[key] += 1

    def snapshot(self) -> dict[str, int]:
        """The counts so far."""
        with self._lock:
            return dict(self._counts)


def render(
    session: Session,
    queue: QueueGauge,
    intake: Counters,
    gallery_size: int,
    bodies_in_flight: int,
) -> str:
    """The metrics page (Prometheus text exposition format 0.0.4). ``session`` reads the
    counts; the queue gauge is read first, before ``session`` begins: it opens its own session
    and SQLite has one writer at a time."""
    depth = queue.depth()
    by_status = dict(
        session.execute(select(Enrolment.status, func.count()).group_by(Enrolment.status)).all()
    )
    persons = session.scalar(select(func.count()).select_from(Person)) or 0
    last_seq = session.scalar(select(func.max(AuditEvent.seq))) or 0
    lines: list[str] = []

    def metric(name: str, kind: str, help_: str, samples: list[tuple[str, float]]) -> None:
        lines.append(f"# HELP {name} {help_}")
        lines.append(f"# TYPE {name} {kind}")
        lines.extend(f"{name}{labels} {value:g}" for labels, value in samples)

    metric("rnp_persons", "gauge", "Persons in the register.", [("", persons)])
    metric(
        "rnp_enrolments",
        "gauge",
        "Enrolments by status.",
        [(f'{{status="{k}"}}', v) for k, v in sorted(by_status.items())],
    )
    metric(
        "rnp_dedup_queue_depth",
        "gauge",
        "Enrolments awaiting a decision.",
        [("", depth)],
    )
    metric(
        "rnp_dedup_queue_limit",
        "gauge",
        "Queue depth at which intake answers 503.",
        [("", queue.limit)],
    )
    metric(
        "rnp_gallery_persons",
        "gauge",
        "Enrolled persons in this process's galleries.",
        [("", gallery_size)],
    )
    metric(
        "rnp_intake_bodies_in_flight",
        "gauge",
        "Packet bodies being received now.",
        [("", bodies_in_flight)],
    )
    metric(
        "rnp_intake_answers_total",
        "counter",
        "Intake answers of this process by code.",
        [(f'{{code="{k}"}}', v) for k, v in sorted(intake.snapshot().items())],
    )
    metric("rnp_audit_events", "gauge", "Rows in the audit chain.", [("", last_seq)])
    r = report(session)
    metric(
        "rnp_adjudication_cases",
        "gauge",
        "Adjudication cases waiting, by status.",
        [('{status="open"}', r.open_cases), ('{status="second_review"}', r.second_review)],
    )
    metric(
        "rnp_adjudication_oldest_case_seconds",
        "gauge",
        "Age of the oldest adjudication case not yet closed.",
        [("", r.oldest_age_seconds)],
    )
    metric(
        "rnp_adjudication_closed",
        "gauge",
        "Adjudication cases closed, by the decision that took effect.",
        [(f'{{decision="{k}"}}', v) for k, v in sorted(r.outcomes.items())],
    )
    today = max(r.decisions_per_day, default=None)
    metric(
        "rnp_adjudication_decisions_today",
        "gauge",
        "Adjudicators' decisions today (UTC), by decision (second_eye: reviews).",
        [(f'{{decision="{k}"}}', v) for k, v in sorted(r.decisions_per_day.get(today, {}).items())]
        if today == utcnow().date().isoformat()
        else [],
    )
    metric(
        "rnp_adjudication_operator_decisions_7d",
        "gauge",
        "Decisions per adjudicator over the last 7 days.",
        [(f'{{operator="{k}"}}', v) for k, v in sorted(r.throughput.items())],
    )
    metric(
        "rnp_adjudication_overturned_ratio",
        "gauge",
        "Share of closed cases decided against the machine's leaning.",
        [("", r.overturned / r.closed)] if r.closed else [],
    )
    metric(
        "rnp_adjudication_fpir_estimate",
        "gauge",
        "Non-mated searches that reached an adjudicator (different persons / issued).",
        [] if r.fpir_estimate is None else [("", r.fpir_estimate)],
    )
    metric(
        "rnp_adjudication_fnir_estimate",
        "gauge",
        "Confirmed duplicates the automatic threshold missed (a lower bound).",
        [] if r.fnir_estimate is None else [("", r.fnir_estimate)],
    )
    metric(
        "rnp_kiosk_last_packet_timestamp_seconds",
        "gauge",
        "When each kiosk's last packet arrived (unix seconds).",
        [(f'{{kiosk="{k}"}}', last.timestamp()) for k, _, last in r.kiosks if last is not None],
    )
    return "\n".join(lines) + "\n"
