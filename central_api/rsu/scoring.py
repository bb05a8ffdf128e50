"""The RSU's proxy-means test (PMT): from a household's declaration to a score, to eligibility
decisions under versioned thresholds, to an explanation in the citizen's language.

**The model is data.** The official Moroccan formula is unpublished (reportedly 35 variables in
towns, 28 in the countryside, with regional coefficients); the published thresholds (about
9.3-10.7) read as the natural log of predicted yearly consumption per person, in dirhams. This
module fixes the *vocabulary* of variables, in the shape that unofficial reconstructions give:

    score = intercept
          + a·n + b·n²                                   (n: household size)
          + c·(members under 15 / n) + d·(members 65+ / n)
          + e·(rooms / n)
          + Σ_k f_k · ln(1 + yearly spend_k / n)          (k: electricity, water, telecom, butane)
          + Σ_g h_g · [household owns good g]              (presence, 0/1: see below)
          + housing type + declarant's occupation + region  (one coefficient per category)

with one coefficient set for urban and one for rural households. The coefficients live in a
JSON model file (:func:`load_model`), checked strictly: an unknown variable, a missing region
or category, a non-finite number is a :class:`ModelFileError` naming the place. Official
coefficients drop in as a new file, with no code change. The bundled file
``pmt-illustrative-2026.1`` is ILLUSTRATIVE, NOT THE OFFICIAL MODEL: its coefficients were
set by hand so that the invented population of :func:`synthetic_households` gets a plausible
spread of scores (see the file's ``notice`` and ``provenance``).

Choices, and why:

* **Durable goods count by presence**, not per person: a fridge or a car serves the whole
  household, and the declaration says whether one is owned, not how many.
* **Expenses enter as ln(1 + yearly MAD per person)**: per person because the target is
  consumption per person; the log because spending is log-normal and the target is a log; the
  1 + keeps a household without a connection (0 MAD) finite.
* **Partner data replace declared expenses.** Where a partner administration (electricity or
  water utility, telecom operator) sent a verified yearly amount (:class:`PartnerData`), that
  amount is used *instead of* the declared one for that kind, whether higher or lower; the
  declared amount is used only where no record came. Butane has no partner feed. Choosing
  which record is recent enough is the caller's job; :class:`Score` says which source was used.
* **The score is rounded to 7 decimals, term by term.** Each contribution is rounded to an
  integer number of 1e-7 *points* and the score is their integer sum, so the contributions
  add up to the score exactly, the one-by-one and vectorised paths (which share one kernel)
  give identical results, and last-bit noise of ``log1p`` cannot flip a decision. Seven
  decimals is the precision of the finest published threshold (AMO Tadamon: 9.3264284), and
  the rounding moves a score by at most 1.2e-6 (23 terms × 5e-8), far below any threshold gap.
* **A threshold applies from its effective date until the next version's** (:class:`Threshold`);
  eligibility is ``score <= threshold``, compared in integer points.
* **Explanations compare with a reference household**: each area's "typical" household is
  written in the model file (``reference``, near the medians of the synthetic population for
  the illustrative model). A factor's weight is its contribution minus the reference's; these
  deviations add up exactly to the score minus the reference's score.

Nothing here reads a file at import; the bundled files are read when asked for.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from enum import IntEnum, StrEnum
from functools import cache
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any, Final, Literal

import numpy as np
import numpy.typing as npt
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from central_api.exceptions import InternalError

__all__ = [
    "DATA_DIR",
    "DECIMALS",
    "LABELS",
    "SCALE",
    "TABLE_COLUMNS",
    "VARIABLES",
    "Area",
    "Declaration",
    "Eligibility",
    "ExpenseKind",
    "Expenses",
    "Explanation",
    "Factor",
    "Good",
    "HousingType",
    "Language",
    "Member",
    "ModelFileError",
    "NoThresholdInForce",
    "Occupation",
    "PartnerData",
    "PartnerRecord",
    "Programme",
    "RSUError",
    "Region",
    "Relation",
    "Score",
    "ScoringModel",
    "TableError",
    "Threshold",
    "ThresholdFileError",
    "ThresholdTable",
    "decide",
    "eligible_many",
    "explain",
    "load_model",
    "load_thresholds",
    "parse_model",
    "parse_thresholds",
    "points_many",
    "recheck",
    "score",
    "score_many",
    "synthetic_declarations",
    "synthetic_households",
    "threshold_in_force",
    "to_table",
]

DECIMALS: Final = 7
SCALE: Final = 10**DECIMALS  # one point = 1e-7 of score
DATA_DIR: Final = Path(__file__).parent / "models_data"
THRESHOLDS_FILE: Final = "thresholds.json"
MAX_MEMBERS: Final = 30
MAX_ROOMS: Final = 30
MAX_AGE: Final = 120
MAX_EXPENSE: Final = 1_000_000.0  # MAD a year, per kind: far above any household's bill
MAX_COEFFICIENT: Final = 1000.0

Int64Array = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
Table = Mapping[str, npt.NDArray[Any]]


# --- errors ---------------------------------------------------------------------------------


class RSUError(InternalError):
    """Root of the scoring's own failures (a model or threshold file, a table, a missing
    threshold): the registry's configuration or code, never the citizen's declaration, which
    pydantic refuses with a ``ValidationError``."""


class ModelFileError(RSUError):
    """A model file cannot be read or does not match the vocabulary; the message says where."""


class ThresholdFileError(RSUError):
    """A threshold file cannot be read or is inconsistent; the message says where."""


class NoThresholdInForce(RSUError):
    """No version of a programme's threshold was in force on the date asked for."""


class TableError(RSUError):
    """A columnar table given to :func:`score_many` is malformed; the message names the column."""


# --- vocabulary -----------------------------------------------------------------------------
# Category codes in tables are positions in these enums: append new members, never reorder.


class Area(StrEnum):
    """Where the dwelling is: each area has its own coefficient set."""

    URBAN = "urban"
    RURAL = "rural"


AREAS: Final = (Area.URBAN, Area.RURAL)


class Region(IntEnum):
    """The 12 regions of the 2015 regionalisation, by their official number."""

    TANGER_TETOUAN_AL_HOCEIMA = 1
    ORIENTAL = 2
    FES_MEKNES = 3
    RABAT_SALE_KENITRA = 4
    BENI_MELLAL_KHENIFRA = 5
    CASABLANCA_SETTAT = 6
    MARRAKECH_SAFI = 7
    DRAA_TAFILALET = 8
    SOUSS_MASSA = 9
    GUELMIM_OUED_NOUN = 10
    LAAYOUNE_SAKIA_EL_HAMRA = 11
    DAKHLA_OUED_ED_DAHAB = 12

    @property
    def slug(self) -> str:
        """The key used in model files (``casablanca_settat``)."""
        return self.name.lower()

    @property
    def official_name(self) -> str:
        """The region's name as written by the State (``Casablanca-Settat``)."""
        return REGION_NAMES[self]


REGION_NAMES: Final[Mapping[Region, str]] = MappingProxyType(
    {
        Region.TANGER_TETOUAN_AL_HOCEIMA: "Tanger-Tétouan-Al Hoceïma",
        Region.ORIENTAL: "L'Oriental",
        Region.FES_MEKNES: "Fès-Meknès",
        Region.RABAT_SALE_KENITRA: "Rabat-Salé-Kénitra",
        Region.BENI_MELLAL_KHENIFRA: "Béni Mellal-Khénifra",
        Region.CASABLANCA_SETTAT: "Casablanca-Settat",
        Region.MARRAKECH_SAFI: "Marrakech-Safi",
        Region.DRAA_TAFILALET: "Drâa-Tafilalet",
        Region.SOUSS_MASSA: "Souss-Massa",
        Region.GUELMIM_OUED_NOUN: "Guelmim-Oued Noun",
        Region.LAAYOUNE_SAKIA_EL_HAMRA: "Laâyoune-Sakia El Hamra",
        Region.DAKHLA_OUED_ED_DAHAB: "Dakhla-Oued Ed-Dahab",
    }
)


class Relation(StrEnum):
    """A member's relation to the declarant (exactly one member is the declarant)."""

    DECLARANT = "declarant"
    SPOUSE = "spouse"
    CHILD = "child"
    PARENT = "parent"
    SIBLING = "sibling"
    GRANDCHILD = "grandchild"
    OTHER_RELATIVE = "other_relative"
    NON_RELATIVE = "non_relative"


class HousingType(StrEnum):
    """The dwelling, in the HCP census categories."""

    VILLA = "villa"
    APARTMENT = "apartment"
    MODERN_HOUSE = "modern_house"  # maison marocaine moderne
    TRADITIONAL_HOUSE = "traditional_house"  # maison marocaine traditionnelle
    RURAL_DWELLING = "rural_dwelling"  # logement de type rural
    MAKESHIFT = "makeshift"  # habitat sommaire, bidonville
    OTHER = "other"


