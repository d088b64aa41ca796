"""The LoRA API of a loaded backend: adapters by name on one base, one chosen per call.

:func:`with_lora` makes, once per backend class, a subclass with :class:`LoraBackend`'s
methods; the registry uses it when ``ScorerConfig.enable_lora`` (or ``lora`` /
``lora_modules``) is set. The wrapping of layers and the adapters themselves live in
engine.local.lora.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from ..calls import ScoreCall
from ..errors import InputError
from ..types import LoraAdapterInfo, LoRARequest, ScoreResult
from .base import LocalBackend
from .lora import (
    ACTIVE,
    REQUESTED,
    LoraManager,
    LoraTargets,
    Registered,
    score_head,
    token_row_head,
)
from .runner import ProgressFn

__all__ = ["LoraBackend", "lora_targets", "with_lora"]

# Where backends keep a padding-free forward: the cross-encoders' packed encoder and the LLM
# rerankers' packed decoder (engine.local.packed / packed_decoder).
_PADDING_FREE = ("_packed", "_decoder")


class LoraBackend(LocalBackend):
    """What :func:`with_lora` adds to a backend class: adapters by name, one chosen per call.

    The engine-level API (the surfaces translate to it):

    - ``add_lora(name, path, lora_int_id=None)`` registers a PEFT folder on the loaded base,
      without reloading it; ``remove_lora(name)``; ``lora_adapters()`` lists them;
    - ``with backend.using_lora(name | LoRARequest | None): backend.score_pairs(call)`` scores
      with that adapter (a LoRARequest not registered yet is registered first, as vLLM loads
      one on first use); None means the load-time default (``lora=``), else the base model;
    - ``ScorerConfig(lora_modules={name: path})`` registers at load, ``lora=path`` also makes
      that adapter the default.
    """

    _lora: LoraManager
    _lora_default: str | None

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._lora = LoraManager(
            lora_targets(self), max_rank=self.config.max_lora_rank, model_path=self.info.path,
            device=self.device, dtype=self.dtype,
        )
        # Adapters live in wrappers of the (shared, cached) model: drop them with this backend.
        weakref.finalize(self, self._lora.remove_all)
        for attr in _PADDING_FREE:
            if getattr(self, attr, None) is not None:
                # The padding-free forwards read (or copy) the base weights directly, past the
                # LoRA wrappers; a LoRA-enabled backend runs the stock forward.
                setattr(self, attr, None)
        for name, path in (self.config.lora_modules or {}).items():
            self.add_lora(name, path)
        self._lora_default = None
        if self.config.lora is not None:
            folder = Path(self.config.lora).expanduser()
            self._lora_default = self.add_lora(folder.resolve().name or "default", folder).name

    # -- the API ---------------------------------------------------------------------------------
    def add_lora(
        self, name: str, path: str | Path, *, lora_int_id: int | None = None
    ) -> LoraAdapterInfo:
        """Register the PEFT adapter at ``path`` as ``name`` (idempotent for the same path).

        Raises:
            ModelLoadError: unreadable, unsupported, or made for another base model.
            InputError: ``name`` or ``lora_int_id`` is taken by another adapter.
        """
        if not isinstance(name, str) or not name:
            raise InputError(f"A LoRA adapter needs a non-empty name, got {name!r}.")
        return self._lora.add(name, path, lora_int_id)

    def remove_lora(self, name: str) -> None:
        """Unregister an adapter; the base model stays loaded."""
        self._lora.remove(name)
        if self._lora_default == name:
            self._lora_default = None

    def lora_adapters(self) -> list[LoraAdapterInfo]:
        """The registered adapters, in registration order."""
        return [entry.info for entry in self._lora.adapters.values()]

    @contextlib.contextmanager
    def using_lora(self, adapter: str | LoRARequest | None) -> Iterator[LoraAdapterInfo | None]:
        """Calls of this backend inside the block run with ``adapter`` (see the class docstring).

        Raises:
            InputError: an unknown adapter name (the message lists the loaded ones).
        """
        entry = self._resolve(adapter)
        token = REQUESTED.set((id(self), 0 if entry is None else entry.slot))
        try:
            yield None if entry is None else entry.info
        finally:
            REQUESTED.reset(token)

    def _resolve(self, adapter: str | LoRARequest | None) -> Registered | None:
        if adapter is None:
            return self._lora.adapters.get(self._lora_default) if self._lora_default else None
        if isinstance(adapter, LoRARequest):
            self.add_lora(adapter.lora_name, adapter.lora_path, lora_int_id=adapter.lora_int_id)
            return self._lora.adapters[adapter.lora_name]
        entry = self._lora.adapters.get(adapter)
        if entry is None:
            raise InputError(
                f"No LoRA adapter named {adapter!r} is loaded on {self.info.path}; loaded: "
                f"{sorted(self._lora.adapters)}. Register it first (lora_modules= / add_lora)."
            )
        return entry

    def _call_slot(self) -> int:
        requested = REQUESTED.get()
        if requested is not None and requested[0] == id(self):
            return requested[1]
        default = self._resolve(None)
        return 0 if default is None else default.slot

    def score_pairs(
        self, call: ScoreCall, *, progress: ProgressFn | None = None
    ) -> list[ScoreResult]:
        token = ACTIVE.set(self._call_slot())
        try:
            return super().score_pairs(call, progress=progress)  # type: ignore[safe-super]
        finally:
            ACTIVE.reset(token)

    # -- LLM rerankers keep their score row as tensors: pick the adapter's ---------------------
    @property
    def weight(self) -> torch.Tensor:
        entry = self._lora.by_slot.get(ACTIVE.get()) if hasattr(self, "_lora") else None
        if entry is not None and entry.head is not None:
            return entry.head[0]
        return self._lora_base_weight

    @weight.setter
    def weight(self, value: torch.Tensor) -> None:
        self._lora_base_weight = value

    @property
    def bias(self) -> torch.Tensor | None:
        entry = self._lora.by_slot.get(ACTIVE.get()) if hasattr(self, "_lora") else None
        if entry is not None and entry.head is not None:
            return entry.head[1]
        return self._lora_base_bias

    @bias.setter
    def bias(self, value: torch.Tensor | None) -> None:
        self._lora_base_bias = value


_CLASSES: dict[type[LocalBackend], type[LocalBackend]] = {}


def with_lora(cls: type[LocalBackend]) -> type[LocalBackend]:
    """``cls`` with :class:`LoraBackend`'s API (one subclass per backend class, cached)."""
    if issubclass(cls, LoraBackend):
        return cls
    made = _CLASSES.get(cls)
    if made is None:
        made = type(f"Lora{cls.__name__}", (LoraBackend, cls), {"__module__": __name__})
        _CLASSES[cls] = made
    return made


