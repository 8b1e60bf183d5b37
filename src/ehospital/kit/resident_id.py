"""Chinese resident identity numbers (GB 11643-1999): checksum, birth date and sex."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Literal

_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK_CODES = "10X98765432"
# Province-level codes of GB/T 2260 (71 Taiwan, 81 Hong Kong, 82 Macao, 83 HK/Macao/Taiwan permits).
_PROVINCES = frozenset(
    {
        11,
        12,
        13,
        14,
        15,
        21,
        22,
        23,
        31,
        32,
        33,
        34,
        35,
        36,
        37,
        41,
        42,
        43,
        44,
        45,
        46,
        50,
        51,
        52,
        53,
        54,
        61,
        62,
        63,
        64,
        65,
        71,
        81,
        82,
        83,
    }
)

Sex = Literal["male", "female"]


class InvalidResidentId(ValueError):
    """The number is malformed; `reason` is machine-readable."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class ResidentId:
    number: str
    region: str
    birth_date: date
    sex: Sex

    @property
    def masked(self) -> str:
        """The number as shown on screens: region and check digit hidden."""
        return mask(self.number)


def check_digit(first17: str) -> str:
    """The 18th character for the first 17 digits (ISO 7064 MOD 11-2)."""
    total = sum(int(d) * w for d, w in zip(first17, _WEIGHTS, strict=True))
    return _CHECK_CODES[total % 11]


def mask(number: str) -> str:
    return number[:3] + "*" * (len(number) - 7) + number[-4:] if len(number) > 7 else "*" * 4


def parse(raw: str, *, today: date | None = None) -> ResidentId:
    """Validate an 18-character number and derive its birth date and sex."""
    number = raw.strip().upper()
    # isascii(): str.isdigit() also accepts digits such as "²" that int() cannot read.
    if (
        len(number) != 18
        or not number.isascii()
        or not number[:17].isdigit()
        or not (number[17].isdigit() or number[17] == "X")
    ):
        raise InvalidResidentId("format", "a resident ID number has 17 digits then a digit or X")
    if int(number[:2]) not in _PROVINCES:
        raise InvalidResidentId("region", f"unknown province code {number[:2]}")
    try:
        born = date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
    except ValueError as exc:
        raise InvalidResidentId("birth_date", "the birth date inside the number is not a date") from exc
    if born.year < 1880 or born > (today or date.today()):
        raise InvalidResidentId("birth_date", "the birth date inside the number is impossible")
    expected = check_digit(number[:17])
    if number[17] != expected:
        raise InvalidResidentId("checksum", "the check digit does not match (GB 11643)")
    sex: Sex = "male" if int(number[16]) % 2 == 1 else "female"
    return ResidentId(number=number, region=number[:6], birth_date=born, sex=sex)


def make(region: str, born: date, sequence: int, sex: Sex) -> str:
    """Build a valid number (for demo data and tests): sequence 0-99, sex sets the parity."""
    order = (sequence % 100) * 10 + (1 if sex == "male" else 2)
    first17 = f"{region}{born:%Y%m%d}{order % 1000:03d}"
    return first17 + check_digit(first17)
