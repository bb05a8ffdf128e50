"""The social registry's (RSU) central domain: households and members by IDCS, declaration
versions, partner data, decisions with their versions, appeals and their clocks, resumable
re-score jobs, encryption at rest, the audit of views and changes, and access by role."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from helpers import KEY, REGISTRY_ENV, registry_sessions, settings_for
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from central_api import cli
from central_api.audit.models import AuditEvent
from central_api.audit.service import events_for
from central_api.crypto import FieldCipher
from central_api.db import transaction, utcnow
from central_api.identity.models import Person
from central_api.identity.service import issue_person
from central_api.operators import service as ops
from central_api.operators.models import Operator
from central_api.rsu import notices, service
from central_api.rsu.exceptions import (
    AppealNotAllowed,
    AppealStateConflict,
    AppealTooLate,
    PersonInAnotherHousehold,
    PersonNotRegistered,
)
from central_api.rsu.feeds import SimulatedUtilityFeed, UtilityFeed
from central_api.rsu.models import (
    DeclarationVersion,
    EligibilityDecision,
    Household,
    HouseholdMember,
    Notice,
    RescoreJob,
)
from central_api.rsu.schemas import AppealIn, AppealMove, AppealState, HouseholdDeclaration
from central_api.rsu.scoring import Relation

CIPHER = FieldCipher(base64.b64decode(KEY))
SCORER = service.default_scorer()
OCCUPATION = "private_employee"  # the "middle" household's: looked for in the raw database
MIDDLE_BUTANE = 837.25  # a declared amount looked for in the raw database


@pytest.fixture
def db(db_url: str) -> Iterator[sessionmaker[Session]]:
    with registry_sessions(db_url) as factory:
        yield factory


def people(factory: sessionmaker[Session], url: str, n: int) -> list[str]:
    """``n`` new persons of the register; their IDCS."""
    policy = settings_for(url).idcs_policy()
    with transaction(factory) as s:
        return [issue_person(s, policy, "test").idcs for _ in range(n)]


def declaration(
    idcs: list[str], kind: str = "middle", electricity: float = 2000
) -> HouseholdDeclaration:
    """A household of ``idcs`` (the first the declarant): ``poor`` (eligible for both
    programmes), ``rich`` (for neither) or ``middle`` (about 9.87 at 2,000 MAD of electricity:
    above the direct-aid threshold 9.743, below it with 500 MAD)."""
    members = [{"idcs": idcs[0], "age": 41, "relation": "declarant"}] + [
        {"idcs": i, "age": 9 + k, "relation": "child"} for k, i in enumerate(idcs[1:])
    ]
    if kind == "poor":
        body: dict[str, Any] = {
            "housing": "rural_dwelling",
            "rooms": 2,
            "area": "rural",
            "region": 7,
            "occupation": "casual_worker",
            "expenses": {"electricity": 300, "water": 100, "telecom": 200, "butane": 600},
        }
    elif kind == "rich":
        body = {
            "housing": "villa",
            "rooms": 6,
            "area": "urban",
            "region": 7,
            "occupation": "employer",
            "expenses": {"electricity": 9000, "water": 3000, "telecom": 6000, "butane": 1200},
            "goods": ["fridge", "television", "car", "computer", "air_conditioner"],
        }
    else:
        body = {
            "housing": "modern_house",
            "rooms": 3,
            "area": "urban",
            "region": 7,
            "occupation": OCCUPATION,
            "expenses": {
                "electricity": electricity,
                "water": 900,
                "telecom": 1500,
                "butane": MIDDLE_BUTANE,
            },
            "goods": ["fridge", "television"],
        }
    return HouseholdDeclaration.model_validate({"members": members, **body})


def declare(
    factory: sessionmaker[Session], decl: HouseholdDeclaration, **kw: Any
) -> service.DeclarationReceipt:
    with transaction(factory) as s:
        return service.declare(s, CIPHER, SCORER, decl, "test", **kw)


def eligible(receipt: service.DeclarationReceipt) -> dict[str, bool]:
    return {d.programme.value: d.eligible for d in receipt.decisions}


def test_declarations_are_versions_never_overwritten(db, db_url):
    idcs = people(db, db_url, 4)
    first = declare(db, declaration(idcs))
    assert service.valid_reference(first.reference) and first.version == 1
    assert not service.valid_reference(
        first.reference[:-1] + ("0" if first.reference[-1] != "0" else "1")
    )
    second = declare(db, declaration(idcs[:3], electricity=500), reference=first.reference)
    assert (second.reference, second.version) == (first.reference, 2)
    with transaction(db) as s:
        h = s.scalar(select(Household).where(Household.reference == first.reference))
        assert h is not None and h.current_version == 2
        rows = s.scalars(select(DeclarationVersion).where(DeclarationVersion.household_id == h.id))
        assert sorted(r.version for r in rows) == [1, 2]
        v1 = service.read_declaration(s, CIPHER, h, 1)
        assert v1 == declaration(idcs)  # the first version as declared, untouched
        assert service.read_declaration(s, CIPHER, h, 2).expenses.electricity == 500
        versions = service.list_versions(s, first.reference, "test")
        assert [v.version for v in versions] == [1, 2]
        # the member no longer declared left the household; the others stayed
        left = s.scalar(
            select(HouseholdMember)
            .join(Person, Person.id == HouseholdMember.person_id)
            .where(Person.idcs == idcs[3])
        )
        assert left is not None and left.until is not None and left.ended_by == "declaration"
        by_version = {d.declaration_version for d in s.scalars(select(EligibilityDecision))}
        assert by_version == {1, 2}


def test_every_member_must_hold_an_idcs(db, db_url):
    idcs = people(db, db_url, 1)
    with pytest.raises(PersonNotRegistered, match="not in the population register"):
        declare(db, declaration([idcs[0], "0000000000"]))
    with db() as s:  # nothing of the refused declaration stayed
        assert s.scalar(select(func.count()).select_from(Household)) == 0
        assert s.scalar(select(func.count()).select_from(HouseholdMember)) == 0
    with pytest.raises(ValueError, match="adult"):
        HouseholdDeclaration.model_validate(
            {
                **declaration(idcs).model_dump(),
                "members": [{"idcs": idcs[0], "age": 15, "relation": "declarant"}],
            }
        )


def test_one_person_in_one_household_and_transfers_keep_history(db, db_url):
    a1, a2, b1 = people(db, db_url, 3)
    a = declare(db, declaration([a1, a2], "poor"))
    b = declare(db, declaration([b1], "rich"))
    with pytest.raises(PersonInAnotherHousehold, match="one person is in one household"):
        declare(db, declaration([b1, a2], "rich"), reference=b.reference)
    with pytest.raises(PersonInAnotherHousehold):  # nor a new household with them
        declare(db, declaration([a2], "rich"))
    with transaction(db) as s:
        service.transfer_member(s, a2, b.reference, Relation.CHILD, "test")
    again = declare(db, declaration([b1, a2], "rich"), reference=b.reference)
    assert again.version == 2
    with transaction(db) as s:
        history = service.memberships(s, a2, "test")
        homes = {h.id: h.reference for h in s.scalars(select(Household))}
        assert [homes[m.household_id] for m in history] == [a.reference, b.reference]
        assert history[0].until is not None and history[0].ended_by == "transfer"
        assert history[1].until is None
        # the database itself refuses a second open membership (the partial unique index)
        person_id = s.scalar(select(Person.id).where(Person.idcs == a2))
        a_id = s.scalar(select(Household.id).where(Household.reference == a.reference))
        s.add(
            HouseholdMember(
                household_id=a_id, person_id=person_id, relation="child", since=utcnow()
            )
        )
        with pytest.raises(IntegrityError):
            s.flush()
        s.rollback()


def test_partner_data_rescores_and_are_taken_once(db, db_url):
    idcs = people(db, db_url, 4)
    receipt = declare(db, declaration(idcs, electricity=500))
    assert eligible(receipt) == {"amo_tadamon": False, "asd": True}
    feed = SimulatedUtilityFeed()
    assert isinstance(feed, UtilityFeed)
    today = utcnow().date()
    record = feed.bill(receipt.reference, "electricity", 4000, today - timedelta(days=10))
    feed.bill(idcs[1], "telecom", 300, today - timedelta(days=3), key_kind="member")
    feed.bill("RSU-00000-00000", "water", 100, today)  # nobody's
    with transaction(db) as s:
        result = service.ingest_feed(s, CIPHER, SCORER, feed, "feed:sim")
    assert (result.stored, result.duplicates, result.unmatched) == (3, 0, 1)
    assert result.rescored == [receipt.reference] and result.changed == [receipt.reference]
    with transaction(db) as s:
        again = service.ingest(s, CIPHER, SCORER, feed.name, [record], "feed:sim")
        assert (again.stored, again.duplicates, again.rescored) == (0, 1, [])
        view = service.view_household(s, CIPHER, SCORER, receipt.reference, "test")
    asd = next(d for d in view.decisions if d.programme.value == "asd")
    assert asd.reason == "partner_data" and not asd.eligible and asd.changed
    with db() as s:
        row = s.get(EligibilityDecision, asd.id)
        assert row is not None and len(row.inputs["partner_records"]) == 2


def test_decisions_record_versions_and_recompute_identically(db, db_url, tmp_path):
    idcs = people(db, db_url, 3)
    receipt = declare(db, declaration(idcs))
    assert {d.threshold_version for d in receipt.decisions} == {"amo_tadamon-2022.1", "asd-2023.1"}
    assert {d.model_version for d in receipt.decisions} == {"pmt-illustrative-2026.1"}
    # thresholds change: a bulk re-score under the new version; the old decisions still
    # recompute to the same score with their own versions
    with transaction(db) as s:
        job = service.start_rescore(
            s, model_source="pmt-illustrative-2026.1", actor="test", thresholds=new_thresholds()
        )
    done = service.run_rescore(db, CIPHER, job.id, "test")
    assert done.state == "done" and done.threshold_versions == ["amo_tadamon-2022.1", "asd-2027.1"]
    scorer = service.Scorer(SCORER.model, service.scoring.parse_thresholds(new_thresholds()))
    with transaction(db) as s:
        for row in s.scalars(select(EligibilityDecision)):
            stored, again = service.recompute(s, CIPHER, scorer, row.id)
            assert stored == again
            assert stored.model_version == row.model_version
            assert stored.threshold_version == row.threshold_version
        old = receipt.decisions[0]
        stored, _ = service.recompute(s, CIPHER, scorer, old.id)
        assert stored.score == old.score and stored.threshold_version == old.threshold_version


def new_thresholds() -> dict[str, Any]:
    """The bundled thresholds and a new direct-aid version (10.0) in force since 2026."""
    data = service.bundled_thresholds_data()
    data["thresholds"].append(
        {
            "programme": "asd",
            "version": "asd-2027.1",
            "value": 10.0,
            "effective_from": "2026-01-01",
            "source": "test: a revised threshold",
        }
    )
    return data


def test_appeal_windows(db, db_url):
    idcs = people(db, db_url, 4)
    receipt = declare(db, declaration(idcs))
    rejected = next(d for d in receipt.decisions if not d.eligible)
    at = rejected.computed_at
    with transaction(db) as s, pytest.raises(AppealTooLate, match="15 days"):
        service.submit_appeal(
            s,
            CIPHER,
            receipt.reference,
            AppealIn(decision_id=rejected.id),
            "test",
            now=at + timedelta(days=15, seconds=1),
        )
    with transaction(db) as s:
        appeal = service.submit_appeal(
            s,
            CIPHER,
            receipt.reference,
            AppealIn(decision_id=rejected.id, grounds="the water bill was counted twice"),
            "test",
            now=at + timedelta(days=14),
        )
    assert appeal.state is AppealState.SUBMITTED
    assert appeal.answer_due == at + timedelta(days=44)
    with transaction(db) as s, pytest.raises(AppealNotAllowed, match="still open"):
        service.submit_appeal(
            s,
            CIPHER,
            receipt.reference,
            AppealIn(decision_id=rejected.id),
            "test",
            now=at + timedelta(days=14),
        )
    with transaction(db) as s:
        assert service.overdue_appeals(s, CIPHER, "test", now=at + timedelta(days=44)) == []
        late = service.overdue_appeals(s, CIPHER, "test", now=at + timedelta(days=45))
        assert [a.id for a in late] == [appeal.id] and late[0].overdue
        with pytest.raises(AppealStateConflict):
            service.move_appeal(s, CIPHER, appeal.id, AppealMove(state=AppealState.UPHELD), "test")
        service.move_appeal(
            s, CIPHER, appeal.id, AppealMove(state=AppealState.UNDER_REVIEW), "test"
        )
        done = service.move_appeal(
            s,
            CIPHER,
            appeal.id,
            AppealMove(state=AppealState.CORRECTED, answer="declaration to be corrected"),
            "test",
            now=at + timedelta(days=20),
        )
        assert done.answered_at is not None and not done.overdue
        shown = service.list_appeals(s, CIPHER, receipt.reference, "test")
        assert shown[0].grounds == "the water bill was counted twice"
        assert service.overdue_appeals(s, CIPHER, "test", now=at + timedelta(days=60)) == []
    poor = declare(db, declaration(people(db, db_url, 6), "poor"))
    granted = poor.decisions[0]
    assert granted.eligible
    with transaction(db) as s, pytest.raises(AppealNotAllowed, match="only a rejection"):
        service.submit_appeal(s, CIPHER, poor.reference, AppealIn(decision_id=granted.id), "test")


def test_notices_tell_a_household_what_changed_once(db, db_url, tmp_path):
    """An eligibility changed by partner data and an appeal answered each queue a notice
    (a declaration's own decisions do not: the citizen saw them); the gateway gets each once,
    in the household's language, with nothing but the reference and what happened."""
    idcs = people(db, db_url, 4)
    receipt = declare(db, declaration(idcs, electricity=500))
    with db() as s:
        assert service.pending_notices(s) == []
        s.get(Household, 1).language = "ar"  # type: ignore[union-attr]
        s.commit()
    feed = SimulatedUtilityFeed()
    feed.bill(receipt.reference, "electricity", 4000, utcnow().date() - timedelta(days=5))
    feed.bill(idcs[1], "telecom", 300, utcnow().date() - timedelta(days=3), key_kind="member")
    with transaction(db) as s:
        assert service.ingest_feed(s, CIPHER, SCORER, feed, "feed:sim").changed
    rejected = next(d for d in service_decisions(db, receipt.reference) if not d.eligible)
    with transaction(db) as s:
        appeal = service.submit_appeal(
            s, CIPHER, receipt.reference, AppealIn(decision_id=rejected.id), "test"
        )
        for state in (AppealState.UNDER_REVIEW, AppealState.UPHELD):
            service.move_appeal(s, CIPHER, appeal.id, AppealMove(state=state), "test")
    with db() as s:
        pending = [m for _, m in service.pending_notices(s)]
    assert [(m.kind, m.programme, m.eligible, m.outcome) for m in pending] == [
        ("eligibility_changed", service.scoring.Programme.ASD, False, None),
        ("appeal_answered", None, None, "upheld"),
    ]
    assert "لم تعد أسرتك مؤهلة" in pending[0].text and "الإدارات الشريكة" in pending[0].text
    out = tmp_path / "gateway.jsonl"
    assert service.deliver_notices(db, notices.JsonLinesNotifier(out), "test") == 2
    assert service.deliver_notices(db, notices.JsonLinesNotifier(out), "test") == 0
    lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [line["reference"] for line in lines] == [receipt.reference] * 2
    assert lines[1]["text"].endswith("القرار قائم.")
    assert all(i not in out.read_text() for i in idcs)  # no IDCS leaves with a notice
    with db() as s:
        rows = list(s.scalars(select(Notice)))
        assert {(n.channel, n.delivered_at is not None) for n in rows} == {("file", True)}
        delivered = [e for e in events_for(s, "rsu_household", 1) if "notice" in e.action]
        assert len(delivered) == 2


def service_decisions(db: sessionmaker[Session], reference: str) -> list[Any]:
    with transaction(db) as s:
        return service.view_household(s, CIPHER, SCORER, reference, "test").decisions


class Crash(RuntimeError):
    pass


def test_rescore_job_resumes_after_a_crash_without_double_counting(db, db_url, monkeypatch):
    households = []
    for k, electricity in enumerate([300, 500, 1000, 2000, 3000, 6000, 12000]):
        idcs = people(db, db_url, 4)
        kind = "poor" if k == 0 else "middle"
        households.append(declare(db, declaration(idcs, kind, electricity=electricity)))
    before = {r.reference: eligible(r)["asd"] for r in households}
    with transaction(db) as s:
        job_id = service.start_rescore(
            s,
            model_source="pmt-illustrative-2026.1",
            actor="test",
            thresholds=new_thresholds(),
            batch=2,
        ).id

    seen: list[int] = []

    def crash_after_two(p: service.RescoreSummary) -> None:
        seen.append(p.batches)
        if p.batches == 2:
            raise Crash("killed after batch 2")

    with pytest.raises(Crash):
        service.run_rescore(db, CIPHER, job_id, "test", progress=crash_after_two)
    with db() as s:
        job = s.get(RescoreJob, job_id)
        assert job is not None and (job.batches, job.processed, job.state) == (2, 4, "running")

    real = service._evaluate_many

    def crash_mid_batch(*args: Any, **kw: Any) -> Any:
        real(*args, **kw)  # batch 3's decisions are written, then it dies: it rolls back whole
        raise Crash("killed inside batch 3")

    monkeypatch.setattr(service, "_evaluate_many", crash_mid_batch)
    with pytest.raises(Crash):
        service.run_rescore(db, CIPHER, job_id, "test")
    monkeypatch.setattr(service, "_evaluate_many", real)
    with db() as s:
        job = s.get(RescoreJob, job_id)
        assert job is not None and (job.batches, job.processed) == (2, 4)
        assert s.scalar(select(func.count()).where(EligibilityDecision.job_id == job_id)) == 8

    done = service.run_rescore(db, CIPHER, job_id, "test")
    assert (done.state, done.processed, done.batches) == ("done", 7, 4)
    after = {}
    with db() as s:
        rows = s.execute(
            select(Household.reference, EligibilityDecision.programme, func.count())
            .join(Household, Household.id == EligibilityDecision.household_id)
            .where(EligibilityDecision.job_id == job_id)
            .group_by(Household.reference, EligibilityDecision.programme)
        ).all()
        assert len(rows) == 14 and all(n == 1 for *_, n in rows)  # one per household, programme
        changes = service.changed_by_job(s, job_id)
        for ref, programme, now_eligible in changes:
            if programme == "asd":
                after[ref] = now_eligible
    scores = {r.reference: r.decisions[0].score for r in households}
    expected = {ref for ref, was in before.items() if not was and scores[ref] <= 10.0}
    assert set(after) == expected and all(after.values()) and expected
    assert done.changed == len(expected) and done.became_eligible == len(expected)
    assert done.lost_eligibility == 0


def test_household_data_is_encrypted_at_rest(db, db_url):
    idcs = people(db, db_url, 3)
    receipt = declare(db, declaration(idcs))
    feed = SimulatedUtilityFeed()
    feed.bill(receipt.reference, "water", 1234.5, utcnow().date())
    with transaction(db) as s:
        service.ingest_feed(s, CIPHER, SCORER, feed, "feed:sim")
        service.submit_appeal(
            s,
            CIPHER,
            receipt.reference,
            AppealIn(decision_id=receipt.decisions[0].id, grounds="grounds-in-clear-text"),
            "test",
        )
    secrets_ = [OCCUPATION, str(MIDDLE_BUTANE), "1234.5", "grounds-in-clear-text"]
    score_text = f"{receipt.decisions[0].score:.7f}".rstrip("0")
    with db() as s:
        names = [
            "rsu_households",
            "rsu_members",
            "rsu_declarations",
            "rsu_partner_records",
            "rsu_decisions",
            "rsu_appeals",
            "audit_events",
        ]
        dump = "".join(repr(list(s.execute(text(f"SELECT * FROM {name}")).all())) for name in names)
    for value in [*secrets_, score_text]:
        assert value not in dump, value
    if db_url.startswith("sqlite"):
        path = Path(db_url.removeprefix("sqlite:///"))
        raw = b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))
        for value in secrets_:
            assert value.encode() not in raw, value


