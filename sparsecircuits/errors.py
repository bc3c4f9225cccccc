"""The one exception type for bad user input (the CLI prints it as one line and exits 2), and the
checks that turn a bad number into it where the number enters."""
from __future__ import annotations

import math

MAX_INT = 1 << 63
MAX_SEED = (1 << 32) - 1  # data seeds are mixed with the step into one 64-bit generator seed


class UserError(ValueError):
    """Input the user can fix (bad path, bad config, impossible setting)."""


def check_number(name: str, value, low: float | None = None, high: float | None = None,
                 low_open: bool = False, integer: bool = False):
    """`value` if it is a finite number (an integer with `integer`) in [low, high] ((low, high] with
    `low_open`); else a UserError naming `name`."""
    kind = "an integer" if integer else "a number"
    if (isinstance(value, bool) or not isinstance(value, int if integer else (int, float))
            or isinstance(value, float) and not math.isfinite(value)):
        raise UserError(f"{name} must be {kind}, got {value!r}")
    if isinstance(value, int) and abs(value) >= MAX_INT:  # a seed or size no 64-bit field can hold
        raise UserError(f"{name} is too large (a {abs(value).bit_length()}-bit integer; at most 2^63 - 1)")
    if low is not None and (value <= low if low_open else value < low):
        raise UserError(f"{name} must be {'>' if low_open else '>='} {low:g}, got {value!r}")
    if high is not None and value > high:
        raise UserError(f"{name} must be <= {high:g}, got {value!r}")
    return value


def check_seed(name: str, value) -> int:
    return check_number(name, value, 0, MAX_SEED, integer=True)
