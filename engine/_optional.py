"""One helper for optional imports, so every missing extra gets the same clear message."""

from __future__ import annotations

import importlib
from types import ModuleType

from .errors import MissingDependency


def require(module: str, *, extra: str, purpose: str) -> ModuleType:
    """Import ``module`` or raise MissingDependency naming the pip extra that provides it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependency(
            f"{purpose} needs the '{module}' package, which is not installed. "
            f"Install it with: pip install 'scorer[{extra}]'"
        ) from exc