def test_audit_rows_for_changes_and_views(db, db_url):
    idcs = people(db, db_url, 2)
    receipt = declare(db, declaration(idcs))
    with transaction(db) as s:
        service.view_household(s, CIPHER, SCORER, receipt.reference, "agent.amal", "ar")
        service.list_versions(s, receipt.reference, "agent.amal")
        service.view_version(s, CIPHER, receipt.reference, 1, "agent.amal")
        service.list_decisions(s, CIPHER, receipt.reference, "agent.amal")
        hid = s.scalar(select(Household.id).where(Household.reference == receipt.reference))
    with db() as s:
        events = events_for(s, "rsu_household", hid)
        actions = [(e.actor, e.action) for e in events]
        for action in ("rsu.household.created", "rsu.member.joined", "rsu.declared", "rsu.decided"):
            assert ("test", action) in actions
        for action in (
            "rsu.household.viewed",
            "rsu.versions.viewed",
            "rsu.declaration.viewed",
            "rsu.decisions.viewed",
        ):
            assert ("agent.amal", action) in actions
        details = json.dumps([e.details for e in s.scalars(select(AuditEvent))])
    for value in (*idcs, OCCUPATION, receipt.reference):
        assert value not in details


def test_status_explains_in_the_citizens_language(db, db_url):
    receipt = declare(db, declaration(people(db, db_url, 4)))
    with transaction(db) as s:
        fr = service.view_household(s, CIPHER, SCORER, receipt.reference, "test", "fr")
        ar = service.view_household(s, CIPHER, SCORER, receipt.reference, "test", "ar")
    assert fr.explanation is not None and ar.explanation is not None
    shown = f"{fr.decisions[0].score:.3f}".replace(".", ",")
    assert shown in fr.explanation.text and fr.explanation.top
    assert fr.explanation.text != ar.explanation.text
    assert {d.programme.value for d in fr.decisions} == {"amo_tadamon", "asd"}


