"""Find files that ship inside the package (templates, datasets) from a wheel or a checkout."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

__all__ = ["templates_dir"]


def templates_dir() -> Path:
    """The folder holding the bundled ``*.jinja`` score templates.

    In a wheel, hatch force-includes the repo's top-level ``templates/`` as ``engine/templates``;
    in a checkout (editable install) it is the ``templates/`` folder beside ``engine/``.
    """
    packaged = Path(str(resources.files("engine"))) / "templates"
    if packaged.is_dir():
        return packaged
    checkout = Path(__file__).resolve().parent.parent / "templates"
    if checkout.is_dir():
        return checkout
    raise FileNotFoundError(
        "scorer's bundled templates folder is missing; reinstall the package (pip install scorer)."
    )
