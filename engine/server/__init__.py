"""A small server that speaks vLLM's scoring API, backed by the local engine (extra ``server``).

::

    scorer serve path/to/model --port 8000 --api-key secret

or, from Python, ``create_app(Scorer.load(...))`` and any ASGI server. FastAPI is imported only
when ``create_app`` or ``ServerConfig`` is first used, so ``engine.cli`` can register ``serve``
without it.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ServerConfig", "create_app"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from .._optional import require

        require("fastapi", extra="server", purpose="The scoring server")
        from . import app

        return getattr(app, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