def sign_in(registry, who: str, role: str) -> str:  # type: ignore[no-untyped-def]
    reg = registry.app.state.registry
    with transaction(reg.sessions) as s:
        ops.add_operator(s, reg.cipher, who, role, "test", password="a-long-password-1")
        op = s.get(Operator, who)
        assert op is not None
        op.must_change_password = False
        s.flush()
        token, _ = ops.open_session(s, who)
    return token


def test_router_access_by_role(registry, db_url):
    with registry_sessions(db_url) as factory:
        receipt = declare(factory, declaration(people(factory, db_url, 3)))
    client = registry.client
    path = f"/v1/rsu/households/{receipt.reference}"
    agent = {"Authorization": f"Bearer {sign_in(registry, 'rsu.amal', 'rsu_agent')}"}
    judge = {"Authorization": f"Bearer {sign_in(registry, 'adj.karim', 'adjudicator')}"}
    assert client.get(path).status_code == 401
    refused = client.get(path, headers=judge)
    assert refused.status_code == 403 and refused.json()["code"] == "forbidden"
    r = client.get(path, headers=agent, params={"lang": "fr"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["reference"] == receipt.reference and body["explanation"]["language"] == "fr"
    assert client.get(path + "/versions", headers=agent).json()[0]["version"] == 1
    content = client.get(path + "/versions/1", headers=agent).json()
    assert content["declaration"]["occupation"] == OCCUPATION
    decisions = client.get(path + "/decisions", headers=agent).json()
    rejected = next(d for d in decisions if not d["eligible"])
    filed = client.post(path + "/appeals", headers=agent, json={"decision_id": rejected["id"]})
    assert filed.status_code == 201, filed.text
    moved = client.post(
        f"/v1/rsu/appeals/{filed.json()['id']}/state", headers=agent, json={"state": "upheld"}
    )
    assert moved.status_code == 409 and moved.json()["code"] == "conflict"
    assert client.post(path + "/appeals", headers=judge, json={"decision_id": 1}).status_code == 403
    # the console's cookie works too, a change then needs the session's CSRF token
    cookie = {"Cookie": f"rnp_console={agent['Authorization'].removeprefix('Bearer ')}"}
    assert client.get(path + "/appeals", headers=cookie).status_code == 200
    no_csrf = client.post(
        f"/v1/rsu/appeals/{filed.json()['id']}/state",
        headers=cookie,
        json={"state": "under_review"},
    )
    assert no_csrf.status_code == 403
    assert client.get("/v1/rsu/households/RSU-00000-0000", headers=agent).status_code == 422
    with registry_sessions(db_url) as factory, factory() as s:
        viewed = s.scalars(
            select(AuditEvent.action).where(AuditEvent.actor == "console:rsu.amal")
        ).all()
        assert {"rsu.household.viewed", "rsu.versions.viewed", "rsu.declaration.viewed"} <= set(
            viewed
        )
        assert "rsu.appeal.submitted" in viewed
        assert not s.scalars(
            select(AuditEvent).where(AuditEvent.actor == "console:adj.karim")
        ).all()


def test_console_pages_for_rsu_agents(registry, db_url):
    """An RSU agent opens a household in the console (members, decisions with their versions,
    the explanation in the language chosen, a declaration version), files an appeal for the
    citizen and answers it, moves a person in from another household; an adjudicator may not
    open the page; every view is audited."""
    import re

    with registry_sessions(db_url) as factory:
        receipt = declare(factory, declaration(people(factory, db_url, 3)))
    client = registry.client
    client.cookies.set("rnp_console", sign_in(registry, "rsu.sara", "rsu_agent"))
    assert client.get("/console/", follow_redirects=False).headers["location"] == "/console/rsu"
    home = client.get("/console/rsu")
    assert home.status_code == 200 and "past their 30-day answer date" in home.text
    page = client.get(f"/console/rsu?reference={receipt.reference.lower()}")
    assert page.status_code == 200 and f"Household {receipt.reference}" in page.text
    assert 'data-eligible="no"' in page.text and "pmt-illustrative-2026.1" in page.text
    arabic = client.get(f"/console/rsu/households/{receipt.reference}?lang=ar&version=1")
    assert 'lang="ar"' in arabic.text and "Version 1 as declared" in arabic.text
    assert OCCUPATION.replace("_", " ") in arabic.text
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert csrf is not None
    rejected = next(d for d in receipt.decisions if not d.eligible)
    filed = client.post(
        f"/console/rsu/households/{receipt.reference}/appeals",
        data={"csrf": csrf.group(1), "decision_id": rejected.id, "grounds": "bill counted twice"},
    )
    assert filed.status_code == 200 and "filed" in filed.text and "bill counted twice" in filed.text
    appeal_id = re.search(r'action="/console/rsu/appeals/(\d+)/state"', filed.text)
    assert appeal_id is not None
    for state in ("under_review", "corrected"):
        moved = client.post(
            f"/console/rsu/appeals/{appeal_id.group(1)}/state",
            data={"csrf": csrf.group(1), "reference": receipt.reference, "state": state},
        )
        assert moved.status_code == 200 and state in moved.text
    again = client.post(  # the state machine refuses, the page says why
        f"/console/rsu/appeals/{appeal_id.group(1)}/state",
        data={"csrf": csrf.group(1), "reference": receipt.reference, "state": "upheld"},
    )
    assert "cannot become upheld" in again.text
    # someone of another household moves in: the history stays
    with registry_sessions(db_url) as factory:
        mover, other = people(factory, db_url, 2)
        elsewhere = declare(factory, declaration([other, mover], "poor"))
    moved_in = client.post(
        f"/console/rsu/households/{receipt.reference}/transfer",
        data={"csrf": csrf.group(1), "idcs": mover, "relation": "sibling"},
    )
    assert moved_in.status_code == 200 and "member moved in" in moved_in.text
    assert f"<td>{mover}</td><td>sibling</td>" in moved_in.text
    twice = client.post(
        f"/console/rsu/households/{receipt.reference}/transfer",
        data={"csrf": csrf.group(1), "idcs": mover, "relation": "sibling"},
    )
    assert "already a member" in twice.text
    with registry_sessions(db_url) as factory, factory() as s:
        history = service.memberships(s, mover, "test")
        assert [m.until is None for m in history] == [False, True]
        assert history[0].ended_by == "transfer"
    assert elsewhere.reference not in moved_in.text
    forged = client.post(
        f"/console/rsu/households/{receipt.reference}/appeals",
        data={"csrf": "forged", "decision_id": rejected.id},
    )
    assert forged.status_code == 403
    client.cookies.set("rnp_console", sign_in(registry, "adj.omar", "adjudicator"))
    assert client.get(f"/console/rsu/households/{receipt.reference}").status_code == 403
    with registry_sessions(db_url) as factory, factory() as s:
        seen = s.scalars(
            select(AuditEvent.action).where(AuditEvent.actor == "console:rsu.sara")
        ).all()
    assert {"rsu.household.viewed", "rsu.declaration.viewed", "rsu.appeal.moved"} <= set(seen)


def test_the_model_and_thresholds_in_force_come_from_the_settings(
    registry_factory, db_url, tmp_path
):
    """``CENTRAL_RSU_THRESHOLDS_FILE`` names the thresholds new decisions use (here a revised
    direct-aid threshold of 10.0 from 2026); a file that is not a threshold file stops the
    registry at start, with the setting's name."""
    from central_api.config import ConfigError
    from central_api.main import create_app
    from central_api.rsu.router import scorer

    bad = tmp_path / "bad.json"
    bad.write_text('{"thresholds": []}')
    with pytest.raises(ConfigError, match="CENTRAL_RSU_MODEL / CENTRAL_RSU_THRESHOLDS_FILE"):
        create_app(settings_for(db_url, rsu_thresholds_file=str(bad)))
    with pytest.raises(ConfigError, match="CENTRAL_RSU_MODEL"):
        create_app(settings_for(db_url, rsu_model="pmt-no-such-model"))
    revised = tmp_path / "revised.json"
    revised.write_text(json.dumps(new_thresholds()))
    registry = registry_factory(rsu_thresholds_file=str(revised))
    in_force = scorer(registry.app.state.registry).thresholds.in_force("asd", utcnow().date())
    assert in_force.version == "asd-2027.1" and in_force.value == 10.0
    assert (
        scorer(registry_factory().app.state.registry)
        .thresholds.in_force("asd", utcnow().date())
        .version
        == "asd-2023.1"
    )  # the bundled file by default


def test_cli_rescore_prints_counts(db, db_url, monkeypatch, capsys, tmp_path):
    references = [
        declare(db, declaration(people(db, db_url, 4), electricity=electricity)).reference
        for electricity in (1000, 2000)
    ]
    for k, v in {**REGISTRY_ENV, "CENTRAL_DATABASE_URL": db_url}.items():
        monkeypatch.setenv(k, v)
    thresholds = tmp_path / "thresholds.json"
    thresholds.write_text(json.dumps(new_thresholds()))
    args = ["rsu-rescore", "--model", "pmt-illustrative-2026.1", "--thresholds", str(thresholds)]
    changed = tmp_path / "changed.csv"
    assert cli.main([*args, "--batch", "1", "--changed", str(changed)]) == 0
    out, err = capsys.readouterr()
    summary = json.loads(out)
    assert summary["processed"] == 2 and summary["changed"] == 2
    assert summary["changes"] == {"asd:now_eligible": 2}
    assert "2/2 households" in err and "100.0%" in err
    header, *rows = changed.read_text().splitlines()
    assert header == "reference,programme,eligible_now"
    assert sorted(rows) == sorted(f"{ref},asd,1" for ref in references)
    assert cli.main(["rsu-rescore", "--resume", str(summary["id"])]) == 2  # finished already


def test_rescore_job_resumes_after_kill_9(db, db_url, tmp_path):
    """``central-api rsu-rescore`` killed with SIGKILL mid-job, then resumed: every household
    re-scored exactly once."""
    import os
    import re
    import signal
    import subprocess
    import sys

    n = 60
    with transaction(db) as s:
        for k in range(n):
            idcs = [
                issue_person(s, settings_for(db_url).idcs_policy(), "test").idcs for _ in range(2)
            ]
            service.declare(s, CIPHER, SCORER, declaration(idcs, electricity=500 + 100 * k), "test")
    thresholds = tmp_path / "thresholds.json"
    thresholds.write_text(json.dumps(new_thresholds()))
    cmd = [sys.executable, "-m", "central_api.cli", "--log-level", "warning", "rsu-rescore"]
    cmd += ["--model", "pmt-illustrative-2026.1", "--thresholds", str(thresholds), "--batch", "1"]
    env = {**os.environ, **REGISTRY_ENV, "CENTRAL_DATABASE_URL": db_url}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    seen = b""
    while not re.search(rb" ([3-9]|\d\d)/60 households", seen):  # the progress bar
        chunk = os.read(proc.stderr.fileno(), 256)
        assert chunk, seen
        seen += chunk
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    match = re.search(rb"re-score job (\d+)", seen)
    assert match is not None
    job_id = int(match.group(1))
    with db() as s:
        job = s.get(RescoreJob, job_id)
        assert job is not None and job.state == "running" and 3 <= job.processed < n
        assert s.scalar(select(func.count()).where(EligibilityDecision.job_id == job_id)) == (
            2 * job.processed
        )
    done = service.run_rescore(db, CIPHER, job_id, "test")
    assert (done.state, done.processed) == ("done", n)
    with db() as s:
        assert s.scalar(select(func.count()).where(EligibilityDecision.job_id == job_id)) == 2 * n
        changed = {ref for ref, *_ in service.changed_by_job(s, job_id)}
    assert done.changed == len(changed)
