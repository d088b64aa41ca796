"""ScoreType → backend class. Explicit, so a lookup failure can list the options."""

from __future__ import annotations

from ..types import ScoreType
from .base import LocalBackend
from .bi_encoder import BiEncoderBackend
from .cross_encoder import CrossEncoderBackend
from .late_interaction import LateInteractionBackend

BACKENDS: dict[ScoreType, type[LocalBackend]] = {
    ScoreType.CROSS_ENCODER: CrossEncoderBackend,
    ScoreType.LATE_INTERACTION: LateInteractionBackend,
    ScoreType.BI_ENCODER: BiEncoderBackend,
}
