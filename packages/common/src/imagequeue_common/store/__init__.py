"""The character store: characters and poses behind one protocol, chosen by ``DATABASE_URL``."""

from imagequeue_common.store.base import CharacterStore
from imagequeue_common.store.models import Character, NewCharacter, Pose
from imagequeue_common.store.open import DEFAULT_DATABASE_URL, open_store
from imagequeue_common.store.poses import DEFAULT_POSES

__all__ = [
    "DEFAULT_DATABASE_URL",
    "DEFAULT_POSES",
    "Character",
    "CharacterStore",
    "NewCharacter",
    "Pose",
    "open_store",
]
