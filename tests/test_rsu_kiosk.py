"""The kiosk's door to the social registry: a citizen verified 1:1 by their live face sees
and declares their household (``/v1/kiosk/rsu``, sealed, signed answers), and the kiosk's
household form turns what was typed into a declaration or names the wrong field."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from helpers import PACKET_PUB, SIGNING_PUB, Registry, fingers
from sqlalchemy import select
from test_rsu_domain import declaration

from central_api.audit.models import AuditEvent
from central_api.db import transaction
from central_api.enrolment.schemas import DecisionNotAuthentic
from central_api.identity.idcs import verhoeff_digit
from central_api.rsu import service as rsu
from central_api.rsu.models import Household
from central_api.rsu.schemas import KioskRSUAnswer, KioskRSURequest, SignedRSUAnswer
from kiosk.household import Draft, DraftError, Row, parse
from kiosk.session import Problem

OBAMA, BIDEN = 4242, 77


def enrol(reg: Registry, name: str, seed: int, template, photo) -> str:  # type: ignore[no-untyped-def]
    packet = reg.packet([template(name)], photo(name), fingerprints=fingers(seed))
    answer = reg.submit(packet).json()
    assert answer["status"] == "issued", answer
    return str(answer["idcs"])


def unissued() -> str:
    """A well-formed IDCS (valid check digit) that nobody holds."""
    body = "987654321"
    return body + verhoeff_digit(body)


def ask(reg: Registry, request: KioskRSURequest, sealed: bytes | None = None):  # type: ignore[no-untyped-def]
    body = sealed or reg.kiosk.seal(request.model_dump_json().encode(), PACKET_PUB)
    r = reg.client.post(
        "/v1/kiosk/rsu",
        content=body,
        headers={"content-type": "application/json", "x-kiosk-id": reg.kiosk.kiosk_id},
    )
    return r, body


def request(
    reg: Registry, kind: str, idcs: str, face: Any, live: bool = True, **kw: Any
) -> KioskRSURequest:
    return KioskRSURequest.model_validate(
        {
            "kind": kind,
            "query_id": uuid.uuid4(),
            "kiosk_id": reg.kiosk.kiosk_id,
            "idcs": idcs,
            "face_template": [float(v) for v in face],
            "face_liveness": live,
            "face_quality": 80,
            **kw,
        }
    )


def opened(reg: Registry, req: KioskRSURequest) -> KioskRSUAnswer:
    r, _ = ask(reg, req)
    assert r.status_code == 200, r.text
    return SignedRSUAnswer.model_validate(r.json()).open(
        SIGNING_PUB, reg.kiosk.kiosk_id, req.query_id
    )


def test_a_citizen_verified_by_their_face_sees_and_declares_their_household(
    registry: Registry, template, photo
) -> None:  # type: ignore[no-untyped-def]
    """Nothing is shown before the face matches the IDCS's person; a declaration names the
    verified person as declarant, is kept and decided, and is shown back with the
    explanation in the citizen's language; a refused one changes nothing and says which
    member is at fault; a tampered or replayed answer or envelope is refused."""
    obama = enrol(registry, "obama__obama.jpg", OBAMA, template, photo)
    biden = enrol(registry, "biden__biden.jpg", BIDEN, template, photo)
    face = template("obama__obama2.jpg")
    first = opened(registry, request(registry, "open", obama, face))
    assert first.outcome == "none" and first.household is None

    poor = declaration([obama, biden], "poor").model_dump(mode="json")
    declare = request(registry, "declare", obama, face, language="ar", declaration=poor)
    done = opened(registry, declare)
    assert done.outcome == "declared" and done.household is not None
    h = done.household
    assert h.reference.startswith("RSU-") and h.version == 1
    assert {d.programme.value: d.eligible for d in h.decisions} == {
        "amo_tadamon": True,
        "asd": True,
    }
    assert h.explanation is not None and h.explanation.language == "ar"
    assert "(9,326)" in h.explanation.text  # the AMO threshold, written the Arabic way
    assert h.declaration is not None and h.declaration.declarant.idcs == obama

    # the same declaration sent again (a retry after a lost answer) is not a new version
    retry = opened(registry, declare.model_copy(update={"query_id": uuid.uuid4()}))
    assert retry.outcome == "declared" and retry.household is not None
    assert retry.household.version == 1

    again = opened(registry, request(registry, "open", obama, face, language="fr"))
    assert again.outcome == "found" and again.household is not None
    assert again.household.reference == h.reference and again.household.version == 1
    assert again.household.explanation is not None
    assert again.household.explanation.language == "fr"

    # a revised direct-aid threshold meanwhile (a re-score): told once, at the next visit,
    # in the visit's language
    reg = registry.app.state.registry  # type: ignore[union-attr]
    thresholds = rsu.bundled_thresholds_data()
    thresholds["thresholds"].append(
        {
            "programme": "asd",
            "version": "asd-test-lower",
            "value": 9.0,
            "effective_from": "2026-01-01",
            "source": "test: a lower threshold",
        }
    )
    with transaction(reg.sessions) as s:
        job = rsu.start_rescore(
            s, model_source="pmt-illustrative-2026.1", actor="test", thresholds=thresholds
        )
    assert rsu.run_rescore(reg.sessions, reg.cipher, job.id, "test").lost_eligibility == 1
    told = opened(registry, request(registry, "open", obama, face, language="fr"))
    assert told.household is not None
    assert len(told.household.notices) == 1
    assert "n'est plus éligible à l'aide sociale directe" in told.household.notices[0]
    assert opened(registry, request(registry, "open", obama, face)).household.notices == []  # type: ignore[union-attr]

    # a member who is not in the register: nothing changes, the member is named
    stranger = unissued()
    wrong = declaration([obama, biden, stranger], "poor").model_dump(mode="json")
    rejected = opened(registry, request(registry, "declare", obama, face, declaration=wrong))
    assert rejected.outcome == "rejected" and rejected.problem == "member_not_registered"
    assert rejected.field == stranger and rejected.household is None
    with registry.app.state.registry.sessions() as s:  # type: ignore[union-attr]
        assert s.scalar(select(Household.current_version)) == 1

    # biden may not declare as obama: the declarant must be the verified person
    with pytest.raises(ValueError, match="declarant must be the person"):
        request(registry, "declare", biden, template("biden__biden.jpg"), declaration=wrong)

    # a signed answer is for its own request, unchanged
    req = request(registry, "open", obama, face)
    r, sealed = ask(registry, req)
    signed = SignedRSUAnswer.model_validate(r.json())
    with pytest.raises(DecisionNotAuthentic):
        signed.open(SIGNING_PUB, registry.kiosk.kiosk_id, uuid.uuid4())
    tampered = signed.model_copy(update={"body": signed.body.replace('"found"', '"none"')})
    with pytest.raises(DecisionNotAuthentic):
        tampered.open(SIGNING_PUB, registry.kiosk.kiosk_id, req.query_id)
    assert ask(registry, req, sealed)[0].json()["code"] == "replay"

    # the audit says who looked and what changed, never what was declared
    with registry.app.state.registry.sessions() as s:  # type: ignore[union-attr]
        rows = list(s.scalars(select(AuditEvent).where(AuditEvent.actor.like("kiosk:%"))))
    actions = {e.action for e in rows}
    assert {"rsu.kiosk_verified", "rsu.declared", "rsu.household.viewed"} <= actions
    assert "rsu.kiosk_declaration_refused" in actions
    assert all(obama not in str(e.details) and "casual_worker" not in str(e.details) for e in rows)


def test_another_face_or_an_unknown_idcs_are_not_verified_alike_and_three_failures_end_it(
    registry: Registry, template, photo
) -> None:  # type: ignore[no-untyped-def]
    obama = enrol(registry, "obama__obama.jpg", OBAMA, template, photo)
    biden_face = template("biden__biden.jpg")
    unknown = opened(registry, request(registry, "open", unissued(), biden_face))
    assert unknown.outcome == "not_verified" and unknown.household is None
    for left in (2, 1, 0):
        a = opened(registry, request(registry, "open", obama, biden_face))
        assert a.outcome == "not_verified" and a.attempts_left == left and a.household is None
    right = opened(registry, request(registry, "open", obama, template("obama__obama2.jpg")))
    assert right.outcome == "refused" and right.household is None
    not_live = opened(
        registry, request(registry, "open", unissued(), template("obama__obama2.jpg"), live=False)
    )
    assert not_live.outcome == "not_verified"


# ---------------------------------------------------------------------------- the form
def draft(**kw: Any) -> Draft:
    values: dict[str, Any] = {
        "rows": [Row("", "٤٤", "declarant"), Row("", "", ""), Row("", "", "")],
        "housing": "apartment",
        "rooms": " 3 ",
        "area": "urban",
        "region": "6",
        "occupation": "private_employee",
        "expenses": {"electricity": "250", "water": "80,5", "telecom": "", "butane": "60"},
        "goods": {"fridge", "television"},
    }
    values.update(kw)
    return Draft(**values)


DECLARANT = "123456789" + verhoeff_digit("123456789")


def test_the_form_becomes_a_declaration_with_yearly_amounts() -> None:
    d = parse(draft(), DECLARANT)
    assert d.declarant.idcs == DECLARANT and d.declarant.age == 44  # Arabic-Indic digits
    assert len(d.members) == 1  # blank rows are ignored
    assert d.expenses.electricity == 3000 and d.expenses.water == 966 and d.expenses.telecom == 0
    assert d.rooms == 3 and d.region.value == 6
    back = Draft.of(d)
    assert back.expenses["electricity"] == "250" and back.rooms == "3"
    assert parse(back, DECLARANT) == d


@pytest.mark.parametrize(
    ("change", "problem", "where"),
    [
        ({"rows": [Row("", "17", "declarant")]}, Problem.HOUSEHOLD_DECLARANT_MINOR, "member-0-age"),
        ({"rows": [Row("", "", "declarant")]}, Problem.HOUSEHOLD_BAD_AGE, "member-0-age"),
        (
            {"rows": [Row("", "40", ""), Row("1234567899", "9", "child")]},
            Problem.HOUSEHOLD_BAD_MEMBER,
            "member-1-idcs",
        ),
        (
            {"rows": [Row("", "40", ""), Row(DECLARANT, "9", "child")]},
            Problem.HOUSEHOLD_BAD_MEMBER,
            "members",
        ),
        (
            {"rows": [Row("", "40", ""), Row(unissued(), "9", "")]},
            Problem.HOUSEHOLD_INCOMPLETE,
            "member-1-relation",
        ),
        ({"rooms": "0"}, Problem.HOUSEHOLD_BAD_ROOMS, "rooms"),
        ({"housing": ""}, Problem.HOUSEHOLD_INCOMPLETE, "housing"),
        ({"region": "13"}, Problem.HOUSEHOLD_INCOMPLETE, "region"),
        (
            {"expenses": {"electricity": "deux cents"}},
            Problem.HOUSEHOLD_BAD_AMOUNT,
            "expense-electricity",
        ),
        ({"expenses": {"water": "-5"}}, Problem.HOUSEHOLD_BAD_AMOUNT, "expense-water"),
        ({"goods": {"yacht"}}, Problem.HOUSEHOLD_INCOMPLETE, "goods"),
    ],
)
def test_a_wrong_field_is_named(change: dict[str, Any], problem: Problem, where: str) -> None:
    with pytest.raises(DraftError) as info:
        parse(draft(**change), DECLARANT)
    assert info.value.code == problem and info.value.where == where
