"""The prompt for a character in a pose, and the seed that makes a job's image repeatable."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from imagequeue_common.store import Character, Pose

import zlib
from typing import Any

STYLE = "detailed character illustration, high quality"
MAX_PROMPT_CHARS = 1500
_TRAIT_KEYS_SKIPPED = ("poseid", "id")


def build_prompt(character: Character, pose: Pose) -> str:
    """Name, description, personality traits and the pose's fragment, in that order."""
    parts = [character.name, character.description, *_traits(character.personality), pose.prompt]
    parts.append(STYLE)
    prompt = ", ".join(p.strip() for p in parts if p and p.strip())
    return prompt[:MAX_PROMPT_CHARS]


def seed_for(job_id: str) -> int:
    """A stable seed per job: a retry asks for the same picture, not a new one."""
    return zlib.crc32(job_id.encode()) & 0x7FFFFFFF


def _traits(personality: dict[str, Any]) -> list[str]:
    traits: list[str] = []
    for key, value in personality.items():
        if key.lower() in _TRAIT_KEYS_SKIPPED or key.lower().endswith("id"):
            continue
        if isinstance(value, str):
            traits.append(value[:200])
        elif isinstance(value, list):
            traits.extend(v[:100] for v in value[:10] if isinstance(v, str))
    return traits
