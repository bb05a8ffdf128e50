"""RSU proxy-means scoring: exact additivity, the monotonicity the illustrative coefficients
guarantee, vectorised == one by one, versioned models and thresholds, partner data, strict
model files, explanations in four languages (hypothesis). Pure: no database, fast."""

from __future__ import annotations

import json
import math
import shutil
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from central_api.exceptions import InternalError
from central_api.rsu import scoring as rsu
from central_api.rsu.scoring import (
    DATA_DIR,
    LABELS,
    SCALE,
    VARIABLES,
    Area,
    Declaration,
    ExpenseKind,
    Expenses,
    Good,
    HousingType,
    Language,
    Member,
    ModelFileError,
    NoThresholdInForce,
    Occupation,
    PartnerData,
    PartnerRecord,
    Programme,
    Region,
    Relation,
    RSUError,
    Score,
    TableError,
    ThresholdFileError,
    decide,
    explain,
    load_model,
    load_thresholds,
    parse_model,
    parse_thresholds,
    recheck,
    score,
    score_many,
    synthetic_declarations,
    synthetic_households,
    threshold_in_force,
    to_table,
)

VERSION = "pmt-illustrative-2026.1"
MODEL = load_model(VERSION)
THRESHOLDS = load_thresholds()
TODAY = date(2026, 3, 1)
AS_OF = date(2025, 12, 31)


def model_data() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((DATA_DIR / f"{VERSION}.json").read_text("utf-8"))
    return data


def household(**overrides: Any) -> Declaration:
    """The bundled model's urban reference household, as a declaration."""
    fields: dict[str, Any] = {
        "members": (
            Member(age=41, relation=Relation.DECLARANT),
            Member(age=37, relation=Relation.SPOUSE),
            Member(age=16, relation=Relation.CHILD),
            Member(age=9, relation=Relation.CHILD),
        ),
        "housing": HousingType.MODERN_HOUSE,
        "rooms": 3,
        "area": Area.URBAN,
        "region": Region.CASABLANCA_SETTAT,
        "occupation": Occupation.PRIVATE_EMPLOYEE,
        "expenses": Expenses(electricity=1700, water=770, telecom=1500, butane=560),
        "goods": frozenset({Good.FRIDGE, Good.TELEVISION, Good.SATELLITE_DISH}),
    }
    fields.update(overrides)
    return Declaration(**fields)


# --- strategies ---

money = st.one_of(
    st.just(0.0),
    st.floats(0, 5000, allow_nan=False),
    st.floats(0, rsu.MAX_EXPENSE, allow_nan=False),
)
others = st.builds(
    Member,
    age=st.integers(0, 120),
    relation=st.sampled_from([r for r in Relation if r is not Relation.DECLARANT]),
)


@st.composite
def declarations(draw: st.DrawFn, max_others: int = 29) -> Declaration:
    declarant = Member(age=draw(st.integers(0, 120)), relation=Relation.DECLARANT)
    rest = draw(st.lists(others, max_size=max_others))
    members = [*rest]
    members.insert(draw(st.integers(0, len(rest))), declarant)
    return Declaration(
        members=tuple(members),
        housing=draw(st.sampled_from(HousingType)),
        rooms=draw(st.integers(1, 30)),
        area=draw(st.sampled_from(Area)),
        region=draw(st.sampled_from(Region)),
        occupation=draw(st.sampled_from(Occupation)),
        expenses=Expenses(**{k.value: draw(money) for k in ExpenseKind}),
        goods=frozenset(draw(st.sets(st.sampled_from(Good)))),
    )


records = st.builds(
    PartnerRecord, amount=money, source=st.sampled_from(["ONEE", "Lydec"]), as_of=st.just(AS_OF)
)
partners = st.one_of(
    st.none(),
    st.builds(
        PartnerData,
        electricity=st.none() | records,
        water=st.none() | records,
        telecom=st.none() | records,
    ),
)


# --- the model and its exact arithmetic ---


def test_bundled_model_says_it_is_illustrative():
    assert MODEL.version == VERSION and MODEL.official is False
    assert "ILLUSTRATIVE, NOT THE OFFICIAL MODEL" in MODEL.notice
    assert load_model(DATA_DIR / f"{VERSION}.json").spec == MODEL.spec  # by path = by version
    for error in (ModelFileError, rsu.ThresholdFileError, NoThresholdInForce, TableError):
        assert issubclass(error, RSUError) and issubclass(RSUError, InternalError)


