"""A generation request as every protocol reduces it, and the checks they share."""

from __future__ import annotations

from typing import Annotated, TypeVar

import msgspec

MIN_SIDE = 64
MAX_SIDE = 2048
Side = Annotated[int, msgspec.Meta(ge=MIN_SIDE, le=MAX_SIDE)]
T = TypeVar("T")


class GenRequest(msgspec.Struct, frozen=True):
    """What the image is drawn from; a negative seed asks for a random one."""

    prompt: str
    negative_prompt: str
    width: int
    height: int
    seed: int


class BadInputError(ValueError):
    """The body cannot be read as a generation request; the message goes back in a 400."""


def decode(body: bytes, shape: type[T]) -> T:
    """``body`` as JSON of ``shape``; a :class:`BadInputError` naming the field otherwise."""
    try:
        return msgspec.json.decode(body, type=shape)
    except msgspec.DecodeError as exc:  # ValidationError is a DecodeError too
        raise BadInputError(str(exc)) from None


def check_side(name: str, value: int) -> int:
    """``value`` when it is a usable image side, else a :class:`BadInputError`."""
    if not MIN_SIDE <= value <= MAX_SIDE:
        raise BadInputError(f"{name} must be from {MIN_SIDE} to {MAX_SIDE}, got {value}")
    return value
