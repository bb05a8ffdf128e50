"""Machine-readable zone (ICAO 9303 Parts 3-7): check digits, TD1 card, TD2 card and TD3
passport parsing (and the visas of the TD2 / TD3 sizes), and the access keys the chip asks
for (MRZ for BAC, CAN for PACE).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from dataclasses import dataclass

from devices.exceptions import CardError

_VALUES = {**{str(d): d for d in range(10)}, "<": 0} | {
    chr(c): c - ord("A") + 10 for c in range(ord("A"), ord("Z") + 1)
}
_CHARS = re.compile(r"^[A-Z0-9<]*$")


class MRZError(CardError, ValueError):
    """An MRZ (or a key typed from it) that is malformed or fails its check digits."""


def check_digit(field: str) -> str:
    """The ICAO 9303 check digit (weights 7, 3, 1) of ``field``."""
    if not _CHARS.match(field):
        raise MRZError("MRZ fields use only A-Z, 0-9 and <")
    return str(sum(_VALUES[c] * (7, 3, 1)[i % 3] for i, c in enumerate(field)) % 10)


def _verify(name: str, field: str, digit: str) -> None:
    # a field of fillers may carry a filler as its check digit (Part 3, 4.9)
    if digit == "<" and set(field) <= {"<"}:
        return
    if check_digit(field) != digit:
        raise MRZError(f"check digit of the {name} is wrong")


def _date(yymmdd: str, *, past: bool, today: dt.date | None = None) -> dt.date | None:
    """Two-digit-year date: birth dates lie in the past, expiry dates up to 50 years ahead."""
    if not re.fullmatch(r"\d{6}", yymmdd):
        return None
    today = today or dt.date.today()
    yy, mm, dd = int(yymmdd[:2]), int(yymmdd[2:4]), int(yymmdd[4:])
    century = today.year // 100 * 100
    year = century + yy
    if past and year > today.year:
        year -= 100
    if not past and year > today.year + 50:
        year -= 100
    try:
        return dt.date(year, mm, dd)
    except ValueError:
        return None


@dataclass(frozen=True)
class MRZ:
    """A parsed, check-digit verified MRZ."""

    document_type: str
    issuing_state: str
    document_number: str
    primary_identifier: str  # surname(s)
    secondary_identifier: str  # given names
    nationality: str
    date_of_birth: str  # YYMMDD as printed ("<" for unknown parts)
    sex: str  # M, F or <
    date_of_expiry: str
    optional_data: str
    lines: tuple[str, ...]

    @property
    def birth_date(self) -> dt.date | None:
        """The birth date, or None if (partly) unknown."""
        return _date(self.date_of_birth, past=True)

    @property
    def expiry_date(self) -> dt.date | None:
        """The expiry date."""
        return _date(self.date_of_expiry, past=False)

    def access_key(self) -> MRZKey:
        """The BAC/PACE key this document's chip expects."""
        return MRZKey(self.document_number, self.date_of_birth, self.date_of_expiry)


def _names(field: str) -> tuple[str, str]:
    primary, _, secondary = field.partition("<<")
    return primary.replace("<", " ").strip(), secondary.replace("<", " ").strip()


def parse(text: str) -> MRZ:
    """Parse a TD1 (3 x 30), TD2 (2 x 36) or TD3 (2 x 44) MRZ; every check digit is verified."""
    lines = tuple(line.strip().upper() for line in text.strip().splitlines() if line.strip())
    if not all(_CHARS.match(line) for line in lines):
        raise MRZError("MRZ lines use only A-Z, 0-9 and <")
    if len(lines) == 3 and all(len(line) == 30 for line in lines):
        return _td1(lines)
    if len(lines) == 2 and all(len(line) == 36 for line in lines):
        return _td2(lines)
    if len(lines) == 2 and all(len(line) == 44 for line in lines):
        return _td3(lines)
    raise MRZError(
        "an MRZ has 3 lines of 30 characters (TD1 card), 2 lines of 36 (TD2) "
        "or 2 lines of 44 (passport)"
    )