@settings(max_examples=150, deadline=None)
@given(declarations(), partners)
def test_score_is_deterministic_and_contributions_add_up_exactly(d, p):
    s = score(MODEL, d, p)
    assert s == score(load_model(VERSION), d, p)  # same inputs, same model: same Score
    assert tuple(s.contribution_points) == VARIABLES
    assert sum(s.contribution_points.values()) == s.points  # exact, in integer points
    assert round(math.fsum(s.contributions.values()), rsu.DECIMALS) == s.value
    assert s.value == round(s.value, rsu.DECIMALS) and s.model_version == VERSION


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(declarations(), partners), min_size=1, max_size=40))
def test_score_many_equals_score_on_random_households(pairs):
    table = to_table([d for d, _ in pairs], [p for _, p in pairs])
    expected = [score(MODEL, d, p).value for d, p in pairs]
    assert score_many(MODEL, table).tolist() == expected


def test_score_many_equals_score_on_thousands_of_synthetic_households():
    pairs = synthetic_declarations(3000, seed=5)
    table = synthetic_households(3000, seed=5)
    rebuilt = to_table([d for d, _ in pairs], [p for _, p in pairs])
    for name, column in table.items():  # the declarations are the table's rows
        assert rebuilt[name].dtype == column.dtype
        assert np.array_equal(rebuilt[name], column, equal_nan=True), name
    one_by_one = np.array([score(MODEL, d, p).value for d, p in pairs])
    assert np.array_equal(one_by_one, score_many(MODEL, table))


# --- monotonicity: what the illustrative coefficients guarantee ---


def test_the_guarantees_rest_on_these_signs():
    for area in ("urban", "rural"):
        a = model_data()["areas"][area]
        assert a["rooms_per_capita"] >= 0
        assert all(v >= 0 for v in a["expenses"].values())
        assert all(v >= 0 for v in a["goods"].values())


@settings(max_examples=150, deadline=None)
@given(declarations(), partners, st.integers(1, 29))
def test_more_rooms_never_lowers_the_score(d, p, extra):
    more = d.model_copy(update={"rooms": min(30, d.rooms + extra)})
    assert score(MODEL, more, p).points >= score(MODEL, d, p).points


@settings(max_examples=150, deadline=None)
@given(declarations(), partners, st.sampled_from(Good))
def test_owning_another_good_never_lowers_the_score(d, p, good):
    more = d.model_copy(update={"goods": d.goods | {good}})
    assert score(MODEL, more, p).points >= score(MODEL, d, p).points


@settings(max_examples=150, deadline=None)
@given(declarations(), st.sampled_from(ExpenseKind), money)
def test_spending_more_never_lowers_the_score(d, kind, extra):
    spend = min(rsu.MAX_EXPENSE, getattr(d.expenses, kind.value) + extra)
    more = d.model_copy(update={"expenses": d.expenses.model_copy(update={kind.value: spend})})
    assert score(MODEL, more).points >= score(MODEL, d).points


@settings(max_examples=150, deadline=None)
@given(declarations(max_others=28), partners, st.integers(0, 120))
def test_another_member_with_the_same_spending_never_raises_per_capita_terms(d, p, age):
    bigger = d.model_copy(
        update={"members": (*d.members, Member(age=age, relation=Relation.OTHER_RELATIVE))}
    )
    before, after = score(MODEL, d, p), score(MODEL, bigger, p)
    per_capita = ["rooms_per_capita", *(k.value for k in ExpenseKind)]
    for name in per_capita:
        assert after.contribution_points[name] <= before.contribution_points[name], name


# --- partner data ---


def test_partner_amounts_replace_declared_ones_higher_or_lower():
    declared = household(expenses=Expenses(electricity=1000, water=770, telecom=1500, butane=560))
    for verified in (5000.0, 200.0, 0.0):
        partner = PartnerData(
            electricity=PartnerRecord(amount=verified, source="ONEE", as_of=AS_OF)
        )
        as_if_declared = household(
            expenses=Expenses(electricity=verified, water=770, telecom=1500, butane=560)
        )
        s = score(MODEL, declared, partner)
        assert s.points == score(MODEL, as_if_declared).points
        assert s.expense_sources == {
            "electricity": "ONEE",
            "water": "declared",
            "telecom": "declared",
            "butane": "declared",
        }
    nobody = PartnerData()  # a record set with no record: the declaration stands
    assert score(MODEL, declared, nobody).points == score(MODEL, declared).points