class Occupation(StrEnum):
    """The declarant's occupation."""

    PUBLIC_EMPLOYEE = "public_employee"
    PRIVATE_EMPLOYEE = "private_employee"
    EMPLOYER = "employer"
    SELF_EMPLOYED = "self_employed"  # own account, outside farming
    FARMER = "farmer"  # own account, farming or herding
    AGRICULTURAL_WORKER = "agricultural_worker"
    CASUAL_WORKER = "casual_worker"  # day labourer outside farming
    UNEMPLOYED = "unemployed"
    RETIRED = "retired"
    HOMEMAKER = "homemaker"
    STUDENT = "student"
    OTHER_INACTIVE = "other_inactive"  # including unable to work


class Good(StrEnum):
    """Durable goods the household owns (bit ``i`` of a table's ``goods`` is member ``i``)."""

    FRIDGE = "fridge"
    TELEVISION = "television"
    SATELLITE_DISH = "satellite_dish"
    WASHING_MACHINE = "washing_machine"
    WATER_HEATER = "water_heater"
    AIR_CONDITIONER = "air_conditioner"
    COMPUTER = "computer"
    CAR = "car"
    MOTORBIKE = "motorbike"
    TRACTOR = "tractor"


class ExpenseKind(StrEnum):
    """Yearly spending the declaration asks for (MAD)."""

    ELECTRICITY = "electricity"
    WATER = "water"
    TELECOM = "telecom"  # telephone and internet
    BUTANE = "butane"


PARTNER_KINDS: Final = (ExpenseKind.ELECTRICITY, ExpenseKind.WATER, ExpenseKind.TELECOM)


class Programme(StrEnum):
    """Programmes that select their beneficiaries by the score."""

    AMO_TADAMON = "amo_tadamon"  # free health insurance (AMO Tadamon)
    ASD = "asd"  # direct social aid (law 58.23)


class Language(StrEnum):
    """Languages of explanations: Arabic, French, English, Tamazight (Tifinagh)."""

    AR = "ar"
    FR = "fr"
    EN = "en"
    ZGH = "zgh"


DEMOGRAPHY: Final = ("size", "size_sq", "share_under_15", "share_65_plus")
LINEAR: Final = (*DEMOGRAPHY, "rooms_per_capita", *(k.value for k in ExpenseKind))
CATEGORICAL: Final = ("housing", "occupation", "region")
VARIABLES: Final[tuple[str, ...]] = (
    "intercept",
    *LINEAR,
    *(g.value for g in Good),
    *CATEGORICAL,
)
"""Names of a :class:`Score`'s contributions, in order (a durable good is named as in
:class:`Good`, an expense as in :class:`ExpenseKind`)."""

FACTOR_GROUPS: Final[Mapping[str, tuple[str, ...]]] = MappingProxyType(
    {"household_size": ("size", "size_sq")}
)
"""Variables that an explanation reports as one factor (the size terms move together)."""


# --- the declaration ------------------------------------------------------------------------

Money = Annotated[float, Field(ge=0.0, le=MAX_EXPENSE, allow_inf_nan=False)]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class Member(_Frozen):
    """One person of the household."""

    age: int = Field(ge=0, le=MAX_AGE)
    relation: Relation


class Expenses(_Frozen):
    """Declared yearly spending, MAD (0 where the household has no such bill)."""

    electricity: Money = 0.0
    water: Money = 0.0
    telecom: Money = 0.0
    butane: Money = 0.0


class Declaration(_Frozen):
    """What a household declares: persons sharing a dwelling and expenses (a person living
    alone is a household). Validated on construction; immutable."""

    members: tuple[Member, ...] = Field(min_length=1, max_length=MAX_MEMBERS)
    housing: HousingType
    rooms: int = Field(ge=1, le=MAX_ROOMS)
    area: Area
    region: Region
    occupation: Occupation  # the declarant's
    expenses: Expenses = Expenses()
    goods: frozenset[Good] = frozenset()

    @model_validator(mode="after")
    def _one_declarant(self) -> Declaration:
        declarants = sum(m.relation is Relation.DECLARANT for m in self.members)
        if declarants != 1:
            raise ValueError(f"exactly one member must be the declarant, not {declarants}")
        return self

    @property
    def size(self) -> int:
        """Number of members."""
        return len(self.members)


class PartnerRecord(_Frozen):
    """A verified yearly amount from a partner administration."""

    amount: Money
    source: str = Field(min_length=1, max_length=64)  # e.g. "ONEE", "Lydec", "Maroc Telecom"
    as_of: date  # last day of the 12 months it covers


class PartnerData(_Frozen):
    """Utility records for a household; a present record replaces the declared amount."""

    electricity: PartnerRecord | None = None
    water: PartnerRecord | None = None
    telecom: PartnerRecord | None = None


def _effective(
    declaration: Declaration, partner: PartnerData | None
) -> dict[ExpenseKind, tuple[float, str]]:
    """Each expense as scored, and where it came from ("declared" or the partner's source)."""
    out: dict[ExpenseKind, tuple[float, str]] = {}
    for kind in ExpenseKind:
        record = getattr(partner, kind.value, None) if partner is not None else None
        if isinstance(record, PartnerRecord):
            out[kind] = (record.amount, record.source)
        else:
            out[kind] = (float(getattr(declaration.expenses, kind.value)), "declared")
    return out


# --- columnar tables ------------------------------------------------------------------------

TABLE_COLUMNS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "size": "members, 1-30",
        "under_15": "members aged under 15",
        "aged_65_plus": "members aged 65 or more",
        "rooms": "rooms, 1-30",
        "urban": "bool: urban (else rural)",
        "region": "region number, 1-12 (Region)",
        "housing": "position in HousingType",
        "occupation": "position in Occupation",
        "goods": "bit mask: bit i set if the household owns list(Good)[i]",
        "electricity": "declared MAD a year",
        "water": "declared MAD a year",
        "telecom": "declared MAD a year",
        "butane": "declared MAD a year",
        "partner_electricity": "optional: partner's MAD a year, NaN where none",
        "partner_water": "optional: partner's MAD a year, NaN where none",
        "partner_telecom": "optional: partner's MAD a year, NaN where none",
    }
)
"""The columns of a table for :func:`score_many` (a dict of equal-length 1-D numpy arrays)."""

_OPTIONAL: Final = frozenset(f"partner_{k.value}" for k in PARTNER_KINDS)
_INT_LIMITS: Final[Mapping[str, tuple[int, int]]] = MappingProxyType(
    {
        "size": (1, MAX_MEMBERS),
        "under_15": (0, MAX_MEMBERS),
        "aged_65_plus": (0, MAX_MEMBERS),
        "rooms": (1, MAX_ROOMS),
        "region": (1, len(Region)),
        "housing": (0, len(HousingType) - 1),
        "occupation": (0, len(Occupation) - 1),
        "goods": (0, 2 ** len(Good) - 1),
    }
)
_HOUSING_CODE: Final = {h: i for i, h in enumerate(HousingType)}
_OCCUPATION_CODE: Final = {o: i for i, o in enumerate(Occupation)}
_GOOD_BIT: Final = {g: 1 << i for i, g in enumerate(Good)}


@dataclass(frozen=True)
class _Columns:
    """A table ready for the kernel: floats for arithmetic, 0-based codes for look-ups."""

    area: npt.NDArray[np.intp]  # 0 urban, 1 rural
    size: FloatArray
    under_15: FloatArray
    aged_65_plus: FloatArray
    rooms: FloatArray
    region: npt.NDArray[np.intp]  # 0-based
    housing: npt.NDArray[np.intp]
    occupation: npt.NDArray[np.intp]
    goods: Int64Array
    expenses: Mapping[ExpenseKind, FloatArray]  # partner amounts already substituted


def _goods_mask(goods: Iterable[Good]) -> int:
    return sum(_GOOD_BIT[g] for g in goods)


def _row(declaration: Declaration, partner: PartnerData | None) -> dict[str, Any]:
    ages = [m.age for m in declaration.members]
    row: dict[str, Any] = {
        "size": len(ages),
        "under_15": sum(a < 15 for a in ages),
        "aged_65_plus": sum(a >= 65 for a in ages),
        "rooms": declaration.rooms,
        "urban": declaration.area is Area.URBAN,
        "region": int(declaration.region),
        "housing": _HOUSING_CODE[declaration.housing],
        "occupation": _OCCUPATION_CODE[declaration.occupation],
        "goods": _goods_mask(declaration.goods),
    }
    for kind in ExpenseKind:
        row[kind.value] = float(getattr(declaration.expenses, kind.value))
    for kind in PARTNER_KINDS:
        record = getattr(partner, kind.value, None) if partner is not None else None
        row[f"partner_{kind.value}"] = (
            record.amount if isinstance(record, PartnerRecord) else math.nan
        )
    return row


