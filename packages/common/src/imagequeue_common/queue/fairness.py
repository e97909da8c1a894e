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


TIES = 512
TIER = 10**15
PARKED = 4 * 10**15
"""The waiting set's score = (strict: rank * ``TIER``) + tag * ``TIES`` + sequence, plus
``PARKED`` for a job of a user at ``USER_MAX_ACTIVE`` (``_lib.lua``)."""


def tag_of(score: float, priority: str, strict: bool) -> int:
    """The tag in a waiting job's score."""
    score = score - PARKED if score >= PARKED else score
    if strict:
        score -= PRIORITIES.index(priority) * TIER
    return int(score // TIES)


def vt_field(priority: str, strict: bool) -> str:
    """The meta hash's field holding the virtual time ``priority``'s tags count from."""
    return f"vt:{priority}" if strict else "vt"


def increments(policy: str, weights: str) -> dict[str, int]:
    """Each priority's increment of the tag per job (``policy_arg``'s numbers)."""
    if policy == "strict":
        return dict.fromkeys(PRIORITIES, 1)
    return dict(zip(PRIORITIES, map(int, policy_arg(policy, weights)[2:].split(":")), strict=True))


NO_DEADLINES = "high=0,normal=0,low=0"
MAX_DEADLINE_S = 7 * 86400
"""The longest deadline to start a setting or a request may give: a week."""


def per_priority(text: str, low: int, high: int) -> dict[str, int] | None:
    """``high=4,normal=2,low=1`` as a mapping (each priority once, each value a whole number
    from ``low`` to ``high``), or None when ``text`` is not that."""
    values: dict[str, int] = {}
    for part in text.split(","):
        name, sep, raw = part.partition("=")
        priority = name.strip()
        try:
            value = int(raw.strip())
        except ValueError:
            return None
        if not sep or priority not in PRIORITIES or priority in values or not low <= value <= high:
            return None
        values[priority] = value
    return values if len(values) == len(PRIORITIES) else None


def parse_weights(text: str) -> dict[str, int] | None:
    """``PRIORITY_WEIGHTS``: each priority's weight, 1-100 (None when malformed)."""
    return per_priority(text, 1, 100)


def parse_deadlines(text: str) -> dict[str, int] | None:
    """``START_DEADLINE_S``: each priority's default seconds to start, 0 (none) to a week
    (None when malformed)."""
    return per_priority(text, 0, MAX_DEADLINE_S)


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