def test_partner_columns_are_optional_and_nan_means_no_record():
    pairs = synthetic_declarations(200, seed=9)
    table = to_table([d for d, _ in pairs])  # no partner data at all
    bare = {k: v for k, v in table.items() if not k.startswith("partner_")}
    assert np.array_equal(score_many(MODEL, bare), score_many(MODEL, table))
    assert score_many(MODEL, bare).tolist() == [score(MODEL, d).value for d, _ in pairs]


# --- thresholds, decisions, versions ---


def test_threshold_in_force_follows_effective_dates():
    assert threshold_in_force("asd", TODAY).value == 9.743001
    assert threshold_in_force(Programme.AMO_TADAMON, TODAY).value == 9.3264284
    assert threshold_in_force("asd", date(2023, 12, 1)).version == "asd-2023.1"
    with pytest.raises(NoThresholdInForce):
        threshold_in_force("asd", date(2023, 11, 30))
    table = parse_thresholds(revised_thresholds())
    assert table.in_force("asd", date(2026, 12, 31)).version == "asd-2023.1"
    assert table.in_force("asd", date(2027, 1, 1)).version == "asd-2027.1"
    assert table.in_force("amo_tadamon", date(2027, 1, 1)).version == "amo_tadamon-2022.1"
    # before the ASD existed, a score gets the AMO decision only
    s = score(MODEL, household())
    assert [d.programme for d in decide(s, table, date(2023, 6, 1))] == [Programme.AMO_TADAMON]
    assert [d.programme for d in decide(s, table, TODAY)] == [Programme.AMO_TADAMON, Programme.ASD]


def fixed_score(value: str) -> Score:
    points = round(float(value) * SCALE)
    return Score(VERSION, Area.URBAN, points, {"intercept": points}, {"intercept": 0}, {})


@pytest.mark.parametrize(
    ("value", "eligible", "distance"),
    [
        ("9.743", True, -0.000001),
        ("9.743001", True, 0.0),  # on the threshold: eligible (score <= threshold)
        ("9.7430011", False, 0.0000001),
        ("9.744", False, 0.000999),
    ],
)
def test_the_asd_cliff(value, eligible, distance):
    (asd,) = [d for d in decide(fixed_score(value), THRESHOLDS, TODAY) if d.programme == "asd"]
    assert asd.eligible is eligible and asd.distance == distance
    assert asd.threshold_version == "asd-2023.1" and asd.model_version == VERSION


def revised_thresholds() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((DATA_DIR / "thresholds.json").read_text("utf-8"))
    data["thresholds"].append(
        {
            "programme": "asd",
            "version": "asd-2027.1",
            "value": 9.9,
            "effective_from": "2027-01-01",
            "source": "a hypothetical revision (test)",
        }
    )
    return data


def test_a_decision_recomputes_with_its_own_versions_after_new_ones(tmp_path: Path):
    shutil.copy(DATA_DIR / f"{VERSION}.json", tmp_path)
    data = model_data()
    data["version"] = "pmt-illustrative-2027.1"
    data["areas"]["urban"]["intercept"] += 0.25
    (tmp_path / "pmt-illustrative-2027.1.json").write_text(json.dumps(data), "utf-8")
    d, p = synthetic_declarations(1, seed=3)[0]
    d = d.model_copy(update={"area": Area.URBAN})
    before = decide(score(MODEL, d, p), THRESHOLDS, TODAY)

    thresholds = parse_thresholds(revised_thresholds())  # new versions arrive
    new_model = load_model("pmt-illustrative-2027.1", directory=tmp_path)
    after = decide(score(new_model, d, p), thresholds, date(2027, 2, 1))
    assert {x.threshold_version for x in after} == {"amo_tadamon-2022.1", "asd-2027.1"}
    assert after[0].score == pytest.approx(before[0].score + 0.25, abs=1e-9)

    for old in before:  # each old decision still recomputes to itself
        assert recheck(old, d, p, thresholds=thresholds, directory=tmp_path) == old


