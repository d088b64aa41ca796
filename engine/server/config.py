"""How the server answers: the settings of ``scorer serve`` and ``create_app``."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import InputError

__all__ = ["ServerConfig"]


@dataclass(frozen=True, kw_only=True)
class ServerConfig:
    """How the server answers. Every field has a safe default.

    Attributes:
        served_model_name: the name in responses and ``/v1/models``; default the model path.
        api_key: when set, every route but health/metrics/version/docs needs
            ``Authorization: Bearer <key>``.
        max_documents_per_request: more documents in one request answer 413.
        max_body_bytes: a larger request body answers 413.
        batching: merge concurrent requests into one model call (dynamic micro-batching).
        batch_wait_ms: how long a request waits for others to join its batch.
        max_batch_pairs / max_batch_tokens: the budget of one merged model call (tokens are
            estimated at 4 characters each).
    """

    served_model_name: str | None = None
    api_key: str | None = field(default=None, repr=False)
    max_documents_per_request: int = 1000
    max_body_bytes: int = 8 * 1024 * 1024
    batching: bool = True
    batch_wait_ms: float = 2.0
    max_batch_pairs: int = 256
    max_batch_tokens: int = 32768

    def __post_init__(self) -> None:
        for name in ("max_documents_per_request", "max_body_bytes", "max_batch_pairs",
                     "max_batch_tokens"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"{name} must be a positive int, got {value!r}.")
        wait = self.batch_wait_ms
        if isinstance(wait, bool) or not isinstance(wait, (int, float)) or wait < 0:
            raise InputError(f"batch_wait_ms must be a number ≥ 0, got {self.batch_wait_ms!r}.")
        if self.api_key is not None and not self.api_key:
            raise InputError("api_key is empty; pass a key or None to turn auth off.")
