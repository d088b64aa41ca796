"""Score templates: jinja files that turn a (query, document) pair into one LLM reranker prompt.

A template receives ``messages`` — ``[{"role": "query", "content": q}, {"role": "document",
"content": d}]``, as vLLM passes them — plus keyword arguments such as ``instruction``, and reads
the two texts by role. Rendering uses a cached :class:`jinja2.sandbox.ImmutableSandboxedEnvironment`
with :class:`jinja2.StrictUndefined`: a template cannot reach files, the OS or Python internals,
cannot mutate its inputs, and a misspelt variable is an error instead of an empty string.

The environment otherwise matches Hugging Face's ``apply_chat_template`` (``trim_blocks``,
``lstrip_blocks``, no kept trailing newline), which is what vLLM renders score templates with,
so a template written for ``vllm serve --chat-template`` renders the same string here.

Example:
    >>> from engine.templates import load_template
    >>> load_template("nemotron_rerank").render("what is bm25?", "a ranking function")
    'question:what is bm25? \\n \\n passage:a ranking function'
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ._resources import templates_dir
from .errors import TemplateError

__all__ = [
    "RESERVED_TEMPLATE_KWARGS",
    "ScoreTemplate",
    "bundled_templates",
    "load_template",
    "score_messages",
]

# vLLM refuses these in chat_template_kwargs (they steer apply_chat_template itself); "messages"
# is what we pass the pair in.
RESERVED_TEMPLATE_KWARGS = frozenset({"messages", "chat_template", "tools", "tokenize"})

_SUFFIX = ".jinja"


def score_messages(query: str, document: str) -> list[dict[str, str]]:
    """The pair as vLLM hands it to a score template: one message per role."""
    return [{"role": "query", "content": query}, {"role": "document", "content": document}]


@functools.lru_cache(maxsize=1)
def _environment() -> Any:
    import jinja2
    from jinja2.ext import loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str) -> None:
        # The helper HF chat templates call to refuse bad input.
        raise jinja2.TemplateError(message)

    env = ImmutableSandboxedEnvironment(
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
        extensions=[loopcontrols],
        autoescape=False,
    )
    env.globals["raise_exception"] = raise_exception
    return env


@functools.lru_cache(maxsize=64)
def _compile(source: str, name: str) -> tuple[Any, frozenset[str]]:
    """The compiled template and the variables it reads from its context (cached by source)."""
    import jinja2
    from jinja2 import meta

    env = _environment()
    try:
        ast = env.parse(source)
        compiled = env.from_string(source)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(
            f"Score template {name!r} is not valid jinja: {exc.message} (line {exc.lineno})."
        ) from exc
    return compiled, frozenset(meta.find_undeclared_variables(ast))


@dataclass(frozen=True, kw_only=True)
class ScoreTemplate:
    """A loaded score template.

    Attributes:
        name: the bundled name, the file path, or "<inline>".
        source: the jinja text.
        origin: "bundled", "file" or "inline".
    """

    name: str
    source: str = field(repr=False)
    origin: Literal["bundled", "file", "inline"]

    def __post_init__(self) -> None:
        _compile(self.source, self.name)  # syntax errors surface at load, not at the first score

    @property
    def variables(self) -> frozenset[str]:
        """Names the template reads besides its own ``set`` variables (messages, instruction...)."""
        return _compile(self.source, self.name)[1]

    def check_kwargs(self, kwargs: Mapping[str, Any]) -> None:
        """Refuse keyword arguments that are reserved or that this template never reads.

        Raises:
            TemplateError: a reserved key, or a key the template would silently ignore.
        """
        reserved = sorted(set(kwargs) & RESERVED_TEMPLATE_KWARGS)
        if reserved:
            raise TemplateError(
                f"template kwargs contain reserved key(s) {reserved}; the pair is passed as "
                "`messages` and the template itself is chosen with template=."
            )
        unused = sorted(set(kwargs) - self.variables)
        if unused:
            reads = sorted(self.variables - {"messages", "raise_exception"}) or ["nothing else"]
            raise TemplateError(
                f"Score template {self.name!r} does not use {unused}, so they would be ignored; "
                f"besides `messages` it reads {reads}. Drop them or choose a template that "
                "uses them."
            )

    def render(self, query: str, document: str, **kwargs: Any) -> str:
        """The prompt for one pair.

        Raises:
            TemplateError: the template fails (undefined variable, refused attribute, ...).
        """
        compiled, _ = _compile(self.source, self.name)
        try:
            return str(compiled.render(messages=score_messages(query, document), **kwargs))
        except Exception as exc:  # jinja2 errors, SecurityError, the sandbox's OverflowError
            raise TemplateError(
                f"Score template {self.name!r} failed to render: {type(exc).__name__}: {exc}"
            ) from exc


def bundled_templates() -> tuple[str, ...]:
    """Names of the templates shipped with scorer (``templates/*.jinja``), sorted."""
    return tuple(sorted(p.name[: -len(_SUFFIX)] for p in templates_dir().glob(f"*{_SUFFIX}")))


def _bundled_path(name: str) -> Path | None:
    # vLLM's example folder spells some names with hyphens (bge-reranker-v2-gemma.jinja).
    stem = name.removesuffix(_SUFFIX).replace("-", "_")
    path = templates_dir() / f"{stem}{_SUFFIX}"
    return path if stem and "/" not in stem and "\\" not in stem and path.is_file() else None


def load_template(template: str | os.PathLike[str] | ScoreTemplate) -> ScoreTemplate:
    """A bundled template by name, a ``.jinja`` file by path, or jinja source given inline.

    A string with ``{{`` or ``{%`` in it is taken as the template itself (as vLLM's
    ``--chat-template`` does); otherwise a bundled name wins over a file of the same name.

    Raises:
        TemplateError: no bundled template of that name and no such file (the message lists
            the bundled names), an unreadable file, or invalid jinja.
    """
    if isinstance(template, ScoreTemplate):
        return template
    if not isinstance(template, (str, os.PathLike)):
        raise TemplateError(
            f"template must be a bundled name, a file path or jinja source, got "
            f"{type(template).__name__}."
        )
    text = os.fspath(template)
    if isinstance(template, str) and ("{{" in text or "{%" in text):
        return ScoreTemplate(name="<inline>", source=text, origin="inline")
    if isinstance(template, str):
        bundled = _bundled_path(text)
        if bundled is not None:
            return ScoreTemplate(
                name=bundled.name[: -len(_SUFFIX)],
                source=bundled.read_text(encoding="utf-8"),
                origin="bundled",
            )
    path = Path(text).expanduser()
    if path.is_file():
        try:
            source = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise TemplateError(f"Could not read score template {path}: {exc}") from exc
        return ScoreTemplate(name=str(path), source=source, origin="file")
    raise TemplateError(
        f"Unknown score template {text!r}: it is not a bundled template and no file exists at "
        f"that path. Bundled templates: {', '.join(bundled_templates())}. Pass one of these "
        "names, the path of a .jinja file, or the jinja source itself."
    )