# --- strict files ---


def broken(edit: Any) -> dict[str, Any]:
    data = model_data()
    edit(data)
    return data


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda m: m["areas"]["urban"]["goods"].update(jacuzzi=0.2), "unknown goods: jacuzzi"),
        (
            lambda m: m["areas"]["rural"]["region"].pop("dakhla_oued_ed_dahab"),
            "areas.rural.region: missing regions: dakhla_oued_ed_dahab",
        ),
        (lambda m: m["areas"]["urban"]["demography"].update(age_mean=0.1), "age_mean: unknown"),
        (lambda m: m["areas"]["urban"]["expenses"].pop("water"), "missing expense kinds: water"),
        (lambda m: m["areas"]["urban"]["housing"].pop("villa"), "missing housing types: villa"),
        (lambda m: m["areas"]["urban"]["occupation"].update(pirate=1), "unknown occupations"),
        (lambda m: m["areas"].pop("rural"), "areas.rural: Field required"),
        (lambda m: m.update(dialect="x"), "dialect: unknown variable"),
        (lambda m: m["areas"]["urban"].update(intercept="high"), "areas.urban.intercept"),
        (lambda m: m["areas"]["urban"].update(intercept=1e9), "areas.urban.intercept"),
        (lambda m: m.update(notice="coefficients"), "must say NOT THE OFFICIAL MODEL"),
        (lambda m: m.update(version="../etc"), "version"),
        (lambda m: m["areas"]["urban"]["reference"].update(region="atlantis"), "atlantis"),
    ],
)
def test_model_file_errors_say_where(edit, message):
    with pytest.raises(ModelFileError, match="is invalid") as exc:
        parse_model(broken(edit))
    assert message in str(exc.value)


def test_model_files_are_read_strictly(tmp_path: Path):
    text = (DATA_DIR / f"{VERSION}.json").read_text("utf-8")
    cases = {
        "nan.json": text.replace('"intercept": ', '"intercept": NaN, "x": ', 1),
        "dup.json": text.replace('"intercept": ', '"intercept": 1, "intercept": ', 1),
        "cut.json": text[:200],
    }
    for name, body in cases.items():
        (tmp_path / name).write_text(body, "utf-8")
        with pytest.raises(ModelFileError, match=r"not a number|duplicate keys|not JSON"):
            load_model(tmp_path / name)
    with pytest.raises(ModelFileError, match="cannot read"):
        load_model("pmt-missing-1", directory=tmp_path)
    (tmp_path / "pmt-renamed-1.json").write_text(text, "utf-8")
    with pytest.raises(ModelFileError, match="holds version"):
        load_model("pmt-renamed-1", directory=tmp_path)
    with pytest.raises(ModelFileError, match="not a model version"):
        load_model("../../etc/passwd")
    official = broken(lambda m: m.update(official=True, notice="Décret n° ..."))
    assert parse_model(official).official  # an official file drops in with no code change


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: t[0].update(value=9.32642841), "at most 7 decimals"),
        (lambda t: t[0].update(programme="ramed"), "programme"),
        (lambda t: t.append({**t[1], "value": 9.8}), "version id repeats"),
        (lambda t: t.append({**t[1], "version": "asd-x"}), "two versions from one date"),
        (lambda t: t[1].update(effective_from="2023-13-01"), "effective_from"),
    ],
)
def test_threshold_file_errors(edit, message):
    data = json.loads((DATA_DIR / "thresholds.json").read_text("utf-8"))
    edit(data["thresholds"])
    with pytest.raises(ThresholdFileError, match=message):
        parse_thresholds(data)


