"""The IDCS: a 10-digit civil and social digital identifier.

Numbers are drawn at random (so they reveal nothing: not the date, the place or the order of
enrolment), must pass MOSIP-style filters that keep them easy to read out and hard to mistype,
and end with a Verhoeff check digit, which catches every single-digit error and every swap of
two adjacent digits. Uniqueness and never-reuse are the issuer's job (identity.service).
"""

from __future__ import annotations

import random
import secrets
from dataclasses import dataclass, field

from central_api.exceptions import InternalError

LENGTH = 10

# Verhoeff: multiplication in the dihedral group D5, a position permutation and the inverse.
_D = (
    (0, 1, 2, 3, 4, 5, 6, 7, 8, 9),
    (1, 2, 3, 4, 0, 6, 7, 8, 9, 5),
    (2, 3, 4, 0, 1, 7, 8, 9, 5, 6),
    (3, 4, 0, 1, 2, 8, 9, 5, 6, 7),
    (4, 0, 1, 2, 3, 9, 5, 6, 7, 8),
    (5, 9, 8, 7, 6, 0, 4, 3, 2, 1),
    (6, 5, 9, 8, 7, 1, 0, 4, 3, 2),
    (7, 6, 5, 9, 8, 2, 1, 0, 4, 3),
    (8, 7, 6, 5, 9, 3, 2, 1, 0, 4),
    (9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
)
# Position permutations: _P[i] is the i-th power of Verhoeff's permutation (1 5 7 6 2 8 3 0 9 4).
_P1 = (1, 5, 7, 6, 2, 8, 3, 0, 9, 4)
_P = [tuple(range(10))]
for _ in range(7):
    _P.append(tuple(_P1[x] for x in _P[-1]))
_INV = (0, 4, 3, 2, 1, 5, 6, 7, 8, 9)


def _verhoeff(digits: str, offset: int) -> int:
    c = 0
    for i, ch in enumerate(reversed(digits)):
        c = _D[c][_P[(i + offset) % 8][ord(ch) - 48]]
    return c


def verhoeff_digit(payload: str) -> str:
    """The Verhoeff check digit to append to the decimal string ``payload``."""
    if not payload.isascii() or not payload.isdigit():
        raise ValueError("payload must be decimal digits")
    return str(_INV[_verhoeff(payload, 1)])


def verhoeff_valid(number: str) -> bool:
    """True if ``number`` (payload + check digit) passes the Verhoeff check."""
    return number.isascii() and number.isdigit() and _verhoeff(number, 0) == 0


@dataclass(frozen=True)
class IdcsPolicy:
    """Filters an IDCS must pass, after MOSIP's UIN generator.

    MOSIP's own limits (sequence 3, repeating 2, block 2, even 3) leave only about 5.5 % of
    10-digit numbers, some 44 million: too close to the size of the register. The defaults
    here keep about 26 % (some 210 million; ``bench/bench_idcs.py`` measures it).
    """

    check_digit: bool = True
    sequence_limit: int = 3  # no run of this many ascending/descending digits (123, 987)
    repeating_limit: int = 1  # a digit may not recur within this many positions (1: no 11)
    repeating_block_limit: int = 3  # no block of this many digits appearing twice (482..482)
    even_digits_limit: int = 4  # no run of this many even digits (2468)
    deny_list: tuple[str, ...] = field(default_factory=tuple)  # forbidden substrings


def violations(number: str, policy: IdcsPolicy = IdcsPolicy()) -> list[str]:
    """Machine-readable reasons why ``number`` is not a valid IDCS (empty list: valid)."""
    if len(number) != LENGTH or not number.isascii() or not number.isdigit():
        return ["format"]
    out: list[str] = []
    d = [ord(c) - 48 for c in number]
    if d[0] in (0, 1):
        out.append("leading_digit")
    if policy.check_digit and not verhoeff_valid(number):
        out.append("check_digit")
    n = policy.sequence_limit
    for i in range(LENGTH - n + 1):
        steps = {d[i + k + 1] - d[i + k] for k in range(n - 1)}
        if steps in ({1}, {-1}):
            out.append("sequence")
            break
    if any(
        d[i] == d[j]
        for i in range(LENGTH)
        for j in range(i + 1, min(LENGTH, i + policy.repeating_limit + 1))
    ):
        out.append("repeating_digit")
    b = policy.repeating_block_limit
    blocks = [number[i : i + b] for i in range(LENGTH - b + 1)]
    if any(blocks[i] in blocks[i + b :] for i in range(len(blocks))):
        out.append("repeating_block")
    run = 0
    for x in d:
        run = run + 1 if x % 2 == 0 else 0
        if run >= policy.even_digits_limit:
            out.append("even_digits")
            break
    half = LENGTH // 2
    if number[:half] == number[half:]:
        out.append("halves_equal")
    if number[:half] == number[half:][::-1]:
        out.append("halves_mirrored")
    if any(bad and bad in number for bad in policy.deny_list):
        out.append("deny_list")
    return out


def is_valid(number: str, policy: IdcsPolicy = IdcsPolicy()) -> bool:
    """True if ``number`` passes every filter of ``policy``."""
    return not violations(number, policy)


class IdcsSpaceExhausted(InternalError):
    """The policy rejects (nearly) every number: it is misconfigured."""


def draw(
    policy: IdcsPolicy = IdcsPolicy(),
    rng: random.Random | None = None,
    max_tries: int = 100_000,
) -> str:
    """Draw one random number that passes ``policy`` (uniqueness is checked by the caller)."""
    rng = rng or secrets.SystemRandom()
    body = LENGTH - 1 if policy.check_digit else LENGTH
    for _ in range(max_tries):
        payload = str(rng.randint(2, 9)) + "".join(str(rng.randrange(10)) for _ in range(body - 1))
        number = payload + verhoeff_digit(payload) if policy.check_digit else payload
        if not violations(number, policy):
            return number
    raise IdcsSpaceExhausted(f"no valid IDCS in {max_tries} draws; check the IDCS filters")
