"""Argument checks shared by the modules (private)."""

from __future__ import annotations

import numbers


def check_int(value, name, minimum=1, hint=""):
    """Return `value` as an int, or raise an error naming the argument.

    Args:
        value: the argument (bool is refused; numpy integers are fine).
        name: the argument's name, shown in backticks.
        minimum: the smallest allowed value.
        hint: optional words on what the argument means.

    Raises:
        TypeError: not an integer. ValueError: below `minimum`.
    """
    what = f" ({hint})" if hint else ""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(
            f"`{name}` must be an integer >= {minimum}{what}. "
            f"Received: {name}={value!r}"
        )
    if value < minimum:
        raise ValueError(
            f"`{name}` must be >= {minimum}{what}. Received: {name}={value!r}"
        )
    return int(value)