def test_declarations_and_tables_are_validated():
    for bad in (
        {"members": (Member(age=30, relation=Relation.SPOUSE),)},
        {"members": tuple(Member(age=30, relation=Relation.DECLARANT) for _ in range(2))},
        {"members": (Member(age=30, relation=Relation.DECLARANT),) * 31},
        {"rooms": 0},
        {"region": 13},
        {"expenses": {"electricity": -1.0}},
        {"expenses": {"water": math.inf}},
        {"goods": {"jacuzzi"}},
    ):
        with pytest.raises(ValidationError):
            household(**bad)
    with pytest.raises(ValidationError):
        Member(age=121, relation=Relation.CHILD)
    table = synthetic_households(10, seed=1)
    for edit, message in (
        (lambda t: t.pop("rooms"), "missing"),
        (lambda t: t.update(colour=t["size"]), "unknown"),
        (lambda t: t.update(region=np.full(10, 13, np.uint8)), "'region' out of range"),
        (lambda t: t.update(size=t["size"].astype(float)), "'size' must hold integers"),
        (lambda t: t.update(water=-t["water"] - 1), "'water' must be finite"),
        (lambda t: t.update(urban=t["urban"][:5]), "one length"),
        (lambda t: t.update(under_15=t["size"]), "exceeds size"),
    ):
        bad_table = dict(table)
        edit(bad_table)
        with pytest.raises(TableError, match=message):
            score_many(MODEL, bad_table)


# --- explanations ---


def test_the_reference_household_has_no_factor():
    s = score(MODEL, household())
    assert s.points == sum(MODEL.reference_contributions(Area.URBAN).values())
    e = explain(s, decide(s, THRESHOLDS, TODAY), "en")
    assert e.factors == () and e.text.endswith("No factor differs from a typical household.")


@pytest.mark.parametrize("language", list(Language))
def test_explanations_name_the_top_factors_in_each_language(language):
    richer = household(
        rooms=7,
        expenses=Expenses(electricity=9000, water=770, telecom=1500, butane=560),
        goods=frozenset({Good.FRIDGE, Good.TELEVISION, Good.SATELLITE_DISH, Good.CAR}),
    )
    s = score(MODEL, richer)
    decisions = decide(s, THRESHOLDS, TODAY)
    e = explain(s, decisions, language)
    assert [f.name for f in e.top] == ["rooms_per_capita", "electricity", "car"]
    assert sum(f.points for f in e.factors) == s.points - sum(s.reference_points.values())
    assert len(e.sentences) == len(decisions) + 1
    for f in e.top:
        assert f.label in e.sentences[-1] and f.label == LABELS[f.name][language]
    assert e.distances == {d.programme: d.distance for d in decisions}
    letters = {c for c in e.text if c.isalpha()}
    if language is Language.ZGH:  # Tifinagh only (U+2D30-U+2D7F)
        assert letters and all("\u2d30" <= c <= "\u2d7f" for c in letters)
    if language is Language.AR:
        assert letters and all("\u0600" <= c <= "\u06ff" for c in letters)
    mark = "." if language is Language.EN else ","
    assert f"{s.value:.3f}".replace(".", mark) in e.sentences[0]


def test_the_english_sentence():
    s = fixed_score("9.81")
    (asd,) = [d for d in decide(s, THRESHOLDS, TODAY) if d.programme == "asd"]
    e = explain(s, [asd], "en")
    assert e.sentences[0] == (
        "Your score 9.810 is above the direct-aid threshold 9.743 by 0.067: not eligible."
    )
    close = fixed_score("9.7430006")  # 3-6 decimals would show 9.743001 twice: 7 are shown
    (asd,) = [d for d in decide(close, THRESHOLDS, TODAY) if d.programme == "asd"]
    assert "9.7430006 is below the direct-aid threshold 9.7430010 by 0.0000004" in (
        explain(close, [asd], "en").text
    )


def test_every_factor_has_a_label_in_every_language():
    factors = {rsu._factor_of(v) for v in VARIABLES if v != "intercept"}
    assert factors == set(LABELS)
    assert all(set(labels) == set(Language) for labels in LABELS.values())


# --- the synthetic population ---


def test_synthetic_population_is_reproducible_and_plausible():
    a, b = synthetic_households(50_000, seed=2), synthetic_households(50_000, seed=2)
    assert all(np.array_equal(a[k], b[k], equal_nan=True) for k in a)
    urban = a["urban"]
    assert 0.62 < urban.mean() < 0.64
    assert 4.45 < a["size"][urban].mean() < 4.75 and 5.15 < a["size"][~urban].mean() < 5.45
    s = score_many(MODEL, a)
    # illustrative shares (invented population, illustrative model): about 18 % and 40 %
    assert 0.14 < (s <= 9.3264284).mean() < 0.23 and 0.35 < (s <= 9.743001).mean() < 0.46
    assert np.percentile(s, 1) > 8.5 and np.percentile(s, 99) < 11.5