def to_table(
    declarations: Sequence[Declaration], partners: Sequence[PartnerData | None] | None = None
) -> dict[str, npt.NDArray[Any]]:
    """The columnar table (:data:`TABLE_COLUMNS`) of ``declarations`` and their partner data
    (``partners[i]`` goes with ``declarations[i]``; None: no record)."""
    if partners is not None and len(partners) != len(declarations):
        raise TableError("partners must be as many as declarations")
    rows = [
        _row(d, partners[i] if partners is not None else None) for i, d in enumerate(declarations)
    ]
    dtypes: dict[str, npt.DTypeLike] = {
        "size": np.uint8,
        "under_15": np.uint8,
        "aged_65_plus": np.uint8,
        "rooms": np.uint8,
        "urban": np.bool_,
        "region": np.uint8,
        "housing": np.uint8,
        "occupation": np.uint8,
        "goods": np.uint16,
    }
    return {
        col: np.array([r[col] for r in rows], dtype=dtypes.get(col, np.float64))
        for col in TABLE_COLUMNS
    }


def _columns_from_row(row: Mapping[str, Any]) -> _Columns:
    """One validated declaration as a one-row :class:`_Columns` (no checks: already valid)."""
    expenses = {}
    for kind in ExpenseKind:
        declared = np.array([row[kind.value]], dtype=np.float64)
        if kind in PARTNER_KINDS:
            partner = np.array([row[f"partner_{kind.value}"]], dtype=np.float64)
            declared = np.where(np.isnan(partner), declared, partner)
        expenses[kind] = declared
    return _Columns(
        area=np.array([0 if row["urban"] else 1], dtype=np.intp),
        size=np.array([row["size"]], dtype=np.float64),
        under_15=np.array([row["under_15"]], dtype=np.float64),
        aged_65_plus=np.array([row["aged_65_plus"]], dtype=np.float64),
        rooms=np.array([row["rooms"]], dtype=np.float64),
        region=np.array([row["region"] - 1], dtype=np.intp),
        housing=np.array([row["housing"]], dtype=np.intp),
        occupation=np.array([row["occupation"]], dtype=np.intp),
        goods=np.array([row["goods"]], dtype=np.int64),
        expenses=expenses,
    )


def _columns(table: Table) -> tuple[int, _Columns]:
    """Check a table (names, shapes, types, ranges) and prepare it; :class:`TableError` if bad."""
    missing = [c for c in TABLE_COLUMNS if c not in table and c not in _OPTIONAL]
    unknown = sorted(set(table) - set(TABLE_COLUMNS))
    if missing or unknown:
        raise TableError(f"table columns: missing {missing}, unknown {unknown}")
    arrays = {name: np.asarray(col) for name, col in table.items()}
    lengths = {a.shape for a in arrays.values()}
    if len(lengths) != 1 or len(next(iter(lengths))) != 1:
        raise TableError(f"table columns must be 1-D and of one length, not shapes {lengths}")
    n = len(arrays["size"])
    ints: dict[str, Int64Array] = {}
    for name, (lo, hi) in _INT_LIMITS.items():
        a = arrays[name]
        if a.dtype.kind not in "iu":
            raise TableError(f"column {name!r} must hold integers, not {a.dtype}")
        a64 = a.astype(np.int64)
        if n and (a64.min() < lo or a64.max() > hi):
            raise TableError(f"column {name!r} out of range {lo}-{hi}")
        ints[name] = a64
    if n and np.any(ints["under_15"] + ints["aged_65_plus"] > ints["size"]):
        raise TableError("under_15 + aged_65_plus exceeds size")
    if arrays["urban"].dtype != np.bool_:
        raise TableError(f"column 'urban' must be bool, not {arrays['urban'].dtype}")
    floats: dict[str, FloatArray] = {}
    for name in (*(k.value for k in ExpenseKind), *_OPTIONAL):
        if name not in arrays:
            floats[name] = np.full(n, np.nan)
            continue
        a = arrays[name]
        if a.dtype.kind not in "iuf":
            raise TableError(f"column {name!r} must be numeric, not {a.dtype}")
        f = a.astype(np.float64)
        present = f if name not in _OPTIONAL else f[~np.isnan(f)]
        if present.size and not (
            np.all(np.isfinite(present)) and present.min() >= 0 and present.max() <= MAX_EXPENSE
        ):
            raise TableError(f"column {name!r} must be finite amounts in 0-{MAX_EXPENSE:.0f}")
        floats[name] = f
    expenses: dict[ExpenseKind, FloatArray] = {}
    for kind in ExpenseKind:
        spend = floats[kind.value]
        if kind in PARTNER_KINDS:
            partner = floats[f"partner_{kind.value}"]
            spend = np.where(np.isnan(partner), spend, partner)
        expenses[kind] = spend
    return n, _Columns(
        area=np.where(arrays["urban"], 0, 1).astype(np.intp),
        size=ints["size"].astype(np.float64),
        under_15=ints["under_15"].astype(np.float64),
        aged_65_plus=ints["aged_65_plus"].astype(np.float64),
        rooms=ints["rooms"].astype(np.float64),
        region=(ints["region"] - 1).astype(np.intp),
        housing=ints["housing"].astype(np.intp),
        occupation=ints["occupation"].astype(np.intp),
        goods=ints["goods"],
        expenses=expenses,
    )


# --- the model file -------------------------------------------------------------------------

Coefficient = Annotated[float, Field(ge=-MAX_COEFFICIENT, le=MAX_COEFFICIENT)]
_VERSION = r"^[a-z0-9][a-z0-9._-]{0,63}$"


def _exact_keys(what: str, given: Mapping[str, Any], allowed: Iterable[str]) -> None:
    allowed = list(allowed)
    unknown = sorted(set(given) - set(allowed))
    missing = [k for k in allowed if k not in given]
    problems = []
    if unknown:
        problems.append(f"unknown {what}: {', '.join(unknown)}")
    if missing:
        problems.append(f"missing {what}: {', '.join(missing)}")
    if problems:
        raise ValueError("; ".join(problems))


class _Demography(_Frozen):
    size: Coefficient
    size_sq: Coefficient
    share_under_15: Coefficient
    share_65_plus: Coefficient


class ReferenceHousehold(_Frozen):
    """A typical household of an area, against which explanations weigh the factors."""

    size: int = Field(ge=1, le=MAX_MEMBERS)
    under_15: int = Field(ge=0, le=MAX_MEMBERS)
    aged_65_plus: int = Field(ge=0, le=MAX_MEMBERS)
    rooms: int = Field(ge=1, le=MAX_ROOMS)
    housing: HousingType
    occupation: Occupation
    region: str
    expenses: Expenses
    goods: frozenset[Good]

    @model_validator(mode="after")
    def _consistent(self) -> ReferenceHousehold:
        if self.under_15 + self.aged_65_plus > self.size:
            raise ValueError("under_15 and aged_65_plus do not fit in size")
        if self.region not in {r.slug for r in Region}:
            raise ValueError(f"unknown region: {self.region}")
        return self

    def row(self, area: Area) -> dict[str, Any]:
        """This household as a table row of ``area`` (no partner data)."""
        row: dict[str, Any] = {
            "size": self.size,
            "under_15": self.under_15,
            "aged_65_plus": self.aged_65_plus,
            "rooms": self.rooms,
            "urban": area is Area.URBAN,
            "region": next(int(r) for r in Region if r.slug == self.region),
            "housing": _HOUSING_CODE[self.housing],
            "occupation": _OCCUPATION_CODE[self.occupation],
            "goods": _goods_mask(self.goods),
        }
        for kind in ExpenseKind:
            row[kind.value] = float(getattr(self.expenses, kind.value))
        for kind in PARTNER_KINDS:
            row[f"partner_{kind.value}"] = math.nan
        return row


class AreaCoefficients(_Frozen):
    """One area's coefficient set. ``expenses`` multiply ln(1 + yearly MAD per person);
    ``goods`` are added when the good is owned; each category of ``housing``, ``occupation``
    and ``region`` (by slug) has its own coefficient (the reference category's is usually 0)."""

    intercept: Coefficient
    demography: _Demography
    rooms_per_capita: Coefficient
    expenses: dict[str, Coefficient]
    goods: dict[str, Coefficient]
    housing: dict[str, Coefficient]
    occupation: dict[str, Coefficient]
    region: dict[str, Coefficient]
    reference: ReferenceHousehold

    @field_validator("expenses")
    @classmethod
    def _expenses(cls, v: dict[str, float]) -> dict[str, float]:
        _exact_keys("expense kinds", v, (k.value for k in ExpenseKind))
        return v

    @field_validator("goods")
    @classmethod
    def _goods(cls, v: dict[str, float]) -> dict[str, float]:
        _exact_keys("goods", v, (g.value for g in Good))
        return v

    @field_validator("housing")
    @classmethod
    def _housing(cls, v: dict[str, float]) -> dict[str, float]:
        _exact_keys("housing types", v, (h.value for h in HousingType))
        return v

    @field_validator("occupation")
    @classmethod
    def _occupation(cls, v: dict[str, float]) -> dict[str, float]:
        _exact_keys("occupations", v, (o.value for o in Occupation))
        return v

    @field_validator("region")
    @classmethod
    def _region(cls, v: dict[str, float]) -> dict[str, float]:
        _exact_keys("regions", v, (r.slug for r in Region))
        return v


