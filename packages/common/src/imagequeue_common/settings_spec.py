"""How one setting is read from its environment variable and checked against its bounds,
both derived from its field in :class:`~imagequeue_common.settings.Settings`: the variable
is the field's name in upper case, the reading follows the field's type, and the bounds
are the ``msgspec.Meta`` of its annotation (a ``description`` there says what a special
value means). So nothing about a setting is written twice.
"""

from __future__ import annotations

import math
from typing import Any, Literal, get_args

import msgspec
import msgspec.inspect as mi

from imagequeue_common.errors import SettingsError


class Spec(msgspec.Struct, frozen=True):
    """One setting as its field's annotation states it: the variable, how its text is
    read, and its bounds. Built from the struct, so nothing here is written twice."""

    field: str
    env: str
    kind: Literal["int", "float", "bool", "str", "choice"]
    choices: tuple[str, ...] = ()
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    min_length: int | None = None
    note: str = ""

    def parse(self, raw: str) -> object:
        """The value of the variable's (stripped, non-empty) text."""
        text = raw.strip()
        if self.kind == "int":
            try:
                return int(text.replace("_", ""))
            except ValueError:
                raise SettingsError(f"{self.env} must be a whole number, got {raw!r}") from None
        if self.kind == "float":
            try:
                value = float(text)
            except ValueError:
                raise SettingsError(f"{self.env} must be a number, got {raw!r}") from None
            if not math.isfinite(value):
                raise SettingsError(f"{self.env} must be a finite number, got {raw!r}")
            return value
        if self.kind == "bool":
            if text.lower() in ("1", "true", "yes", "on"):
                return True
            if text.lower() in ("0", "false", "no", "off"):
                return False
            raise SettingsError(f"{self.env} must be true or false, got {raw!r}")
        if self.kind == "choice":
            if text.lower() not in self.choices:
                quoted = [f"'{c}'" for c in self.choices]
                allowed = ", ".join(quoted[:-1]) + " or " + quoted[-1]
                raise SettingsError(f"{self.env} must be {allowed}, got {raw!r}")
            return text.lower()
        return text

    def problem(self, value: object) -> str | None:
        """What is wrong with ``value`` by the field's bounds ("must be ..."), or None."""
        if isinstance(value, str):
            return "must not be empty" if self.min_length and not value else None
        if not isinstance(value, int | float) or isinstance(value, bool):
            return None
        if self.ge is not None and self.le is not None:
            wanted, ok = f"from {self.ge:g} to {self.le:g}", self.ge <= value <= self.le
        elif self.ge is not None:
            wanted = f"{self.ge:g} or more" if self.ge <= 0 else f"at least {self.ge:g}"
            ok = value >= self.ge
        elif self.gt is not None:
            wanted, ok = f"above {self.gt:g}", value > self.gt
        else:
            return None
        note = f" ({self.note})" if self.note else ""
        return None if ok else f"must be {wanted}{note}, got {value!r}"


def spec_of(field: mi.Field, hints: dict[str, Any]) -> Spec:
    """The :class:`Spec` of a struct field (its ``msgspec.inspect`` info, and the struct's
    type hints for a ``Literal``'s choices in their written order)."""
    kind: Any = field.type
    note = ""
    if isinstance(kind, mi.Metadata):
        note = str((kind.extra_json_schema or {}).get("description", ""))
        kind = kind.type
    if isinstance(kind, mi.UnionType):  # `str | None`: unset is None, a set one is a str
        kind = next(t for t in kind.types if not isinstance(t, mi.NoneType))
    env = field.name.upper()
    if isinstance(kind, mi.IntType | mi.FloatType):
        return Spec(field.name, env, "int" if isinstance(kind, mi.IntType) else "float",
                     ge=kind.ge, gt=kind.gt, le=kind.le, note=note)  # fmt: skip
    if isinstance(kind, mi.BoolType):
        return Spec(field.name, env, "bool")
    if isinstance(kind, mi.LiteralType):  # the choices in the order the type lists them
        return Spec(field.name, env, "choice", choices=tuple(get_args(hints[field.name])))
    if isinstance(kind, mi.StrType):
        return Spec(field.name, env, "str", min_length=kind.min_length)
    raise TypeError(f"no environment reading for setting {field.name}: {kind}")
