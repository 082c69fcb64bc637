"""Checks of a config dataclass's fields: types against annotations, ranges, choices.

Used by every config section (:mod:`segqc.config`, :mod:`segqc.data.preprocess`): each error is a
:class:`~segqc.errors.FieldError` naming ``section.key`` and saying what was expected and what was found.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any

from segqc.errors import FieldError, did_you_mean

_NUMBER_TEXT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def reject_invalid(config: Any, section: str, checks: dict[str, tuple[bool, str]],
                   ordered: Sequence[tuple[str, str]] = ()) -> None:
    """Raise a FieldError naming the first field whose check failed and what it expects.

    Args:
        config: The config dataclass.
        section: Its section name.
        checks: Field name -> (whether its value is valid, what a valid value is).
        ordered: Pairs of fields ``(low, high)``, each valid alone, that must hold ``low <= high``; the error
            names both with their values (and lists ``high`` as related, see :func:`segqc.config.merged_config`).
    """
    for name, (ok, expected) in checks.items():
        if not ok:
            raise FieldError(section, name, f"invalid value {getattr(config, name)!r}; expected {expected}")
    for low, high in ordered:
        if getattr(config, low) > getattr(config, high):
            raise FieldError(section, low, f"expected {low} <= {high}, found {low} {getattr(config, low)!r} > "
                                           f"{high} {getattr(config, high)!r}", related=(high,))


def _describe(kind: Any) -> str:
    """What a value of annotation ``kind`` is, in words."""
    origin, arguments = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(argument) for argument in arguments)
    if origin in (list, Sequence, tuple):
        return f"a list of {_describe(arguments[0]).removeprefix('a ')}s" if arguments else "a list"
    names = {bool: "true or false", int: "a whole number", float: "a number", str: "text",
             type(None): "null", dict: "a mapping"}
    return names.get(origin or kind, "a value")


def describe_found(value: Any) -> str:
    """A value as the message shows what was found."""
    if isinstance(value, str):
        hint = " (YAML reads a number without a dot as text: write e.g. 1.0e-3)" if _NUMBER_TEXT.fullmatch(
            value.strip()) else ""
        return f"text {value!r}{hint}"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, (list, tuple)):
        return f"the list {list(value)!r}"
    return "null" if value is None else repr(value)


def _matches(value: Any, kind: Any) -> bool:
    """Whether ``value`` has the type of annotation ``kind`` (a number must be finite)."""
    origin, arguments = typing.get_origin(kind), typing.get_args(kind)
    if kind is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, argument) for argument in arguments)
    if origin in (list, Sequence, tuple):
        return isinstance(value, (list, tuple)) and all(_matches(item, arguments[0]) for item in value)
    if origin is dict or kind is dict:
        return isinstance(value, Mapping)
    if kind is type(None):
        return value is None
    if kind is bool:
        return isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return isinstance(value, kind) if isinstance(kind, type) else True


def check_types(config: Any, section: str) -> None:
    """Check every field of a config dataclass against its annotation; whole numbers become floats where due.

    Raises:
        FieldError: A value of another type (or a non-finite number).
    """
    hints = typing.get_type_hints(type(config))
    for item in dataclasses.fields(config):
        value, kind = getattr(config, item.name), hints[item.name]
        if not _matches(value, kind):
            raise FieldError(section, item.name, f"expected {_describe(kind)}, found {describe_found(value)}")
        if kind is float:
            setattr(config, item.name, float(value))


def check_choice(config: Any, section: str, name: str, allowed: Sequence[str]) -> None:
    """Refuse a value that is not one of ``allowed``, with a "did you mean"."""
    value = getattr(config, name)
    if value not in allowed:
        raise FieldError(section, name, f"{value!r} is not one of {', '.join(allowed)}"
                                        f"{did_you_mean(str(value), allowed)}")
