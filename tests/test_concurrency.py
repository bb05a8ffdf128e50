"""Concurrent submissions against two real server processes sharing one database."""

from __future__ import annotations

import contextlib
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import (
    PACKET_PUB,
    SIGNING_PUB,
    count,
    demographics,
    evidence,
    register_kiosk,
    registry_env,
    serve_registry,
)

from kiosk.client import CentralClient, KioskIdentity, build_packet

N = 50

pytestmark = pytest.mark.slow  # server and device processes


@pytest.fixture
def servers(db_url: str, tmp_path: Path) -> Iterator[tuple[list[str], KioskIdentity]]:
    """Two `central-api serve` processes on the same database."""
    kiosk = KioskIdentity.generate("KIOSK-RABAT-07")
    register_kiosk(db_url, kiosk)
    env = registry_env(db_url, sync_wait_seconds="30")
    with contextlib.ExitStack() as stack:
        urls = [
            stack.enter_context(serve_registry(env, tmp_path / f"server{i}.log"))[1]
            for i in range(2)
        ]
        yield urls, kiosk


def _run_threads(work) -> list:  # type: ignore[no-untyped-def]
    barrier = threading.Barrier(N)
    results: list = [None] * N

    def one(i: int) -> None:
        barrier.wait()
        try:
            results[i] = work(i)
        except Exception as exc:
            results[i] = exc

    threads = [threading.Thread(target=one, args=(i,)) for i in range(N)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return results


def test_fifty_concurrent_enrolments_of_one_person_issue_exactly_one_idcs(
    servers, db_url, template, photo
):
    urls, kiosk = servers
    clients = [CentralClient(u, kiosk, PACKET_PUB, SIGNING_PUB) for u in urls]
    tpl, jpeg = template("obama__obama.jpg"), photo("obama__obama.jpg")

    def enrol(i: int):  # type: ignore[no-untyped-def]
        client = clients[i % 2]
        packet = build_packet(kiosk.kiosk_id, demographics(), [tpl], jpeg, **evidence())
        st = client.submit(packet)
        return st if st.decided else client.wait_final(packet.packet_id)

    results = _run_threads(enrol)
    for c in clients:
        c.close()
    errors = [r for r in results if isinstance(r, Exception)]
    assert not errors, errors[:3]
    outcomes = Counter(r.status.value for r in results)
    assert outcomes == {"issued": 1, "duplicate": N - 1}
    assert len({r.idcs for r in results if r.idcs}) == 1
    assert count(db_url, "persons") == 1
    assert count(db_url, "issued_identifiers") == 1
    assert count(db_url, "enrolments") == N


def test_fifty_concurrent_copies_of_one_packet_store_it_once(servers, db_url, template, photo):
    urls, kiosk = servers
    clients = [CentralClient(u, kiosk, PACKET_PUB, SIGNING_PUB) for u in urls]
    packet = build_packet(
        kiosk.kiosk_id,
        demographics(),
        [template("biden__biden.jpg")],
        photo("biden__biden.jpg"),
        **evidence(),
    )
    results = _run_threads(lambda i: clients[i % 2].submit(packet))
    for c in clients:
        c.close()
    assert not [r for r in results if isinstance(r, Exception)]
    assert len({r.receipt_number for r in results}) == 1
    assert count(db_url, "enrolments") == 1
    assert count(db_url, "persons") == 1
