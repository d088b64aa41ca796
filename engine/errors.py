"""The one exception tree of the project.

Every error the engine raises on purpose derives from :class:`ScorerError`, so callers can
catch one class. Messages say what happened, what was expected and how to fix it.

::

    ScorerError
    ├── InputError (also ValueError)          bad queries/documents/options given to a call
    │   ├── PairingError                       "Input lengths must be either 1:1, 1:N or N:N"
    │   └── InputTooLongError                  over-long input when overflow="error"
    ├── ModelLoadError                         path missing, not a model, corrupt weights
    │   └── ScoreTypeDetectionError            the checkpoint doesn't say which score type
    ├── UnsupportedScoreType (also ValueError) a score type this checkpoint can't serve
    ├── TemplateError                          score templates: unknown name, render failure
    ├── NonFiniteScoreError                    a model gave NaN/inf for some documents
    ├── RemoteScoreError                       a rerank endpoint failed (status + server message)
    └── MissingDependency (also ImportError)   an optional extra is not installed
"""

from __future__ import annotations

__all__ = [
    "InputError",
    "InputTooLongError",
    "MissingDependency",
    "ModelLoadError",
    "NonFiniteScoreError",
    "PairingError",
    "RemoteScoreError",
    "ScoreTypeDetectionError",
    "ScorerError",
    "TemplateError",
    "UnsupportedScoreType",
]


class ScorerError(Exception):
    """Base class of every error raised by scorer."""


class InputError(ScorerError, ValueError):
    """The queries, documents or per-call options are not valid."""


class PairingError(InputError):
    """The two sides can't be paired 1:1, 1:N or N:N (vLLM's rule)."""


class InputTooLongError(InputError):
    """An input is longer than the model accepts and truncation was turned off."""


class ModelLoadError(ScorerError):
    """A model could not be found or loaded."""


class ScoreTypeDetectionError(ModelLoadError):
    """The checkpoint's files don't decide the score type; pass ``score_type=``."""


class UnsupportedScoreType(ScorerError, ValueError):
    """The requested score type is unknown or this checkpoint can't serve it."""


class TemplateError(ScorerError):
    """A score template is unknown, unsafe or failed to render."""


class NonFiniteScoreError(ScorerError):
    """A model scored some documents NaN or ±inf, which can't be ranked.

    Attributes:
        indices: the positions (in the call's pair order) of the non-finite scores.
    """

    def __init__(self, message: str, *, indices: list[int]) -> None:
        super().__init__(message)
        self.indices = indices


class RemoteScoreError(ScorerError):
    """A remote rerank endpoint failed.

    Attributes:
        status_code: the HTTP status, or None when no response came back.
        server_message: the server's own error message, if any.
    """

    def __init__(
        self, message: str, *, status_code: int | None = None, server_message: str | None = None
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.server_message = server_message


class MissingDependency(ScorerError, ImportError):
    """An optional dependency is not installed; the message names the extra to install."""
