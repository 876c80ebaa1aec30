"""Checking config values against type hints, and showing values in messages."""

from __future__ import annotations

import difflib
import math
import reprlib
import types
import typing
from typing import Any


class ConfigError(ValueError):
    """A config key, value or file that cannot be used; the message says which and where."""


def check_type(where: str, value: Any, expected: Any) -> Any:
    """Return ``value`` (lists become tuples where a tuple is expected) or raise ConfigError."""
    if expected is Any:
        return value
    if expected in (int, float) and isinstance(value, str):
        value = number_from_text(value)  # YAML reads 1e6 (no dot) as a string
    origin = typing.get_origin(expected)
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(expected):
            try:
                return check_type(where, value, option)
            except ConfigError:
                continue
        raise ConfigError(f"{where}: expected {type_name(expected)}, got {show(value)}")
    if expected is type(None):
        if value is None:
            return None
    elif expected is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if isinstance(value, int) and not -(2**1023) < value < 2**1023:
                raise ConfigError(f"{where}: {show(value)} is too large for a float")
            if math.isnan(value):
                raise ConfigError(f"{where}: expected a number, got nan")
            return float(value)
    elif expected is int:
        if isinstance(value, float) and value.is_integer():  # 1e6 in YAML is a float
            value = int(value)
        if isinstance(value, int) and not isinstance(value, bool):
            if not -(2**63) <= value < 2**63:  # counts and seeds end up in int64 tensors and arrays
                raise ConfigError(f"{where}: {show(value)} does not fit in 64 bits")
            return value
    elif origin is tuple:
        if isinstance(value, (list, tuple)):
            (item_type, *_) = typing.get_args(expected) or (Any,)
            return tuple(check_type(where, item, item_type) for item in value)
    elif origin is list:
        if isinstance(value, (list, tuple)):
            (item_type, *_) = typing.get_args(expected) or (Any,)
            return [check_type(where, item, item_type) for item in value]
    elif isinstance(expected, type) and isinstance(value, expected):
        return value
    raise ConfigError(f"{where}: expected {type_name(expected)}, got {show(value)}")


def json_problem(value: Any) -> str | None:
    """Why ``value`` is not a JSON value (numbers, strings, booleans, null, lists, string-keyed maps);
    infinities and NaN pass, as checkpoints and config.yaml both write them."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return None
    if isinstance(value, (list, tuple)):
        return next((problem for item in value if (problem := json_problem(item))), None)
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return f"key {show(key)} is not a string"
            if problem := json_problem(item):
                return problem
        return None
    return f"{show(value)} ({type(value).__name__}) is not a JSON value"


def number_from_text(text: str) -> Any:
    try:
        return float(text)
    except ValueError:
        return text


def type_name(expected: Any) -> str:
    if typing.get_origin(expected) in (typing.Union, types.UnionType):
        return " or ".join(type_name(option) for option in typing.get_args(expected))
    if expected is type(None):
        return "null"
    return getattr(expected, "__name__", str(expected))


def did_you_mean(word: str, choices: Any) -> str:
    if not isinstance(word, str):
        return ""
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = 60


def show(value: Any) -> str:
    """A short repr for messages (long strings and containers are cut; huge ints have no repr)."""
    try:
        return _REPR.repr(value)
    except ValueError:  # an int beyond Python's int-to-text conversion limit
        if isinstance(value, int):
            return f"an integer of {round(value.bit_length() * math.log10(2))} digits"
        return f"a {type(value).__name__} holding an integer too large to show"
