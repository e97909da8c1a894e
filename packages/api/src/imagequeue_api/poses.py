"""Poses as the create routes need them: read from the store at most every few seconds.

Every character creation names a pose and needs its name for the job; the catalog is a
handful of rows that change rarely, so each API process keeps what it read for
``max_age_s``. The store still checks the pose exists when the character is written.
"""

from __future__ import annotations

import time

from imagequeue_common.store import CharacterStore, Pose


class PoseCache:
    """Known poses by id, each re-read once it is older than ``max_age_s``."""

    def __init__(self, store: CharacterStore, max_age_s: float = 10.0) -> None:
        self.store = store
        self.max_age_s = max_age_s
        self._poses: dict[str, tuple[Pose, float]] = {}

    async def get(self, pose_id: str) -> Pose:
        """The pose; ``PoseNotFoundError`` for an unknown id (never cached, so the map
        holds catalog entries only)."""
        now = time.monotonic()
        hit = self._poses.get(pose_id)
        if hit is not None and now - hit[1] <= self.max_age_s:
            return hit[0]
        pose = await self.store.get_pose(pose_id)
        self._poses[pose_id] = (pose, now)
        return pose
