"""IDCS generator and validator: known vectors and properties (hypothesis)."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from central_api.identity.idcs import (
    IdcsPolicy,
    IdcsSpaceExhausted,
    draw,
    is_valid,
    verhoeff_digit,
    verhoeff_valid,
    violations,
)

NO_CHECK = IdcsPolicy(check_digit=False)


def test_verhoeff_known_vectors():
    assert verhoeff_digit("236") == "3"
    assert verhoeff_digit("12345") == "1"
    assert verhoeff_digit("142857") == "0"
    assert verhoeff_valid("2363") and not verhoeff_valid("2364")
    with pytest.raises(ValueError):
        verhoeff_digit("12a")


@pytest.mark.parametrize(
    ("number", "reason"),
    [
        ("0395827146", "leading_digit"),
        ("1395827146", "leading_digit"),
        ("2345827146", "sequence"),  # 2-3-4
        ("2987295814", "sequence"),  # 9-8-7
        ("2395527146", "repeating_digit"),  # 55
        ("2395813957", "repeating_block"),  # 395 ... 395
        ("2395824683", "even_digits"),  # 8-2-4-6
        ("2395723957", "halves_equal"),
        ("2395775932", "halves_mirrored"),
        ("12345", "format"),
        ("23958271460", "format"),
        ("23958x7146", "format"),
        ("٢٣٩٥٨٢٧١٤٦", "format"),  # Arabic-Indic digits are not ASCII digits
    ],
)
def test_each_filter_rejects_its_case(number: str, reason: str):
    assert reason in violations(number, NO_CHECK)
    assert not is_valid(number, NO_CHECK)


def test_every_adjacent_transposition_changes_the_checksum():
    # exhaustive over the 8 position classes: p^i(a) p^(i+1)(b) != p^i(b) p^(i+1)(a) in D5
    for i in range(8):
        for a in range(10):
            for b in range(10):
                if a != b:
                    s1 = verhoeff_digit("2" + f"{a}{b}" + "0" * i)
                    s2 = verhoeff_digit("2" + f"{b}{a}" + "0" * i)
                    assert s1 != s2, (i, a, b)


def test_deny_list_and_check_digit_switch():
    n = draw(IdcsPolicy(), random.Random(3))
    assert is_valid(n)
    assert "deny_list" in violations(n, IdcsPolicy(deny_list=(n[2:6],)))
    bad_check = n[:-1] + str((int(n[-1]) + 1) % 10)
    assert "check_digit" in violations(bad_check)
    assert "check_digit" not in violations(bad_check, NO_CHECK)


def test_misconfigured_policy_is_reported():
    deny_all = IdcsPolicy(deny_list=tuple("23456789"))  # every first digit is denied
    with pytest.raises(IdcsSpaceExhausted):
        draw(deny_all, random.Random(0), max_tries=500)


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=0, max_value=2**64))
def test_drawn_numbers_are_always_valid(seed: int):
    n = draw(IdcsPolicy(), random.Random(seed))
    assert len(n) == 10 and n.isdigit() and n[0] not in "01"
    assert violations(n) == []
    assert verhoeff_valid(n)


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=2**64), st.data())
def test_any_single_digit_error_is_caught(seed: int, data: st.DataObject):
    n = draw(IdcsPolicy(), random.Random(seed))
    i = data.draw(st.integers(0, 9))
    d = data.draw(st.sampled_from([c for c in "0123456789" if c != n[i]]))
    assert not verhoeff_valid(n[:i] + d + n[i + 1 :])


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=2**64), st.integers(0, 8))
def test_any_adjacent_swap_is_caught(seed: int, i: int):
    n = draw(IdcsPolicy(), random.Random(seed))
    swapped = n[:i] + n[i + 1] + n[i] + n[i + 2 :]
    assert swapped == n or not verhoeff_valid(swapped)


@settings(max_examples=300)
@given(st.text(max_size=14))
def test_validator_never_crashes_and_agrees_with_violations(s: str):
    v = violations(s)
    assert is_valid(s) == (v == [])
    if len(s) != 10 or not (s.isascii() and s.isdigit()):
        assert v == ["format"]


@settings(max_examples=100, deadline=None)
@given(st.integers(min_value=0, max_value=2**64))
def test_without_check_digit_only_the_filters_apply(seed: int):
    n = draw(NO_CHECK, random.Random(seed))
    assert violations(n, NO_CHECK) == []
