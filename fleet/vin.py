"""Vehicle Identification Numbers: 17 characters of the VIN alphabet (no I, O or Q).
The North-American check digit (position 9) is checked too, but a wrong one is a
warning, not a refusal: VINs from elsewhere need not carry one."""

from __future__ import annotations

import re

VIN_PATTERN = re.compile(r"[A-HJ-NPR-Z0-9]{17}")

# Letter values and position weights of 49 CFR 565.15.
_VALUES = {
    **{str(digit): digit for digit in range(10)},
    **dict(zip("ABCDEFGH", range(1, 9), strict=True)),
    **dict(zip("JKLMN", range(1, 6), strict=True)),
    "P": 7,
    "R": 9,
    **dict(zip("STUVWXYZ", range(2, 10), strict=True)),
}
_WEIGHTS = (8, 7, 6, 5, 4, 3, 2, 10, 0, 9, 8, 7, 6, 5, 4, 3, 2)


def normalise_vin(vin: str) -> str:
    return vin.strip().upper()


def vin_problems(vin: str) -> list[str]:
    """Why `vin` is not a VIN; empty when it is one (check digit aside)."""
    vin = normalise_vin(vin)
    if len(vin) != 17:
        return [f"A VIN has 17 characters; this has {len(vin)}."]
    if not VIN_PATTERN.fullmatch(vin):
        forbidden = sorted(set(vin) & set("IOQ"))
        if forbidden:
            return [f"A VIN never contains {', '.join(forbidden)} (they look like 1 and 0)."]
        return ["A VIN has only letters and digits."]
    return []


def check_digit(vin: str) -> str:
    """The check digit a North-American VIN should carry at position 9."""
    total = sum(_VALUES[char] * weight for char, weight in zip(vin, _WEIGHTS, strict=True))
    remainder = total % 11
    return "X" if remainder == 10 else str(remainder)


def check_digit_warning(vin: str) -> str | None:
    """A warning when a well-formed VIN fails the North-American check digit."""
    vin = normalise_vin(vin)
    if vin_problems(vin):
        return None
    expected = check_digit(vin)
    if vin[8] != expected:
        return (
            f"The check digit (9th character) is {vin[8]}, not {expected}: fine for VINs "
            "from outside North America; otherwise check for a typo."
        )
    return None