def _td1(lines: tuple[str, ...]) -> MRZ:
    l1, l2, l3 = lines
    number, digit, optional = l1[5:14], l1[14], l1[15:30]
    if digit == "<" and optional[0] != "<":  # long document number continues (Part 5, 4.2.2)
        rest, _, tail = optional.partition("<")
        number, digit, optional = number + rest[:-1], rest[-1], tail
    _verify("document number", number, digit)
    _verify("date of birth", l2[0:6], l2[6])
    _verify("date of expiry", l2[8:14], l2[14])
    _verify("MRZ (composite)", l1[5:30] + l2[0:7] + l2[8:15] + l2[18:29], l2[29])
    primary, secondary = _names(l3)
    return MRZ(
        l1[0:2].rstrip("<"),
        l1[2:5],
        number.rstrip("<"),
        primary,
        secondary,
        l2[15:18],
        l2[0:6],
        l2[7],
        l2[8:14],
        (optional + l2[18:29]).strip("<"),
        lines,
    )


def _td2(lines: tuple[str, ...]) -> MRZ:
    """TD2 (Part 6, 4.2.2): line 1 code, state, name; line 2 number, nationality, dates,
    optional data, composite check digit. A machine-readable visa of the same size (MRV-B,
    Part 7: code "V") has optional data in place of the composite check digit."""
    l1, l2 = lines
    number, digit, optional = l2[0:9], l2[9], l2[28:35]
    visa = l1[0] == "V"
    if visa:
        optional = l2[28:36]
    elif digit == "<" and optional[0] != "<":  # long document number (Part 6, note j)
        rest, _, tail = optional.partition("<")
        number, digit, optional = number + rest[:-1], rest[-1], tail
    _verify("document number", number, digit)
    _verify("date of birth", l2[13:19], l2[19])
    _verify("date of expiry", l2[21:27], l2[27])
    if not visa:
        _verify("MRZ (composite)", l2[0:10] + l2[13:20] + l2[21:35], l2[35])
    primary, secondary = _names(l1[5:36])
    return MRZ(
        l1[0:2].rstrip("<"),
        l1[2:5],
        number.rstrip("<"),
        primary,
        secondary,
        l2[10:13],
        l2[13:19],
        l2[20],
        l2[21:27],
        optional.strip("<"),
        lines,
    )


def _field(text: str, n: int) -> str:
    clean = re.sub(r"[^A-Z0-9<]", "<", text.upper().replace(" ", "<").replace("-", "<"))
    return (clean + "<" * n)[:n]


def td1(
    document_number: str,
    surname: str,
    given_names: str,
    date_of_birth: str,
    sex: str,
    date_of_expiry: str,
    nationality: str = "MAR",
    issuing_state: str = "MAR",
    document_code: str = "ID",
) -> str:
    """Compose a TD1 MRZ (3 x 30, with every check digit) from its fields; dates YYMMDD.
    Used to issue emulated cards; :func:`parse` reads the result back."""

    field = _field
    if len(document_number) > 9:
        raise MRZError("documents numbers longer than 9 characters are not composed here")
    number = field(document_number, 9)
    l1 = field(document_code, 2) + field(issuing_state, 3) + number + check_digit(number)
    l1 = field(l1, 30)
    l2 = date_of_birth + check_digit(date_of_birth) + (sex if sex in "MF" else "<")
    l2 += date_of_expiry + check_digit(date_of_expiry) + field(nationality, 3) + "<" * 11
    l2 += check_digit(l1[5:30] + l2[0:7] + l2[8:15] + l2[18:29])
    names = field(surname, 30).rstrip("<") + "<<" + field(given_names, 30).rstrip("<")
    lines = (l1, l2, field(names, 30))
    parse("\n".join(lines))  # every composed MRZ must read back
    return "\n".join(lines)


