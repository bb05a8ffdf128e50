"""No input makes the registry answer 5xx (issue 11): 1,144 requests generated from the API's
own schema (bodies, headers, paths) and 400 mutated packets sealed by a registered kiosk."""

from __future__ import annotations

import base64
import copy
import json
import random
from collections.abc import Iterator

import httpx
import pytest
from fastapi.testclient import TestClient
from helpers import PACKET_PUB, Registry, demographics, evidence, register_kiosk, settings_for
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from central_api.db import migrate
from central_api.enrolment.schemas import seal
from central_api.main import create_app
from kiosk.client import KioskIdentity, build_packet


def fuzz(cases: int) -> settings:
    """``cases`` generated cases, the same every run."""
    return settings(
        max_examples=cases,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


@pytest.fixture(scope="module")
def app(tmp_path_factory) -> Iterator[Registry]:
    """One registry (SQLite) for all the cases of this module, throttling turned off so that
    every case reaches the code it aims at."""
    url = f"sqlite:///{tmp_path_factory.mktemp('fuzz') / 'central.db'}"
    migrate(url)
    kiosk = KioskIdentity.generate("KIOSK-FES-01")
    register_kiosk(url, kiosk)
    s = settings_for(url, refusals_per_minute=10**6, sync_wait_seconds=0)
    with TestClient(create_app(s), raise_server_exceptions=False) as client:
        yield Registry(client, kiosk)


def _b64(size: int) -> st.SearchStrategy[str]:
    return st.binary(min_size=0, max_size=size).map(lambda b: base64.b64encode(b).decode())


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
KIOSK_IDS = st.sampled_from(
    ["KIOSK-FES-01", "KIOSK-NOBODY-00", "", "x" * 300, "KIOSK-FES-01\u0000"]
)
ENVELOPE = st.fixed_dictionaries(
    {
        "v": st.sampled_from([1, 2, 0, "1", None]),
        "kiosk_id": KIOSK_IDS | st.text(max_size=70),
        "epk": _b64(40) | st.text(max_size=50),
        "nonce": _b64(16) | st.text(max_size=20),
        "ct": _b64(600) | st.text(max_size=100),
    },
    optional={"extra": JSON},
)
BODIES = (
    ENVELOPE.map(lambda d: json.dumps(d).encode())
    | JSON.map(lambda v: json.dumps(v).encode())
    | st.binary(max_size=300)
)


@pytest.mark.slow
@fuzz(600)
@given(body=BODIES, kiosk=KIOSK_IDS, prefer=st.sampled_from([None, "respond-async", "x"]))
def test_packet_bodies_from_the_schema(app: Registry, body: bytes, kiosk: str, prefer):  # type: ignore[no-untyped-def]
    headers = {"content-type": "application/json", "x-kiosk-id": kiosk}
    if prefer:
        headers["prefer"] = prefer
    try:
        r = app.client.post("/v1/enrolments", content=body, headers=headers)
    except UnicodeEncodeError:  # a header the HTTP client itself cannot send
        return
    assert r.status_code < 500, r.text
    assert "code" in r.json() or r.status_code < 300


@pytest.mark.slow
@fuzz(400)
@given(
    packet_id=st.uuids().map(str) | st.text(max_size=60),
    kiosk=KIOSK_IDS,
    timestamp=st.integers(min_value=-(2**65), max_value=2**65).map(str) | st.text(max_size=20),
    signature=_b64(64) | st.text(max_size=100),
)
def test_status_reads_from_the_schema(app: Registry, packet_id, kiosk, timestamp, signature):  # type: ignore[no-untyped-def]
    headers = {"x-kiosk-id": kiosk, "x-kiosk-timestamp": timestamp, "x-kiosk-signature": signature}
    try:
        r = app.client.get(f"/v1/enrolments/{packet_id}", headers=headers)
    except (UnicodeEncodeError, ValueError, httpx.InvalidURL):  # unsendable
        return
    assert r.status_code < 500, r.text


@fuzz(144)
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"]),
    path=st.sampled_from(
        ["/v1/enrolments", "/v1/health", "/v1/metrics", "/docs", "/openapi.json", "/", "/v1"]
    )
    | st.text(alphabet="/abcv1-._%?=&", max_size=30).map(lambda p: "/" + p),
    auth=st.none() | st.text(max_size=30),
)
def test_every_route_and_method(app: Registry, method: str, path: str, auth):  # type: ignore[no-untyped-def]
    headers = {} if auth is None else {"authorization": auth}
    try:
        r = app.client.request(method, path, headers=headers)
    except (UnicodeEncodeError, ValueError, httpx.InvalidURL):  # unsendable
        return
    assert r.status_code < 500, (method, path, r.text)


# ---------------------------------------------------------------------------- mutated packets
_ODD = [
    None,
    True,
    -1,
    0,
    2**63,
    10**30,
    1e39,
    -1e39,
    1e-320,
    "",
    "x" * 5000,
    "\u0000",
    "٠١٢",
    [],
    {},
    [[[]]],
    {"a": {"b": {}}},
    "NaN",
    "2999-01-01",
    "AAAA",
    "////",
]


def _paths(node: object, prefix: tuple = ()) -> list[tuple]:  # type: ignore[type-arg]
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node[:3]):
            out += _paths(v, (*prefix, i))
    return out


def _mutate(doc: dict, rng: random.Random) -> dict:  # type: ignore[type-arg]
    doc = copy.deepcopy(doc)
    for _ in range(rng.choice([1, 1, 2, 3])):
        path = rng.choice(_paths(doc)[1:])
        parent: object = doc
        for key in path[:-1]:
            parent = parent[key]  # type: ignore[index]
        last = path[-1]
        action = rng.random()
        if action < 0.2 and isinstance(parent, dict):
            del parent[last]
        elif action < 0.3 and isinstance(parent, list):
            parent.append(copy.deepcopy(parent[last]))
        elif action < 0.45 and isinstance(parent[last], str):  # type: ignore[index]
            value = parent[last]  # type: ignore[index]
            parent[last] = value[: rng.randrange(len(value) + 1)]  # type: ignore[index]
        else:
            parent[last] = copy.deepcopy(rng.choice(_ODD))  # type: ignore[index]
    if rng.random() < 0.1:
        doc[rng.choice(["extra", "packet_id ", "__proto__"])] = rng.choice(_ODD)
    return doc


@pytest.mark.slow
def test_four_hundred_mutated_authenticated_packets_never_give_a_5xx(
    app: Registry, template, photo
):
    names = ["biden__biden.jpg", "obama__obama.jpg", "tom_cruise__img1.jpg"]
    seeds = [
        json.loads(
            build_packet(
                app.kiosk.kiosk_id,
                demographics(),
                [template(n)],
                photo(n),
                **evidence(i),
            ).model_dump_json()
        )
        for i, n in enumerate(names)
    ]
    rng = random.Random(400)
    statuses: dict[int, int] = {}
    for i in range(400):
        doc = _mutate(seeds[i % len(seeds)], rng)
        body = json.dumps(doc).encode()
        sealed = seal(body, app.kiosk.kiosk_id, app.kiosk.key.sign, PACKET_PUB)
        r = app.post_raw(sealed)
        assert r.status_code < 500, (i, r.text[:500])
        statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
    assert statuses.get(422, 0) > 200  # most mutations are caught by validation ...
    assert set(statuses) <= {200, 201, 202, 409, 422}, statuses  # ... and none escape it
    print("mutated packets, answers by status:", dict(sorted(statuses.items())))
