"""A prediction's value: what each task expects, and turning what was found (CSV text
or a JSON value) into a float or the text of its problem."""

from __future__ import annotations

import math
import re

from evaluator.io.table_text import json_kind, short

NUMBER_RE = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_DECIMAL_COMMA_RE = re.compile(r"[+-]?\d+,\d+")
NON_FINITE_WORDS = frozenset(
    {"nan", "+nan", "-nan", "inf", "+inf", "-inf", "infinity", "+infinity", "-infinity"}
)
TRUE_WORDS = frozenset({"true"})
FALSE_WORDS = frozenset({"false"})


def expected_value(task: int) -> str:
    if task == 2:
        return "a finite risk score (a number, higher = earlier recurrence)"
    return "a probability of HPV positive in [0, 1], or true/false"


def example_value(task: int) -> str:
    return "0.42" if task == 3 else "1.37"


def convert(raw: object, *, task: int, from_text: bool) -> float | str:
    """The prediction as a float, or the text of the problem (what was found and why)."""
    value = _from_text(raw, task) if from_text else _from_json(raw, task)
    if isinstance(value, str):
        return value
    if task == 3 and not (0.0 <= value <= 1.0):
        return f"the probability {value!r} is outside [0, 1]"
    return value


def _boolean_word(low: str, task: int) -> float | None:
    """1.0 or 0.0 for ``true``/``false`` (lower-cased) in Task 3, else None."""
    if task == 3 and low in TRUE_WORDS:
        return 1.0
    if task == 3 and low in FALSE_WORDS:
        return 0.0
    return None


def _from_text(raw: object, task: int) -> float | str:
    assert isinstance(raw, str)
    text = raw.strip()
    low = text.lower()
    if not text:
        return "the value is empty"
    word = _boolean_word(low, task)
    if word is not None:
        return word
    if low in NON_FINITE_WORDS:
        return f"the value {text!r} is not a finite number"
    if NUMBER_RE.fullmatch(text):
        value = float(text)
        if not math.isfinite(value):
            return f"the value {short(text)} is too large to be a finite number"
        return value
    if _DECIMAL_COMMA_RE.fullmatch(text):
        return (
            f"the value {text!r} uses a decimal comma; write a decimal point "
            f"({text.replace(',', '.')})"
        )
    return f"the value {short(text)} is not a number"


def _from_json(raw: object, task: int) -> float | str:
    if raw is None:
        return "the value is empty (null)"
    if isinstance(raw, bool):
        if task == 3:
            return 1.0 if raw else 0.0
        return f"the value is {json_kind(raw)}, not a number"
    if isinstance(raw, str):
        word = _boolean_word(raw.strip().lower(), task)
        if word is not None:
            return word
        if not raw.strip():
            return "the value is an empty string"
        return f"the value is {json_kind(raw)}, not a number (write numbers without quotes)"
    if isinstance(raw, int):
        try:
            return float(raw)
        except OverflowError:
            return "the value is too large to be a finite number"
    if isinstance(raw, float):
        if math.isnan(raw):
            return "the value is NaN, not a finite number"
        if math.isinf(raw):
            return f"the value is {'-' if raw < 0 else ''}Infinity, not a finite number"
        return raw
    return f"the value is {json_kind(raw)}, not a number"