def td2(
    document_number: str,
    surname: str,
    given_names: str,
    date_of_birth: str,
    sex: str,
    date_of_expiry: str,
    nationality: str = "MAR",
    issuing_state: str = "MAR",
    document_code: str = "I",
    optional_data: str = "",
) -> str:
    """Compose a TD2 MRZ (2 x 36, with every check digit) from its fields; dates YYMMDD.
    :func:`parse` reads the result back."""
    if len(document_number) > 9:
        raise MRZError("documents numbers longer than 9 characters are not composed here")
    if len(optional_data) > 7:
        raise MRZError("TD2 optional data holds at most 7 characters")
    number = _field(document_number, 9)
    names = _field(surname, 31).rstrip("<") + "<<" + _field(given_names, 31).rstrip("<")
    l1 = _field(document_code, 2) + _field(issuing_state, 3) + _field(names, 31)
    l2 = number + check_digit(number) + _field(nationality, 3)
    l2 += date_of_birth + check_digit(date_of_birth) + (sex if sex in "MF" else "<")
    l2 += date_of_expiry + check_digit(date_of_expiry) + _field(optional_data, 7)
    l2 += check_digit(l2[0:10] + l2[13:20] + l2[21:35])
    parse(l1 + "\n" + l2)  # every composed MRZ must read back
    return l1 + "\n" + l2


def _td3(lines: tuple[str, ...]) -> MRZ:
    l1, l2 = lines
    _verify("document number", l2[0:9], l2[9])
    _verify("date of birth", l2[13:19], l2[19])
    _verify("date of expiry", l2[21:27], l2[27])
    _verify("personal number", l2[28:42], l2[42])
    _verify("MRZ (composite)", l2[0:10] + l2[13:20] + l2[21:43], l2[43])
    primary, secondary = _names(l1[5:44])
    return MRZ(
        l1[0:2].rstrip("<"),
        l1[2:5],
        l2[0:9].rstrip("<"),
        primary,
        secondary,
        l2[10:13],
        l2[13:19],
        l2[20],
        l2[21:27],
        l2[28:42].strip("<"),
        lines,
    )


@dataclass(frozen=True)
class MRZKey:
    """The MRZ-derived access key: document number, date of birth, date of expiry (YYMMDD).

    Built from the printed MRZ (``parse(...).access_key()``) or typed by an operator; typed
    fields are validated before anything is sent to a card."""

    document_number: str
    date_of_birth: str
    date_of_expiry: str

    def __post_init__(self) -> None:
        number = self.document_number.strip().upper()
        object.__setattr__(self, "document_number", number)
        if not 1 <= len(number) <= 22 or not _CHARS.match(number):
            raise MRZError("document number: 1-22 characters A-Z, 0-9")
        for name, value in (("date of birth", self.date_of_birth), ("expiry", self.date_of_expiry)):
            if not re.fullmatch(r"[0-9<]{6}", value):
                raise MRZError(f"{name} must be YYMMDD")
        if _date(self.date_of_expiry, past=False) is None:
            raise MRZError("date of expiry is not a valid date")

    @property
    def information(self) -> str:
        """MRZ_information (Part 11, 9.7.2): number, dates, each with its check digit."""
        number = self.document_number.ljust(9, "<")
        return "".join(
            f + check_digit(f) for f in (number, self.date_of_birth, self.date_of_expiry)
        )

    def seed(self) -> bytes:
        """K_seed for BAC: the first 16 bytes of SHA-1(MRZ_information)."""
        return hashlib.sha1(self.information.encode("ascii")).digest()[:16]  # noqa: S324

    def pace_secret(self) -> bytes:
        """The PACE password for an MRZ: SHA-1(MRZ_information)."""
        return hashlib.sha1(self.information.encode("ascii")).digest()  # noqa: S324


@dataclass(frozen=True)
class CANKey:
    """The 6-digit card access number printed on the card (PACE only)."""

    can: str

    def __post_init__(self) -> None:
        if not re.fullmatch(r"\d{6}", self.can):
            raise MRZError("a CAN is 6 digits")

    def pace_secret(self) -> bytes:
        """The PACE password for a CAN: its ASCII digits."""
        return self.can.encode("ascii")


AccessKey = MRZKey | CANKey