class _Areas(_Frozen):
    urban: AreaCoefficients
    rural: AreaCoefficients


class ModelFile(_Frozen):
    """The JSON model file, as validated (:func:`parse_model`)."""

    version: str = Field(pattern=_VERSION)
    official: bool
    notice: str = Field(min_length=1)
    scale: str = Field(min_length=1)
    currency: Literal["MAD"]
    provenance: str = ""
    areas: _Areas

    @model_validator(mode="after")
    def _labelled(self) -> ModelFile:
        if not self.official and "NOT THE OFFICIAL MODEL" not in self.notice.upper():
            raise ValueError("a model with official: false must say NOT THE OFFICIAL MODEL")
        return self


def _points(values: FloatArray, coefficient: FloatArray) -> Int64Array:
    return np.rint(values * coefficient * SCALE).astype(np.int64)


def _coefficient_points(value: float) -> int:
    return int(np.rint(np.float64(value) * SCALE))


@dataclass(frozen=True, eq=False)
class ScoringModel:
    """A validated model, compiled for scoring. Build with :func:`load_model` or
    :func:`parse_model`."""

    spec: ModelFile
    _linear: Mapping[str, FloatArray]  # variable -> coefficient per area (urban, rural)
    _intercept: Int64Array  # points per area
    _goods: Mapping[Good, Int64Array]  # points per area
    _categorical: Mapping[str, Int64Array]  # variable -> points[area, code]
    _reference: Mapping[Area, Mapping[str, int]]  # the reference household's contributions

    @property
    def version(self) -> str:
        """The model's version (its file's name without ``.json``)."""
        return self.spec.version

    @property
    def official(self) -> bool:
        """False for illustrative models."""
        return self.spec.official

    @property
    def notice(self) -> str:
        """What the model is, as its file says."""
        return self.spec.notice

    def reference_contributions(self, area: Area) -> Mapping[str, int]:
        """The reference household's contributions (points) in ``area``."""
        return self._reference[area]

    @classmethod
    def compile(cls, spec: ModelFile) -> ScoringModel:
        """Compile a validated model file (pure)."""
        sets = [getattr(spec.areas, a.value) for a in AREAS]

        def per_area(get: Any) -> FloatArray:
            return np.array([float(get(s)) for s in sets], dtype=np.float64)

        linear: dict[str, FloatArray] = {
            name: per_area(lambda s, name=name: getattr(s.demography, name)) for name in DEMOGRAPHY
        }
        linear["rooms_per_capita"] = per_area(lambda s: s.rooms_per_capita)
        for kind in ExpenseKind:
            linear[kind.value] = per_area(lambda s, k=kind.value: s.expenses[k])

        def table(keys: Sequence[str], get: Any) -> Int64Array:
            return np.array(
                [[_coefficient_points(get(s)[k]) for k in keys] for s in sets], dtype=np.int64
            )

        categorical = {
            "housing": table([h.value for h in HousingType], lambda s: s.housing),
            "occupation": table([o.value for o in Occupation], lambda s: s.occupation),
            "region": table([r.slug for r in Region], lambda s: s.region),
        }
        model = cls(
            spec=spec,
            _linear=MappingProxyType(linear),
            _intercept=np.array([_coefficient_points(s.intercept) for s in sets], np.int64),
            _goods=MappingProxyType(
                {
                    g: np.array([_coefficient_points(s.goods[g.value]) for s in sets], np.int64)
                    for g in Good
                }
            ),
            _categorical=MappingProxyType(categorical),
            _reference=MappingProxyType({}),
        )
        reference = {
            area: MappingProxyType(
                {
                    name: int(p[0])
                    for name, p in _terms(model, _columns_from_row(s.reference.row(area)))
                }
            )
            for area, s in zip(AREAS, sets, strict=True)
        }
        object.__setattr__(model, "_reference", MappingProxyType(reference))
        return model


