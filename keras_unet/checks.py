"""Argument checks for the public functions of keras_unet.

Each check names the argument, the rule, and what was received, in the
style of Keras' own errors ("... Received: name=value"). They are used at
the public boundary only: internal helpers trust their callers.
"""

from __future__ import annotations

import math
import numbers

__all__ = [
    "check_choice",
    "check_int",
    "check_number",
    "check_pair",
    "check_probability",
    "check_range",
]


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_int(value, name, minimum=1, hint=""):
    """Return `value` as an int, or raise an error naming the argument.

    Args:
        value: the argument (bool is refused; numpy integers are fine).
        name: the argument's name, shown in backticks.
        minimum: the smallest allowed value.
        hint: optional words on what the argument means.

    Raises:
        TypeError: not an integer. ValueError: below `minimum`.

    Examples:
        >>> check_int(3, "depth")
        3
    """
    what = f" ({hint})" if hint else ""
    if not _is_int(value):
        raise TypeError(
            f"`{name}` must be an integer >= {minimum}{what}. "
            f"Received: {name}={value!r}"
        )
    if value < minimum:
        raise ValueError(
            f"`{name}` must be >= {minimum}{what}. Received: {name}={value!r}"
        )
    return int(value)


def check_number(
    value, name, minimum=None, maximum=None, *, strict=False, hint=""
):
    """Return `value` as a finite float within bounds, or raise a ValueError.

    Args:
        value: the argument (bool is refused).
        name: the argument's name.
        minimum: lower bound (None: none).
        maximum: upper bound, exclusive (None: none).
        strict: the lower bound is exclusive (``> minimum``).
        hint: optional words on what the argument means.

    Examples:
        >>> check_number(0.5, "dropout", 0.0, 1.0)
        0.5
    """
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if ok:
        value = float(value)
        ok = math.isfinite(value)
        if ok and minimum is not None:
            ok = value > minimum if strict else value >= minimum
        if ok and maximum is not None:
            ok = value < maximum
    if not ok:
        rules = []
        if minimum is not None:
            rules.append(f"{'>' if strict else '>='} {minimum:g}")
        if maximum is not None:
            rules.append(f"< {maximum:g}")
        rule = f" {' and '.join(rules)}" if rules else ""
        what = f" ({hint})" if hint else ""
        raise ValueError(
            f"`{name}` must be a finite number{rule}{what}. "
            f"Received: {name}={value!r}"
        )
    return value


def check_probability(value, name, hint=""):
    """Return `value` as a float in [0, 1] (both ends), or raise a ValueError.

    Examples:
        >>> check_probability(0.5, "threshold")
        0.5
    """
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if not (ok and 0.0 <= float(value) <= 1.0):
        what = f" ({hint})" if hint else ""
        raise ValueError(
            f"`{name}` must be a probability in [0, 1]{what}. "
            f"Received: {name}={value!r}"
        )
    return float(value)


def check_choice(value, name, choices, hint=""):
    """Return `value` if it is one of `choices`, else raise a ValueError.

    Examples:
        >>> check_choice("valid", "padding", ("valid", "same"))
        'valid'
    """
    if isinstance(value, bool) or value not in tuple(choices):
        what = f" ({hint})" if hint else ""
        raise ValueError(
            f"`{name}` must be one of {tuple(choices)}{what}. "
            f"Received: {name}={value!r}"
        )
    return value


def check_pair(value, name, minimum=1):
    """An int or a pair of ints as ``(rows, cols)``, each >= `minimum`.

    Examples:
        >>> check_pair(572, "tile_size"), check_pair((188, 204), "tile_size")
        ((572, 572), (188, 204))
    """
    if _is_int(value):
        pair = (value, value)
    else:
        try:
            pair = tuple(value)
        except TypeError:
            pair = ()
        if len(pair) != 2 or not all(_is_int(v) for v in pair):
            raise TypeError(
                f"`{name}` must be an integer or a pair of integers "
                f"(rows, columns). Received: {name}={value!r}"
            )
    if min(pair) < minimum:
        raise ValueError(
            f"`{name}` must be >= {minimum}. Received: {name}={value!r}"
        )
    return int(pair[0]), int(pair[1])


def check_range(value, name):
    """None, or a ``(low, high)`` pair with ``0 < low <= high`` as floats.

    Examples:
        >>> check_range((0.8, 1.25), "contrast")
        (0.8, 1.25)
    """
    if value is None:
        return None
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        lo = hi = math.nan
    if not 0 < lo <= hi < math.inf:
        raise ValueError(
            f"`{name}` must be None or a (low, high) pair with "
            f"0 < low <= high. Received: {name}={value!r}"
        )
    return lo, hi