# -- where each backend's adapters go ------------------------------------------------------------
def lora_targets(backend: LocalBackend) -> LoraTargets:
    """The module tree and head of a loaded backend, as its adapters name them."""
    from .cross_encoder import CrossEncoderBackend
    from .llm_reranker import LLMRerankerBackend

    custom = getattr(backend, "lora_targets", None)
    if callable(custom):  # the multimodal backends describe themselves
        targets: LoraTargets = custom()
        return targets
    if isinstance(backend, CrossEncoderBackend):
        return LoraTargets(root=backend.model, describe=type(backend.model).__name__)
    if isinstance(backend, LLMRerankerBackend):
        prefix = str(getattr(backend.model, "base_model_prefix", "model") or "model") + "."
        if backend.spec.tokens:
            return LoraTargets(
                root=backend.model, strip=prefix, head_names=frozenset({"lm_head"}),
                head=token_row_head(backend), describe=f"{type(backend.model).__name__} (LM)",
            )
        return LoraTargets(
            root=backend.model, strip=prefix, head_names=frozenset({"score"}),
            head=score_head(backend), describe=f"{type(backend.model).__name__} (seq-cls)",
        )
    raise InputError(
        f"LoRA adapters are supported on cross-encoders and LLM rerankers, not on a "
        f"{backend.score_type.value} model; load without enable_lora/lora/lora_modules."
    )