def _format_errors(origin: str, err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        where = ".".join(str(p) for p in e["loc"]) or "(top)"
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown variable or field (not in this code's vocabulary)"
        lines.append(f"  {where}: {msg}")
    return f"{origin} is invalid:\n" + "\n".join(lines)


def _read_json(path: Path, error: type[RSUError]) -> Any:
    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        keys = [k for k, _ in pairs]
        dup = sorted({k for k in keys if keys.count(k) > 1})
        if dup:
            raise error(f"{path}: duplicate keys {dup}")
        return dict(pairs)

    def no_constant(name: str) -> Any:
        raise error(f"{path}: {name} is not a number")

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise error(f"cannot read {path}: {exc.strerror or exc}") from exc
    try:
        return json.loads(text, object_pairs_hook=no_duplicates, parse_constant=no_constant)
    except json.JSONDecodeError as exc:
        raise error(f"{path} is not JSON: {exc}") from exc


def parse_model(data: Any, origin: str = "model data") -> ScoringModel:
    """Validate model data (the JSON file's content) and compile it; :class:`ModelFileError`
    says what is wrong and where."""
    try:
        spec = ModelFile.model_validate(data)
    except ValidationError as exc:
        raise ModelFileError(_format_errors(origin, exc)) from None
    return ScoringModel.compile(spec)


def load_model(source: str | Path, *, directory: Path | None = None) -> ScoringModel:
    """Load a model by version (``"pmt-illustrative-2026.1"``: ``<directory>/<version>.json``,
    the bundled :data:`DATA_DIR` by default) or by path (a :class:`Path`, or a string ending in
    ``.json``). Loaded by version, the file's ``version`` must be that version."""
    text = str(source)
    expected: str | None = None
    if isinstance(source, Path) or text.endswith(".json"):
        path = Path(source)
    else:
        if not re.match(_VERSION, text):
            raise ModelFileError(f"not a model version: {text!r}")
        path = (directory or DATA_DIR) / f"{text}.json"
        expected = text
    model = parse_model(_read_json(path, ModelFileError), origin=str(path))
    if expected is not None and model.version != expected:
        raise ModelFileError(f"{path} holds version {model.version!r}, not {expected!r}")
    return model


# --- scoring --------------------------------------------------------------------------------


def _terms(model: ScoringModel, c: _Columns) -> Iterator[tuple[str, Int64Array]]:
    """Each variable's contribution in points, per row: the one kernel of both paths."""
    a = c.area
    n = c.size
    lin = model._linear
    yield "intercept", model._intercept[a]
    yield "size", _points(n, lin["size"][a])
    yield "size_sq", _points(n * n, lin["size_sq"][a])
    yield "share_under_15", _points(c.under_15 / n, lin["share_under_15"][a])
    yield "share_65_plus", _points(c.aged_65_plus / n, lin["share_65_plus"][a])
    yield "rooms_per_capita", _points(c.rooms / n, lin["rooms_per_capita"][a])
    for kind in ExpenseKind:
        yield kind.value, _points(np.log1p(c.expenses[kind] / n), lin[kind.value][a])
    for i, good in enumerate(Good):
        owned = ((c.goods >> i) & 1).astype(np.int64)
        yield good.value, owned * model._goods[good][a]
    yield "housing", model._categorical["housing"][a, c.housing]
    yield "occupation", model._categorical["occupation"][a, c.occupation]
    yield "region", model._categorical["region"][a, c.region]


@dataclass(frozen=True)
class Score:
    """A household's score under one model. ``points`` and ``contribution_points`` are in
    units of 1e-7 (:data:`SCALE`); the contributions add up to ``points`` exactly.
    ``reference_points`` are the same area's reference household's contributions."""

    model_version: str
    area: Area
    points: int
    contribution_points: Mapping[str, int]
    reference_points: Mapping[str, int]
    expense_sources: Mapping[str, str]  # kind -> "declared" or the partner's source

    @property
    def value(self) -> float:
        """The score (7 decimals)."""
        return self.points / SCALE

    @property
    def contributions(self) -> dict[str, float]:
        """Each variable's contribution (7 decimals), ``intercept`` included."""
        return {k: v / SCALE for k, v in self.contribution_points.items()}


def score(
    model: ScoringModel, declaration: Declaration, partner: PartnerData | None = None
) -> Score:
    """Score one household (pure, deterministic: the same kernel as :func:`score_many`)."""
    row = _row(declaration, partner)
    contributions = {name: int(p[0]) for name, p in _terms(model, _columns_from_row(row))}
    return Score(
        model_version=model.version,
        area=declaration.area,
        points=sum(contributions.values()),
        contribution_points=MappingProxyType(contributions),
        reference_points=model.reference_contributions(declaration.area),
        expense_sources=MappingProxyType(
            {k.value: src for k, (_, src) in _effective(declaration, partner).items()}
        ),
    )


def points_many(model: ScoringModel, table: Table) -> Int64Array:
    """Scores of a table's households in integer points (1e-7); :class:`TableError` if bad."""
    n, cols = _columns(table)
    total = np.zeros(n, dtype=np.int64)
    for _, p in _terms(model, cols):
        total += p
    return total


def score_many(model: ScoringModel, table: Table) -> FloatArray:
    """Scores of a table's households (:data:`TABLE_COLUMNS`), exactly those of :func:`score`."""
    return points_many(model, table) / SCALE


# --- thresholds and decisions ---------------------------------------------------------------


class Threshold(_Frozen):
    """One version of a programme's threshold: in force from ``effective_from`` until the
    next version's date. ``value`` has at most 7 decimals (it is compared in points)."""

    programme: Programme
    version: str = Field(pattern=_VERSION)
    value: float = Field(gt=0, lt=100)
    effective_from: date
    source: str = Field(min_length=1)
    note: str = ""

    @field_validator("value")
    @classmethod
    def _precision(cls, v: float) -> float:
        exponent = Decimal(repr(v)).as_tuple().exponent
        if not isinstance(exponent, int) or exponent < -DECIMALS:
            raise ValueError(f"a threshold has at most {DECIMALS} decimals")
        return v

    @property
    def points(self) -> int:
        """The value in points (1e-7)."""
        return int(Decimal(repr(self.value)).scaleb(DECIMALS))


class _ThresholdFile(_Frozen):
    scale: str = Field(min_length=1)
    thresholds: tuple[Threshold, ...] = Field(min_length=1)


@dataclass(frozen=True)
class ThresholdTable:
    """Every version of every programme's threshold (from :func:`load_thresholds`)."""

    versions: tuple[Threshold, ...]  # by programme, then effective date

    def in_force(self, programme: Programme | str, on: date) -> Threshold:
        """The version of ``programme``'s threshold in force on ``on``: the latest whose
        ``effective_from`` is on or before it; :class:`NoThresholdInForce` if none."""
        found = None
        for t in self.versions:
            if t.programme == programme and t.effective_from <= on:
                found = t
        if found is None:
            raise NoThresholdInForce(f"no {programme} threshold in force on {on.isoformat()}")
        return found

    def get(self, version: str) -> Threshold:
        """A threshold by its version id; :class:`NoThresholdInForce` if unknown."""
        for t in self.versions:
            if t.version == version:
                return t
        raise NoThresholdInForce(f"no threshold version {version!r}")

    def programmes(self) -> tuple[Programme, ...]:
        """Programmes with at least one version, in :class:`Programme` order."""
        present = {t.programme for t in self.versions}
        return tuple(p for p in Programme if p in present)


def parse_thresholds(data: Any, origin: str = "threshold data") -> ThresholdTable:
    """Validate threshold data (the JSON file's content): :class:`ThresholdFileError` if a
    field is wrong, a version id repeats, or a programme has two versions on one date."""
    try:
        spec = _ThresholdFile.model_validate(data)
    except ValidationError as exc:
        raise ThresholdFileError(_format_errors(origin, exc)) from None
    versions = [t.version for t in spec.thresholds]
    if len(set(versions)) != len(versions):
        raise ThresholdFileError(f"{origin}: a threshold version id repeats")
    starts = [(t.programme, t.effective_from) for t in spec.thresholds]
    if len(set(starts)) != len(starts):
        raise ThresholdFileError(f"{origin}: a programme has two versions from one date")
    order = sorted(
        spec.thresholds, key=lambda t: (list(Programme).index(t.programme), t.effective_from)
    )
    return ThresholdTable(tuple(order))


def load_thresholds(path: Path | None = None) -> ThresholdTable:
    """Read a threshold file (by default the bundled ``thresholds.json``)."""
    path = path or DATA_DIR / THRESHOLDS_FILE
    return parse_thresholds(_read_json(path, ThresholdFileError), origin=str(path))


@cache
def _bundled_thresholds() -> ThresholdTable:
    return load_thresholds()


def threshold_in_force(
    programme: Programme | str, on: date, table: ThresholdTable | None = None
) -> Threshold:
    """The threshold of ``programme`` in force on ``on`` (in ``table``, by default the bundled
    file, read once on first use)."""
    return (table or _bundled_thresholds()).in_force(programme, on)


@dataclass(frozen=True)
class Eligibility:
    """A programme's eligibility decision: eligible when ``score <= threshold``."""

    programme: Programme
    eligible: bool
    score: float
    threshold: float
    threshold_version: str
    distance: float  # score - threshold (7 decimals): > 0 above, not eligible
    model_version: str
    on: date


def _decision(s: Score, t: Threshold, on: date) -> Eligibility:
    return Eligibility(
        programme=t.programme,
        eligible=s.points <= t.points,
        score=s.value,
        threshold=t.value,
        threshold_version=t.version,
        distance=(s.points - t.points) / SCALE,
        model_version=s.model_version,
        on=on,
    )


def decide(s: Score, thresholds: ThresholdTable, on: date) -> list[Eligibility]:
    """One decision per programme with a threshold in force on ``on``. A programme whose first
    threshold starts after ``on`` did not exist yet then, and gets no decision."""
    out = []
    for programme in thresholds.programmes():
        try:
            t = thresholds.in_force(programme, on)
        except NoThresholdInForce:
            continue
        out.append(_decision(s, t, on))
    return out


def recheck(
    decision: Eligibility,
    declaration: Declaration,
    partner: PartnerData | None = None,
    *,
    thresholds: ThresholdTable,
    directory: Path | None = None,
) -> Eligibility:
    """Recompute a past decision with *its own* model and threshold versions (the model loaded
    by version from ``directory``), whatever versions are in force now."""
    model = load_model(decision.model_version, directory=directory)
    return _decision(
        score(model, declaration, partner), thresholds.get(decision.threshold_version), decision.on
    )


def eligible_many(points: Int64Array, threshold: Threshold) -> npt.NDArray[np.bool_]:
    """Eligibility of many scores given in points (:func:`points_many`)."""
    return points <= threshold.points


# --- explanations ---------------------------------------------------------------------------
# Labels and sentences: short templates, numbers filled in. The Arabic and Tamazight (Tifinagh)
# texts are drafts to be reviewed by the registry's translators before any citizen sees them.

LABELS: Final[Mapping[str, Mapping[Language, str]]] = MappingProxyType(
    {
        "household_size": {
            Language.EN: "household size",
            Language.FR: "taille du ménage",
            Language.AR: "عدد أفراد الأسرة",
            Language.ZGH: "ⵎⴰⵏⵛⴽ ⵏ ⵉⵎⴷⴷⴰⵏ ⵏ ⵜⴰⵡⵊⴰ",
        },
        "share_under_15": {
            Language.EN: "children under 15",
            Language.FR: "enfants de moins de 15 ans",
            Language.AR: "الأطفال دون 15 سنة",
            Language.ZGH: "ⵉⵎⵥⵥⵢⴰⵏⵏ ⴷⴷⴰⵡ 15 ⵏ ⵉⵙⴳⴳⵯⴰⵙⵏ",
        },
        "share_65_plus": {
            Language.EN: "members aged 65 or over",
            Language.FR: "membres de 65 ans ou plus",
            Language.AR: "الأفراد البالغون 65 سنة فأكثر",
            Language.ZGH: "ⵉⵎⵖⴰⵔⵏ ⵏ 65 ⵏ ⵉⵙⴳⴳⵯⴰⵙⵏ ⴷ ⵓⴳⴳⴰⵔ",
        },
        "rooms_per_capita": {
            Language.EN: "number of rooms",
            Language.FR: "nombre de pièces",
            Language.AR: "عدد الغرف",
            Language.ZGH: "ⵎⴰⵏⵛⴽ ⵏ ⵜⵅⵅⴰⵎⵉⵏ",
        },
        "electricity": {
            Language.EN: "electricity spending",
            Language.FR: "dépenses d'électricité",
            Language.AR: "مصاريف الكهرباء",
            Language.ZGH: "ⵉⵙⵙⵓⴼⵖⵏ ⵏ ⵜⵥⵕⵉⴳⵜ",
        },
        "water": {
            Language.EN: "water spending",
            Language.FR: "dépenses d'eau",
            Language.AR: "مصاريف الماء",
            Language.ZGH: "ⵉⵙⵙⵓⴼⵖⵏ ⵏ ⵡⴰⵎⴰⵏ",
        },
        "telecom": {
            Language.EN: "telephone and internet spending",
            Language.FR: "dépenses de téléphone et d'internet",
            Language.AR: "مصاريف الهاتف والإنترنت",
            Language.ZGH: "ⵉⵙⵙⵓⴼⵖⵏ ⵏ ⵜⵉⵍⵉⴼⵓⵏ ⴷ ⵓⵏⵜⵔⵏⵉⵜ",
        },
        "butane": {
            Language.EN: "butane gas spending",
            Language.FR: "dépenses de gaz butane",
            Language.AR: "مصاريف غاز البوتان",
            Language.ZGH: "ⵉⵙⵙⵓⴼⵖⵏ ⵏ ⵍⴳⴰⵣ",
        },
        "fridge": {
            Language.EN: "refrigerator",
            Language.FR: "réfrigérateur",
            Language.AR: "الثلاجة",
            Language.ZGH: "ⵜⴰⵙⵎⵎⴰⴹⵜ",
        },
        "television": {
            Language.EN: "television",
            Language.FR: "téléviseur",
            Language.AR: "التلفاز",
            Language.ZGH: "ⵜⵉⵍⵉⴼⵉⵣⵢⵓⵏ",
        },
        "satellite_dish": {
            Language.EN: "satellite dish",
            Language.FR: "antenne parabolique",
            Language.AR: "الصحن المقعر",
            Language.ZGH: "ⵍⴱⴰⵔⴰⴱⵓⵍ",
        },
        "washing_machine": {
            Language.EN: "washing machine",
            Language.FR: "machine à laver",
            Language.AR: "آلة الغسيل",
            Language.ZGH: "ⵜⴰⵎⴰⵙⵉⵏⵜ ⵏ ⵓⵙⵉⵔⴷ",
        },
        "water_heater": {
            Language.EN: "water heater",
            Language.FR: "chauffe-eau",
            Language.AR: "سخان الماء",
            Language.ZGH: "ⴰⵙⵙⵔⵖⴰ ⵏ ⵡⴰⵎⴰⵏ",
        },
        "air_conditioner": {
            Language.EN: "air conditioner",
            Language.FR: "climatiseur",
            Language.AR: "المكيف",
            Language.ZGH: "ⴰⴽⵍⵉⵎⴰⵜⵉⵣⵓⵔ",
        },
        "computer": {
            Language.EN: "computer",
            Language.FR: "ordinateur",
            Language.AR: "الحاسوب",
            Language.ZGH: "ⴰⵙⵎⵉⴹⵏ",
        },
        "car": {
            Language.EN: "car",
            Language.FR: "voiture",
            Language.AR: "السيارة",
            Language.ZGH: "ⵜⵓⵎⵓⴱⵉⵍ",
        },
        "motorbike": {
            Language.EN: "motorbike",
            Language.FR: "moto",
            Language.AR: "الدراجة النارية",
            Language.ZGH: "ⵎⵓⵜⵓⵔ",
        },
        "tractor": {
            Language.EN: "tractor",
            Language.FR: "tracteur",
            Language.AR: "الجرار",
            Language.ZGH: "ⵜⵔⴰⴽⵜⵓⵔ",
        },
        "housing": {
            Language.EN: "type of housing",
            Language.FR: "type de logement",
            Language.AR: "نوع السكن",
            Language.ZGH: "ⴰⵏⴰⵡ ⵏ ⵓⵣⴷⴷⵓⵖ",
        },
        "occupation": {
            Language.EN: "occupation of the declarant",
            Language.FR: "profession du déclarant",
            Language.AR: "مهنة المصرح",
            Language.ZGH: "ⵜⴰⵡⵓⵔⵉ ⵏ ⵓⵎⵙⵎⴰⵍ",
        },
        "region": {
            Language.EN: "region",
            Language.FR: "région",
            Language.AR: "الجهة",
            Language.ZGH: "ⵜⴰⵎⵏⴰⴹⵜ",
        },
    }
)
"""Each explanation factor's label (:data:`VARIABLES` less ``intercept``, the size terms
grouped as ``household_size``) in the four languages."""

PROGRAMME_NAMES: Final[Mapping[Language, Mapping[Programme, str]]] = MappingProxyType(
    {
        Language.EN: {Programme.AMO_TADAMON: "AMO Tadamon", Programme.ASD: "direct-aid"},
        Language.FR: {
            Programme.AMO_TADAMON: "de l'AMO Tadamon",
            Programme.ASD: "de l'aide sociale directe",
        },
        Language.AR: {
            Programme.AMO_TADAMON: "أمو تضامن",
            Programme.ASD: "الدعم الاجتماعي المباشر",
        },
        Language.ZGH: {
            Programme.AMO_TADAMON: "ⴰⵎⵓ ⵜⴰⴹⴰⵎⵓⵏ",
            Programme.ASD: "ⵜⴰⵍⵍⴰⵍⵜ ⵜⴰⵏⴰⵎⵓⵏⵜ ⵜⵓⵙⵔⵉⴷⵜ",
        },
    }
)

_SENTENCES: Final[Mapping[Language, Mapping[str, str]]] = MappingProxyType(
    {
        Language.EN: {
            "above": "Your score {score} is above the {programme} threshold {threshold} by "
            "{distance}: not eligible.",
            "below": "Your score {score} is below the {programme} threshold {threshold} by "
            "{distance}: eligible.",
            "equal": "Your score {score} equals the {programme} threshold {threshold}: eligible.",
            "factors": "The largest factors, compared with a typical household: {factors}.",
            "none": "No factor differs from a typical household.",
            "sep": ", ",
        },
        Language.FR: {
            "above": "Votre score {score} est supérieur de {distance} au seuil {programme} "
            "({threshold}) : non éligible.",
            "below": "Votre score {score} est inférieur de {distance} au seuil {programme} "
            "({threshold}) : éligible.",
            "equal": "Votre score {score} est égal au seuil {programme} ({threshold}) : éligible.",
            "factors": "Principaux facteurs, par rapport à un ménage type : {factors}.",
            "none": "Aucun facteur ne s'écarte d'un ménage type.",
            "sep": ", ",
        },
        Language.AR: {
            "above": "مؤشركم {score} أعلى من عتبة {programme} ({threshold}) بفارق {distance}: "
            "غير مؤهل.",
            "below": "مؤشركم {score} أقل من عتبة {programme} ({threshold}) بفارق {distance}: مؤهل.",
            "equal": "مؤشركم {score} يساوي عتبة {programme} ({threshold}): مؤهل.",
            "factors": "أهم العوامل مقارنة بأسرة نموذجية: {factors}.",
            "none": "لا يختلف أي عامل عن أسرة نموذجية.",
            "sep": "، ",
        },
        Language.ZGH: {
            "above": "ⴰⵎⴹⴰⵏ ⵏⵏⵓⵏ {score} ⵉⵍⵍⴰ ⵏⵏⵉⴳ ⵜⵍⵉⵙⵜ ⵏ {programme} ({threshold}) ⵙ "
            "{distance}: ⵓⵔ ⵜⵙⵜⴰⵀⵍⵎ.",
            "below": "ⴰⵎⴹⴰⵏ ⵏⵏⵓⵏ {score} ⵉⵍⵍⴰ ⴷⴷⴰⵡ ⵜⵍⵉⵙⵜ ⵏ {programme} ({threshold}) ⵙ "
            "{distance}: ⵜⵙⵜⴰⵀⵍⵎ.",
            "equal": "ⴰⵎⴹⴰⵏ ⵏⵏⵓⵏ {score} ⵉⵎⵙⴰⵙⴰ ⴷ ⵜⵍⵉⵙⵜ ⵏ {programme} ({threshold}): ⵜⵙⵜⴰⵀⵍⵎ.",
            "factors": "ⵉⵎⵙⴽⴰⵔⵏ ⵉⵎⵇⵇⵔⴰⵏⵏ: {factors}.",
            "none": "ⵓⵔ ⵉⵍⵍⵉ ⴽⵔⴰ ⵏ ⵓⵎⵙⴽⴰⵔ ⵉⵎⵇⵇⵔⴰⵏ.",
            "sep": ", ",
        },
    }
)
_DECIMAL_MARK: Final = {Language.EN: ".", Language.FR: ",", Language.AR: ",", Language.ZGH: ","}


def _factor_of(variable: str) -> str:
    for group, members in FACTOR_GROUPS.items():
        if variable in members:
            return group
    return variable


@dataclass(frozen=True)
class Factor:
    """A factor of the score, weighed against the reference household of the same area."""

    name: str  # a key of LABELS
    label: str
    points: int  # contribution minus the reference household's (1e-7)

    @property
    def deviation(self) -> float:
        """How much the factor raises (> 0) or lowers the score against the reference."""
        return self.points / SCALE


@dataclass(frozen=True)
class Explanation:
    """Why a score is what it is. ``factors``: every factor that differs from the reference
    household, the largest first (their points add up to ``score - reference_score``);
    ``top``: those named in the sentences; ``distances``: score minus each threshold."""

    language: Language
    model_version: str
    score: float
    reference_score: float
    factors: tuple[Factor, ...]
    top: tuple[Factor, ...]
    distances: Mapping[Programme, float]
    sentences: tuple[str, ...]

    @property
    def text(self) -> str:
        """The sentences, as one paragraph."""
        return " ".join(self.sentences)


def _number(points: int, decimals: int, language: Language) -> str:
    text = f"{Decimal(points).scaleb(-DECIMALS):.{decimals}f}"
    return text.replace(".", _DECIMAL_MARK[language])


def _decision_sentence(s: Score, d: Eligibility, language: Language) -> str:
    t_points = round(d.threshold * SCALE)
    distance = abs(s.points - t_points)
    decimals = 3  # more only where 3 would show the score equal to the threshold
    while (
        decimals < DECIMALS
        and distance
        and (
            _number(s.points, decimals, language) == _number(t_points, decimals, language)
            or _number(distance, decimals, language).strip("0,.") == ""
        )
    ):
        decimals += 1
    kind = "equal" if not distance else ("above" if s.points > t_points else "below")
    return _SENTENCES[language][kind].format(
        score=_number(s.points, decimals, language),
        threshold=_number(t_points, decimals, language),
        distance=_number(distance, decimals, language),
        programme=PROGRAMME_NAMES[language][d.programme],
    )


def explain(
    s: Score, decisions: Sequence[Eligibility], language: Language | str, *, top: int = 3
) -> Explanation:
    """Explain a score and its decisions in ``language`` (``ar``, ``fr``, ``en``, ``zgh``):
    one sentence per decision (score, threshold, distance, verdict; 3 decimals, more only where
    needed to tell the score from the threshold), then the ``top`` factors that move the score
    most against the reference household of the model file (largest absolute deviation)."""
    language = Language(language)
    for d in decisions:
        if d.model_version != s.model_version or d.score != s.value:
            raise RSUError("a decision of another score cannot be explained with this one")
    grouped: dict[str, int] = {}
    for name, p in s.contribution_points.items():
        if name == "intercept":
            continue
        factor = _factor_of(name)
        grouped[factor] = grouped.get(factor, 0) + p - s.reference_points[name]
    factors = tuple(
        Factor(name, LABELS[name][language], p)
        for name, p in sorted(grouped.items(), key=lambda kv: (-abs(kv[1]), kv[0]))
        if p
    )
    chosen = factors[:top]
    sentences = [_decision_sentence(s, d, language) for d in decisions]
    table = _SENTENCES[language]
    if chosen:
        sentences.append(
            table["factors"].format(factors=table["sep"].join(f.label for f in chosen))
        )
    else:
        sentences.append(table["none"])
    return Explanation(
        language=language,
        model_version=s.model_version,
        score=s.value,
        reference_score=sum(s.reference_points.values()) / SCALE,
        factors=factors,
        top=chosen,
        distances=MappingProxyType({d.programme: d.distance for d in decisions}),
        sentences=tuple(sentences),
    )


# --- a synthetic population -----------------------------------------------------------------
# INVENTED FOR MEASUREMENT, NOT CENSUS DATA. Shapes and orders of magnitude follow what the
# HCP publishes (household size, urban share, regional populations); every other number is a
# guess made to give the benches and tests a plausible spread of households.

REGION_WEIGHTS: Final = (3557, 2314, 4237, 4581, 2521, 6862, 4521, 1635, 2677, 434, 368, 143)
"""Regions' weights (thousands of inhabitants, rounded from the 2014 census), by number."""
URBAN_SHARE: Final = 0.63
SIZE_MEAN: Final = {Area.URBAN: 4.6, Area.RURAL: 5.3}
UNDER_15: Final = {Area.URBAN: 0.27, Area.RURAL: 0.33}  # chance each other member is a child
# housing, occupation: multinomial logit, (urban base, urban slope, rural base, rural slope);
# the slope multiplies the latent income
_HOUSING_LOGITS: Final = {
    HousingType.VILLA: (-3.5, 1.2, -5.5, 1.2),
    HousingType.APARTMENT: (-0.4, 0.5, -6.0, 0.5),
    HousingType.MODERN_HOUSE: (1.0, 0.0, 0.0, 0.5),
    HousingType.TRADITIONAL_HOUSE: (-1.0, -0.4, -1.0, -0.1),
    HousingType.RURAL_DWELLING: (-5.0, 0.0, 1.6, -0.3),
    HousingType.MAKESHIFT: (-2.3, -0.9, -2.6, -0.8),
    HousingType.OTHER: (-3.5, 0.0, -3.5, 0.0),
}
_OCCUPATION_LOGITS: Final = {
    Occupation.PUBLIC_EMPLOYEE: (-1.3, 0.8, -2.5, 0.8),
    Occupation.PRIVATE_EMPLOYEE: (0.6, 0.2, -0.8, 0.2),
    Occupation.EMPLOYER: (-3.0, 1.2, -4.5, 1.2),
    Occupation.SELF_EMPLOYED: (0.3, 0.1, -0.6, 0.1),
    Occupation.FARMER: (-4.0, 0.3, 1.0, 0.3),
    Occupation.AGRICULTURAL_WORKER: (-3.5, -0.5, 0.2, -0.7),
    Occupation.CASUAL_WORKER: (-0.5, -0.8, -0.3, -0.6),
    Occupation.UNEMPLOYED: (-1.5, -0.6, -2.0, -0.6),
    Occupation.RETIRED: (-1.0, 0.3, -2.0, 0.3),
    Occupation.HOMEMAKER: (-0.8, -0.2, -1.2, -0.2),
    Occupation.STUDENT: (-4.0, 0.5, -5.0, 0.5),
    Occupation.OTHER_INACTIVE: (-2.0, -0.3, -2.2, -0.3),
}
# goods: P(owned) = logistic(base + slope * income + urban shift)
_GOOD_LOGITS: Final = {
    Good.FRIDGE: (1.0, 1.2, 1.0),
    Good.TELEVISION: (2.2, 0.8, 0.8),
    Good.SATELLITE_DISH: (1.5, 0.8, 0.2),
    Good.WASHING_MACHINE: (-1.6, 1.4, 1.0),
    Good.WATER_HEATER: (-1.8, 1.5, 1.3),
    Good.AIR_CONDITIONER: (-4.0, 1.6, 0.8),
    Good.COMPUTER: (-2.2, 1.6, 1.1),
    Good.CAR: (-2.6, 1.5, 0.8),
    Good.MOTORBIKE: (-2.2, 0.3, 0.3),
    Good.TRACTOR: (-5.5, 1.0, -3.0),
}
# true yearly spend: log-normal, (median urban, median rural MAD, income slope, sd,
# size elasticity, P(no bill) urban, P(no bill) rural)
_SPEND: Final = {
    ExpenseKind.ELECTRICITY: (1800.0, 950.0, 0.45, 0.35, 0.3, 0.005, 0.04),
    ExpenseKind.WATER: (850.0, 320.0, 0.35, 0.40, 0.4, 0.03, 0.35),
    ExpenseKind.TELECOM: (1700.0, 900.0, 0.50, 0.45, 0.3, 0.02, 0.04),
    ExpenseKind.BUTANE: (650.0, 850.0, 0.10, 0.30, 0.4, 0.03, 0.01),
}
_UNDER_DECLARED: Final = (-0.10, 0.25)  # declared = true * exp(N(mean, sd))
_PARTNER_COVER: Final = {  # P(a partner record | a bill), urban, rural
    ExpenseKind.ELECTRICITY: (0.70, 0.45),
    ExpenseKind.WATER: (0.60, 0.20),
    ExpenseKind.TELECOM: (0.35, 0.20),
}


def _choice(rng: np.random.Generator, logits: FloatArray) -> npt.NDArray[np.intp]:
    """One category per row of ``logits`` (n × k), by the Gumbel-max trick."""
    noisy: FloatArray = logits + rng.gumbel(size=logits.shape)
    return np.asarray(np.argmax(noisy, axis=1), dtype=np.intp)


def _synthetic(n: int, seed: int) -> tuple[dict[str, npt.NDArray[Any]], FloatArray]:
    """The table and each household's latent income (standard normal)."""
    if n < 0:
        raise ValueError("n must be >= 0")
    rng = np.random.default_rng(seed)
    urban = rng.random(n) < URBAN_SHARE
    weights = np.array(REGION_WEIGHTS, dtype=np.float64)
    region = rng.choice(len(Region), size=n, p=weights / weights.sum()) + 1
    z = rng.standard_normal(n)
    # size: 1 + Poisson, poorer households larger; exp(-0.0072) recentres E[exp(-0.12 z)]
    lam = np.where(urban, SIZE_MEAN[Area.URBAN] - 1, SIZE_MEAN[Area.RURAL] - 1)
    size = np.minimum(1 + rng.poisson(lam * np.exp(-0.12 * z - 0.0072)), MAX_MEMBERS)
    under_15 = rng.binomial(size - 1, np.where(urban, UNDER_15[Area.URBAN], UNDER_15[Area.RURAL]))
    aged_65 = rng.binomial(size - under_15, np.where(size == 1, 0.25, 0.07))
    # rooms: grow with size and income; a little larger in the countryside
    log_rooms = np.log(0.9 + 0.45 * size) + 0.25 * z + 0.1 * ~urban + 0.2 * rng.standard_normal(n)
    rooms = np.clip(np.rint(np.exp(log_rooms)), 1, MAX_ROOMS)

    def logits(spec: Mapping[Any, tuple[float, float, float, float]]) -> FloatArray:
        rows = np.array(list(spec.values()), dtype=np.float64)  # k × 4
        base = np.where(urban[:, None], rows[:, 0], rows[:, 2])
        slope = np.where(urban[:, None], rows[:, 1], rows[:, 3])
        return base + slope * z[:, None]

    housing = _choice(rng, logits(_HOUSING_LOGITS))
    occupation = _choice(rng, logits(_OCCUPATION_LOGITS))
    goods = np.zeros(n, dtype=np.int64)
    for i, (base, slope, shift) in enumerate(_GOOD_LOGITS.values()):
        p = 1 / (1 + np.exp(-(base + slope * z + shift * urban)))
        goods |= (rng.random(n) < p).astype(np.int64) << i
    table: dict[str, npt.NDArray[Any]] = {
        "size": size.astype(np.uint8),
        "under_15": under_15.astype(np.uint8),
        "aged_65_plus": aged_65.astype(np.uint8),
        "rooms": rooms.astype(np.uint8),
        "urban": urban,
        "region": region.astype(np.uint8),
        "housing": housing.astype(np.uint8),
        "occupation": occupation.astype(np.uint8),
        "goods": goods.astype(np.uint16),
    }
    for kind, (med_u, med_r, slope, sd, size_el, zero_u, zero_r) in _SPEND.items():
        log_true = (
            np.log(np.where(urban, med_u, med_r))
            + slope * z
            + size_el * np.log(size / np.where(urban, SIZE_MEAN[Area.URBAN], SIZE_MEAN[Area.RURAL]))
            + sd * rng.standard_normal(n)
        )
        billed = rng.random(n) >= np.where(urban, zero_u, zero_r)
        true = np.where(billed, np.minimum(np.exp(log_true), MAX_EXPENSE), 0.0)
        declared = true * np.exp(rng.normal(*_UNDER_DECLARED, size=n))
        table[kind.value] = np.round(np.minimum(declared, MAX_EXPENSE), 2)
        if kind in _PARTNER_COVER:
            cover_u, cover_r = _PARTNER_COVER[kind]
            has = billed & (rng.random(n) < np.where(urban, cover_u, cover_r))
            table[f"partner_{kind.value}"] = np.where(has, np.round(true, 2), np.nan)
    return {c: table[c] for c in TABLE_COLUMNS}, z


def synthetic_households(n: int, seed: int) -> dict[str, npt.NDArray[Any]]:
    """``n`` invented households as a table (:data:`TABLE_COLUMNS`), the same for one seed.

    INVENTED FOR MEASUREMENT, NOT CENSUS DATA. Each household has a latent income
    ``z ~ N(0, 1)`` (not returned) that drives the rest:

    * area: urban with probability 0.63 (the HCP's urban share); region: by the regions'
      2014 census populations (independent of area, a simplification);
    * size: 1 + Poisson(λ), λ = (4.6 − 1) urban, (5.3 − 1) rural, times exp(−0.12 z) (poorer
      households are larger): means 4.6 and 5.3, capped at 30; each member other than the
      first is under 15 with probability 0.27 urban / 0.33 rural, then each non-child is 65+
      with probability 0.07 (0.25 for a person alone);
    * rooms: round(exp(ln(0.9 + 0.45 n) + 0.25 z + 0.1 rural + N(0, 0.2²))), 1-30;
    * housing and occupation: multinomial logits by area whose slopes on ``z`` favour villas,
      apartments, public jobs and employers as income grows, makeshift housing and casual or
      farm work as it falls (``_HOUSING_LOGITS``, ``_OCCUPATION_LOGITS``);
    * goods: owned with probability logistic(base + slope·z + urban shift) (``_GOOD_LOGITS``):
      e.g. fridge ≈ 0.85 urban / 0.7 rural, car ≈ 0.2 / 0.08;
    * true yearly spend: log-normal around medians (MAD) electricity 1,800 urban / 950 rural,
      water 850 / 320, telecom 1,700 / 900, butane 650 / 850, with income slopes 0.45, 0.35,
      0.5, 0.1, a size elasticity of 0.3-0.4, and no bill at all with a small probability
      (water: 35 % of rural households); the declared amount is the true one times
      exp(N(−0.1, 0.25²)) (slightly under-declared), to the centime;
    * partner records (the true amount) for a share of billed households: electricity 70 %
      urban / 45 % rural, water 60 / 20, telecom 35 / 20; NaN where none.
    """
    return _synthetic(n, seed)[0]


_PARTNER_SOURCES: Final = {
    ExpenseKind.ELECTRICITY: "ONEE",
    ExpenseKind.WATER: "régie de distribution",
    ExpenseKind.TELECOM: "opérateur télécom",
}
SYNTHETIC_AS_OF: Final = date(2025, 12, 31)


def synthetic_declarations(n: int, seed: int) -> list[tuple[Declaration, PartnerData | None]]:
    """The first ``n`` households of ``synthetic_households(n, seed)`` as declarations with
    their partner data (``to_table`` of them gives that table back). Ages are invented within
    each household's counts (children 0-14, adults 18-64 or 15-64, elders 65-95); the first
    adult (else the first elder) is the declarant."""
    table = synthetic_households(n, seed)
    rng = np.random.default_rng([seed, 1])
    housing, occupations, goods_list = list(HousingType), list(Occupation), list(Good)
    out: list[tuple[Declaration, PartnerData | None]] = []
    for i in range(n):
        size, kids, elders = (int(table[c][i]) for c in ("size", "under_15", "aged_65_plus"))
        adults = size - kids - elders
        members: list[Member] = []
        if adults:
            members.append(Member(age=int(rng.integers(20, 65)), relation=Relation.DECLARANT))
            members += [
                Member(
                    age=int(rng.integers(15, 65)),
                    relation=Relation.SPOUSE if j == 0 else Relation.CHILD,
                )
                for j in range(adults - 1)
            ]
            members += [
                Member(age=int(rng.integers(65, 96)), relation=Relation.PARENT)
                for _ in range(elders)
            ]
        else:
            members += [
                Member(
                    age=int(rng.integers(65, 96)),
                    relation=Relation.DECLARANT if j == 0 else Relation.SPOUSE,
                )
                for j in range(elders)
            ]
        kid_relation = Relation.CHILD if adults else Relation.GRANDCHILD
        members += [
            Member(age=int(rng.integers(0, 15)), relation=kid_relation) for _ in range(kids)
        ]
        if not adults and not elders:  # children alone: the eldest declares
            members[0] = Member(age=members[0].age, relation=Relation.DECLARANT)
        mask = int(table["goods"][i])
        records: dict[str, PartnerRecord] = {}
        for kind in PARTNER_KINDS:
            amount = float(table[f"partner_{kind.value}"][i])
            if not math.isnan(amount):
                records[kind.value] = PartnerRecord(
                    amount=amount, source=_PARTNER_SOURCES[kind], as_of=SYNTHETIC_AS_OF
                )
        declaration = Declaration(
            members=tuple(members),
            housing=housing[int(table["housing"][i])],
            rooms=int(table["rooms"][i]),
            area=Area.URBAN if table["urban"][i] else Area.RURAL,
            region=Region(int(table["region"][i])),
            occupation=occupations[int(table["occupation"][i])],
            expenses=Expenses(**{k.value: float(table[k.value][i]) for k in ExpenseKind}),
            goods=frozenset(g for b, g in enumerate(goods_list) if mask >> b & 1),
        )
        out.append((declaration, PartnerData(**records) if records else None))
    return out
