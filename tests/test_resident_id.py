"""GB 11643 resident identity numbers."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ehospital.kit import resident_id


def test_known_valid_number() -> None:
    # The worked example of GB 11643-1999.
    parsed = resident_id.parse("11010519491231002X")
    assert parsed.birth_date == date(1949, 12, 31)
    assert parsed.sex == "female"
    assert parsed.masked == "110***********002X"


def test_lower_case_x_and_spaces_are_accepted() -> None:
    assert resident_id.parse(" 11010519491231002x ").number == "11010519491231002X"


@pytest.mark.parametrize(
    ("number", "reason"),
    [
        ("110105194912310021", "checksum"),
        ("11010519491231002", "format"),
        ("1101051949123100AX", "format"),
        ("990105194912310020", "region"),
        ("110105194902300021", "birth_date"),  # 30 February
        ("110105299901010021", "birth_date"),  # in the future
    ],
)
def test_invalid_numbers_give_a_reason(number: str, reason: str) -> None:
    with pytest.raises(resident_id.InvalidResidentId) as exc:
        resident_id.parse(number)
    assert exc.value.reason == reason


@given(
    born=st.dates(min_value=date(1900, 1, 1), max_value=date(2025, 12, 31)),
    sequence=st.integers(0, 99),
    sex=st.sampled_from(["male", "female"]),
)
def test_make_then_parse_round_trips(born: date, sequence: int, sex: resident_id.Sex) -> None:
    parsed = resident_id.parse(resident_id.make("440305", born, sequence, sex))
    assert (parsed.birth_date, parsed.sex) == (born, sex)


@given(st.integers(0, 16), st.integers(0, 9))
def test_any_single_digit_change_is_caught(position: int, digit: int) -> None:
    number = "11010519491231002X"
    changed = number[:position] + str(digit) + number[position + 1 :]
    if changed != number:
        with pytest.raises(resident_id.InvalidResidentId):
            resident_id.parse(changed)
