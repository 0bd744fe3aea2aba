"""Typed option records: a value read from YAML, JSON or a flag becomes its field's type, and
a number is checked against its valid range.

Each layer declares its own records (:class:`~maskfocal.models.options.ModelOptions`,
:class:`~maskfocal.losses.options.LossOptions`, :class:`~maskfocal.decode.options.DecodeOptions`,
:class:`~maskfocal.inference.options.InferenceOptions` ...) with a ``RANGES`` table of its
numeric fields. :mod:`maskfocal.config` assembles them from YAML for training; a saved model's
records are read back with :func:`read_record`, without the config.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from maskfocal.errors import MaskfocalError

__all__ = ["AT_LEAST_ONE", "FRACTION", "NON_NEGATIVE", "POSITIVE", "PROBABILITY", "Range",
           "check_ranges", "coerce", "read_record"]


@dataclass(frozen=True)
class Range:
    """The valid values of a numeric key: finite, within ``[low, high]`` (``None``: no bound;
    ``open_low``/``open_high``: the bound itself excluded)."""

    low: float | None = None
    high: float | None = None
    open_low: bool = False
    open_high: bool = False

    def __contains__(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        if self.low is not None and (value < self.low or (self.open_low and value == self.low)):
            return False
        return self.high is None or not (value > self.high or
                                         (self.open_high and value == self.high))

    def __str__(self) -> str:
        if self.high is None:
            return f"{'>' if self.open_low else '>='} {self.low:g}"
        return (f"in {'(' if self.open_low else '['}{self.low:g}, {self.high:g}"
                f"{')' if self.open_high else ']'}")


POSITIVE = Range(0, open_low=True)
NON_NEGATIVE = Range(0)
AT_LEAST_ONE = Range(1)
FRACTION = Range(0, 1)
PROBABILITY = Range(0, 1, open_low=True, open_high=True)


def coerce(value: Any, kind: Any, key: str) -> Any:
    """Convert ``value`` to the field type ``kind``; raise naming ``key`` when it cannot."""
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(kind)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return coerce(value, option, key)
            except MaskfocalError as error:
                errors.append(str(error))
        raise MaskfocalError(errors[0] if errors else f"{key}: invalid value {value!r}")
    if origin is list:
        if isinstance(value, (list, tuple)):
            (item,) = typing.get_args(kind)
            return [coerce(entry, item, f"{key}[{i}]") for i, entry in enumerate(value)]
        raise MaskfocalError(f"{key}: expected a list, got {value!r}")
    if kind is bool:
        if isinstance(value, bool):
            return value
        raise MaskfocalError(f"{key}: expected true or false, got {value!r}")
    if kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise MaskfocalError(f"{key}: expected an integer, got {value!r}")
    if kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads 1e-4 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise MaskfocalError(f"{key}: expected a number, got {value!r}")
    if kind is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise MaskfocalError(f"{key}: expected a string, got {value!r}")
    raise MaskfocalError(f"{key}: unsupported type {kind}")


def check_ranges(record: Any, prefix: str = "") -> None:
    """Every field of ``record`` named in its class's ``RANGES`` within its range, or a
    one-line error naming the key (``prefix`` + field)."""
    for name, valid in getattr(type(record), "RANGES", {}).items():
        value = getattr(record, name)
        if value is not None and value not in valid:
            raise MaskfocalError(f"{prefix}{name} must be {valid}, got {value!r}")


def read_record(cls: type, values: Any, prefix: str = "", *, others: Collection[str] = ()):
    """A ``cls`` record from a saved mapping (a checkpoint's config section): each of its
    fields that the mapping holds converted to the field's type and range-checked, the others
    at their defaults. ``others``: keys the mapping may hold for other records (a saved
    ``model`` section also holds training's ``init_from``), not read here; any other key is
    an error."""
    if not isinstance(values, dict):
        raise MaskfocalError(f"{prefix.rstrip('.') or 'config'}: expected a mapping, got "
                             f"{values!r}")
    hints = typing.get_type_hints(cls)
    known = {field.name for field in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known - set(others))
    if unknown:
        raise MaskfocalError(f"unknown config key {prefix}{unknown[0]}; valid keys here: "
                             f"{', '.join(prefix + name for name in sorted(known | set(others)))}")
    fields = {name: coerce(value, hints[name], prefix + name)
              for name, value in values.items() if name in known}
    try:
        record = cls(**fields)
    except ValueError as error:  # a record's own __post_init__ check (an unknown mask ...)
        raise MaskfocalError(f"{prefix.rstrip('.')}: {error}") from None
    check_ranges(record, prefix)
    return record
