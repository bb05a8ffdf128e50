"""Partner administrations' data for the RSU: the adapter interface a real feed implements
(an electricity or water utility, a telecom operator), and a simulated utility feed for the
demo and the tests.

A feed yields :class:`FeedRecord` items: a verified yearly amount of one kind (electricity,
water, telecom) keyed by a household's RSU reference or by a member's IDCS, with the feed's
own id for the record (a record sent twice is stored once). The registry stores them
(:func:`central_api.rsu.service.ingest`) and re-scores the households they concern.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Literal, Protocol, runtime_checkable

from central_api.rsu.scoring import PARTNER_KINDS, ExpenseKind

__all__ = ["FeedRecord", "SimulatedUtilityFeed", "UtilityFeed"]

KeyKind = Literal["household", "member"]


@dataclass(frozen=True)
class FeedRecord:
    """One partner record as a feed delivers it. ``key``: an RSU reference (``key_kind``
    ``household``) or an IDCS (``member``); ``amount``: MAD over the 12 months ending
    ``as_of``."""

    external_id: str
    source: str
    kind: ExpenseKind
    key_kind: KeyKind
    key: str
    amount: float
    as_of: date

    def __post_init__(self) -> None:
        if self.kind not in PARTNER_KINDS:
            raise ValueError(f"no partner feed carries {self.kind.value}")
        if not 0 <= self.amount <= 1_000_000 or self.amount != self.amount:
            raise ValueError("a partner amount is 0 to 1,000,000 MAD a year")
        if not 1 <= len(self.external_id) <= 64 or not 1 <= len(self.source) <= 64:
            raise ValueError("a record's id and source are 1-64 characters")


@runtime_checkable
class UtilityFeed(Protocol):
    """What the registry needs of a partner's feed: a name, and the records received since
    the last call (a real adapter keeps its own position in the partner's stream)."""

    @property
    def name(self) -> str:
        """The feed's name (stored with each record, at most 32 characters)."""
        ...

    def fetch(self) -> Iterable[FeedRecord]:
        """The records not delivered before."""
        ...


class SimulatedUtilityFeed:
    """A stand-in utility for the demo and the tests: it delivers the records queued with
    :meth:`bill` (or invented by :meth:`bill_many`) once each, like a partner's export."""

    def __init__(self, name: str = "sim-utility", source: str = "SIM-UTILITY") -> None:
        self._name, self.source = name, source
        self._queue: list[FeedRecord] = []
        self._n = 0

    @property
    def name(self) -> str:
        """The feed's name."""
        return self._name

    def bill(
        self,
        key: str,
        kind: ExpenseKind | str,
        amount: float,
        as_of: date,
        key_kind: KeyKind = "household",
    ) -> FeedRecord:
        """Queue one yearly amount for ``key``; returns the record."""
        self._n += 1
        record = FeedRecord(
            external_id=f"{self._name}-{self._n:08d}",
            source=self.source,
            kind=ExpenseKind(kind),
            key_kind=key_kind,
            key=key,
            amount=float(amount),
            as_of=as_of,
        )
        self._queue.append(record)
        return record

    def bill_many(self, references: Sequence[str], as_of: date, seed: int = 0) -> list[FeedRecord]:
        """Queue a plausible yearly electricity and water bill for each household (log-normal
        around 1,500 and 700 MAD a year)."""
        rng = random.Random(seed)
        out = []
        for ref in references:
            out.append(
                self.bill(ref, ExpenseKind.ELECTRICITY, round(rng.lognormvariate(7.3, 0.5)), as_of)
            )
            out.append(
                self.bill(ref, ExpenseKind.WATER, round(rng.lognormvariate(6.5, 0.5)), as_of)
            )
        return out

    def fetch(self) -> Iterator[FeedRecord]:
        """The queued records, each once."""
        queue, self._queue = self._queue, []
        yield from queue
