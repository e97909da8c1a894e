"""How the waiting set is ordered: the policy string the Lua scripts take (``_lib.lua``).

Inside a priority every user gets their turn (self-clocked fair queueing: a job's tag is the
virtual time or its user's last tag, whichever is later, plus its increment; claims go in tag
order and move the virtual time up to the claimed tag). Between priorities:

- ``strict`` (the seed's behaviour): a lower priority starts only when no higher one waits;
- ``weighted``: one virtual time for all, a job's increment ``lcm / weight``. With weights
  ``high=4,normal=2,low=1`` a user's high job counts a quarter of a low one, so a flood of
  high jobs takes four turns for each low one instead of every turn: a low job waits at
  most four turns of every user ahead of it, never forever.
"""

from __future__ import annotations

DEFAULT_WEIGHTS = "high=4,normal=2,low=1"
PRIORITIES = ("high", "normal", "low")
"""``contracts.Priority``'s values, highest first (the settings, imported by contracts, read
this module)."""
UNIT = 240
"""The increment of a job of weight 1 (weight ``w``: ``UNIT / w``)."""


def parse_weights(text: str) -> dict[str, int] | None:
    """``high=4,normal=2,low=1`` as a mapping (each priority once, weights 1-100), or
    None when ``text`` is not that."""
    weights: dict[str, int] = {}
    for part in text.split(","):
        name, sep, value = part.partition("=")
        priority = name.strip()
        try:
            weight = int(value.strip())
        except ValueError:
            return None
        if not sep or priority not in PRIORITIES or priority in weights or not 1 <= weight <= 100:
            return None
        weights[priority] = weight
    return weights if len(weights) == len(PRIORITIES) else None


def policy_arg(policy: str, weights: str) -> str:
    """What the scripts take: ``s``, or ``w:<high>:<normal>:<low>``, each priority's
    increment ``240 / weight`` (rounded: exact for the weights that divide 240, which are
    all of 1-6, 8, 10, 12, 15, 16, 20, 24, 30, 40, 48, 60 and beyond)."""
    if policy == "strict":
        return "s"
    parsed = parse_weights(weights)
    if parsed is None:
        raise ValueError(f"bad priority weights {weights!r}")
    return "w:" + ":".join(str(max(round(UNIT / parsed[p]), 1)) for p in PRIORITIES)
