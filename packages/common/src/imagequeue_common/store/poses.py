"""The default poses, seeded into every store at open.

Ids are stable: characters and saved prompts refer to them, so never rename one; add new
poses instead. Seeding skips ids that already exist, so an operator's edit to a pose's row
survives restarts.
"""

from __future__ import annotations

from imagequeue_common.store.models import Pose

DEFAULT_POSES: tuple[Pose, ...] = (
    Pose("pose-standing", "Standing portrait", "standing upright, full-body portrait, relaxed"),
    Pose("pose-sitting", "Sitting", "sitting comfortably on a chair, hands resting on the lap"),
    Pose("pose-walking", "Walking", "walking forward mid-stride, natural movement"),
    Pose("pose-arms-crossed", "Arms crossed", "standing with arms crossed, confident expression"),
    Pose("pose-waving", "Waving", "waving hello with one hand raised, friendly smile"),
    Pose(
        "pose-over-shoulder",
        "Looking over shoulder",
        "turned away, looking back over the shoulder toward the viewer",
    ),
    Pose("pose-close-up", "Close-up portrait", "head-and-shoulders close-up, facing the viewer"),
    Pose("pose-action", "Action pose", "dynamic action pose, mid-motion, energetic"),
    Pose("pose-thinking", "Thinking", "hand on chin, thoughtful expression, gazing upward"),
    Pose("pose-reading", "Reading", "holding an open book, reading attentively"),
)
