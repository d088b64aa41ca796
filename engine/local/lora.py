"""LoRA adapters on a loaded reranker: PEFT folders, several on one base, one chosen per call.

vLLM keeps one base model and applies ``LoRARequest(name, id, path)`` per request; this does the
same on the CPU. We apply the low-rank update ourselves instead of through ``peft``:

- ``peft`` switches adapters with model-wide state (``set_adapter``), so two calls naming two
  adapters could not run on one shared model; here the adapter is chosen per call through a
  context variable, which every thread or task sees for itself;
- converted LLM rerankers never run their LM head: an adapter on ``lm_head`` must change the
  score row ``W[t1] − W[t0]`` (or ``W[t]``), which only we know how to rebuild;
- the engine keeps no dependency it doesn't need (``peft`` is used by the tests, as an oracle).

Each target ``nn.Linear`` is wrapped once in a :class:`LoraLinear` that holds, per registered
adapter, either its update (y = W·x + b + s·B·(A·x), s = lora_alpha / r, or / √r with rsLoRA)
or, for a ``modules_to_save`` head (``classifier`` / ``score``), the adapter's own weights. With
no adapter active the wrapper is the plain layer. Which features are refused, and with which
words, follows vLLM's ``PEFTHelper`` (DoRA, LoRA bias, bias != "none", PiSSA-style inits, ...).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812

from ..errors import InputError, ModelLoadError
from ..types import LoraAdapterInfo
from .peft_adapter import LoraUpdate, PeftAdapter, read_peft_adapter

__all__ = [
    "LoraLinear", "LoraManager", "LoraTargets", "LoraUpdate", "PeftAdapter", "active_slot",
    "read_peft_adapter", "score_head", "token_row_head",
]

logger = logging.getLogger("engine")

# The adapter slot the current call runs with (0: none). Set around a backend's score_pairs and
# read by every LoraLinear and LoRA-aware head during it.
ACTIVE: ContextVar[int] = ContextVar("scorer_lora_active", default=0)
# What the caller asked for with LoraBackend.using_lora: (backend id, slot; 0 = the base).
REQUESTED: ContextVar[tuple[int, int] | None] = ContextVar("scorer_lora_requested", default=None)
_SLOTS = iter(range(1, 1 << 62))  # process-wide, so adapters of two backends never collide
_SLOTS_LOCK = threading.Lock()


def active_slot() -> int:
    """The adapter slot of the running call (0 when none)."""
    return ACTIVE.get()


# -- applying it ---------------------------------------------------------------------------------
class LoraLinear(torch.nn.Module):
    """An ``nn.Linear`` plus, per adapter slot, a low-rank update or replacement weights."""

    def __init__(self, base: torch.nn.Linear) -> None:
        super().__init__()
        self.base = base
        self.updates: dict[int, tuple[torch.Tensor, torch.Tensor, float]] = {}
        self.replacements: dict[int, tuple[torch.Tensor, torch.Tensor | None]] = {}

    # Code that reads a layer's weight (packed forwards, heads) still finds the base one.
    @property
    def weight(self) -> torch.Tensor:
        return self.base.weight

    @property
    def bias(self) -> torch.Tensor | None:
        return self.base.bias

    @property
    def in_features(self) -> int:
        return self.base.in_features

    @property
    def out_features(self) -> int:
        return self.base.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        slot = ACTIVE.get()
        if slot:
            replaced = self.replacements.get(slot)
            if replaced is not None:
                return F.linear(x, replaced[0], replaced[1])
            update = self.updates.get(slot)
            if update is not None:
                a, b, scale = update
                # [..., in] → [..., r] → [..., out]: never forms the [out, in] product
                return self.base(x) + F.linear(F.linear(x, a), b) * scale  # type: ignore[no-any-return]
        return self.base(x)  # type: ignore[no-any-return]


def _linear_at(root: torch.nn.Module, path: str) -> LoraLinear | None:
    """The wrapper of the Linear at ``path`` (installed on first use), or None if there is none."""
    try:
        module = root.get_submodule(path)
    except AttributeError:
        return None
    if isinstance(module, LoraLinear):
        return module
    if not isinstance(module, torch.nn.Linear):
        return None
    parent_path, _, child = path.rpartition(".")
    parent = root.get_submodule(parent_path) if parent_path else root
    wrapper = LoraLinear(module)
    setattr(parent, child, wrapper)
    return wrapper


# A head that is not a module (LLM rerankers keep a float32 score row): given the adapter's
# updates and replacements for the head's names, the (weight [C, H], bias [C] or None) to use.
HeadBuilder = Callable[
    [dict[str, LoraUpdate], dict[str, dict[str, torch.Tensor]]],
    "tuple[torch.Tensor, torch.Tensor | None]",
]


@dataclass(frozen=True, kw_only=True)
class LoraTargets:
    """Where a backend's adapters go.

    Attributes:
        root: the module tree the adapters' module names (minus ``strip``) point into.
        strip: the prefix of the adapter's names that ``root`` doesn't have ("model." when
            the backend keeps only the decoder stack of a ``*ForCausalLM``).
        rename: instead of ``strip``, map an adapter's module name to its path under root
            (checkpoints whose layout changed between transformers versions).
        head_names: names handled by ``head`` instead of ``root`` ("lm_head", "score").
        head: builds the per-adapter score head (see HeadBuilder), or None.
    """

    root: torch.nn.Module
    strip: str = ""
    rename: Callable[[str], str] | None = None
    head_names: frozenset[str] = frozenset()
    head: HeadBuilder | None = None
    describe: str = "this model"


@dataclass
class Registered:
    info: LoraAdapterInfo
    slot: int
    wrappers: list[LoraLinear] = field(default_factory=list)
    head: tuple[torch.Tensor, torch.Tensor | None] | None = None


class LoraManager:
    """The adapters registered on one backend, by name (thread-safe registration)."""

    def __init__(self, targets: LoraTargets, *, max_rank: int | None, model_path: Path,
                 device: torch.device, dtype: torch.dtype) -> None:
        self.targets = targets
        self.max_rank = max_rank
        self.model_path = model_path
        self.device, self.dtype = device, dtype
        self.adapters: dict[str, Registered] = {}
        self.by_slot: dict[int, Registered] = {}
        self.lock = threading.Lock()

    def _place(self, name: str) -> str | None:
        """An adapter module name → the head name, or the path under root (None: elsewhere)."""
        if name in self.targets.head_names:
            return name
        if self.targets.rename is not None:
            return self.targets.rename(name)
        if self.targets.strip and not name.startswith(self.targets.strip):
            return None
        return name[len(self.targets.strip):]

    def _mismatch(self, adapter: PeftAdapter, what: str) -> ModelLoadError:
        return ModelLoadError(
            f"LoRA adapter {adapter.path} doesn't fit {self.targets.describe} ({self.model_path}): "
            f"{what}. It was trained for another base model (its adapter_config.json says "
            f"base_model_name_or_path={adapter.base_model_name_or_path!r}); load that model, or "
            "an adapter trained on this one."
        )

    def add(self, name: str, path: str | Path, lora_int_id: int | None = None) -> LoraAdapterInfo:
        with self.lock:
            known = self.adapters.get(name)
            resolved = str(Path(path).expanduser().resolve())
            if known is not None:
                if known.info.path != resolved:
                    raise InputError(
                        f"A LoRA adapter named {name!r} is already loaded from {known.info.path}; "
                        f"pick another name for {resolved}."
                    )
                if lora_int_id is not None and lora_int_id != known.info.lora_int_id:
                    raise InputError(
                        f"LoRA adapter {name!r} has id {known.info.lora_int_id}, not {lora_int_id}."
                    )
                return known.info
            ids = {r.info.lora_int_id: r.info.name for r in self.adapters.values()}
            if lora_int_id is None:
                lora_int_id = max(ids, default=0) + 1
            elif lora_int_id in ids:
                raise InputError(
                    f"lora_int_id {lora_int_id} already belongs to adapter {ids[lora_int_id]!r}; "
                    "each adapter needs its own id."
                )
            adapter = read_peft_adapter(path, max_rank=self.max_rank)
            with _SLOTS_LOCK:
                slot = next(_SLOTS)
            entry = self._install(adapter, slot, name, lora_int_id)
            self.adapters[name] = entry
            self.by_slot[slot] = entry
            logger.info("LoRA adapter %r (id %d) loaded from %s.", name, lora_int_id, resolved)
            return entry.info

    def _install(self, adapter: PeftAdapter, slot: int, name: str, int_id: int) -> Registered:
        """Check every module first (nothing is installed for a misfit), then install."""
        head_updates: dict[str, LoraUpdate] = {}
        head_replaced: dict[str, dict[str, torch.Tensor]] = {}
        plan: list[tuple[LoraLinear, LoraUpdate | None, dict[str, torch.Tensor] | None]] = []
        root = self.targets.root
        items: list[tuple[str, LoraUpdate | None, dict[str, torch.Tensor] | None]] = [
            *((m, u, None) for m, u in adapter.updates.items()),
            *((m, None, r) for m, r in adapter.replaced.items()),
        ]
        for module, update, replaced in items:
            place = self._place(module)
            if place is not None and place in self.targets.head_names:
                if update is not None:
                    head_updates[place] = update
                else:
                    assert replaced is not None
                    head_replaced[place] = replaced
                continue
            try:
                target = root.get_submodule(place) if place is not None else None
            except AttributeError:
                target = None
            base = target.base if isinstance(target, LoraLinear) else target
            if not isinstance(base, torch.nn.Linear):
                what = "has no such module" if base is None else f"has a {type(base).__name__}"
                raise self._mismatch(adapter, f"it changes {module!r}, and this model {what} "
                                              "(only Linear layers take LoRA)")
            out_f, in_f = base.weight.shape
            if update is not None and (update.a.shape[1] != in_f or update.b.shape[0] != out_f):
                raise self._mismatch(
                    adapter, f"{module!r} is {out_f}x{in_f} here but the adapter's update is "
                    f"{update.b.shape[0]}x{update.a.shape[1]}")
            if replaced is not None:
                w, b = replaced.get("weight"), replaced.get("bias")
                if w is None or tuple(w.shape) != (out_f, in_f) or (b is None) != (
                    base.bias is None
                ):
                    raise self._mismatch(adapter, f"its {module!r} head has other shapes")
            plan.append((_linear_at(root, place or ""), update, replaced))  # type: ignore[arg-type]
        entry = Registered(
            info=LoraAdapterInfo(
                name=name, lora_int_id=int_id, path=str(adapter.path), rank=adapter.rank,
                lora_alpha=adapter.lora_alpha,
                base_model_name_or_path=adapter.base_model_name_or_path,
                modules=len(plan) + len(head_updates) + len(head_replaced),
            ),
            slot=slot,
        )
        if head_updates or head_replaced:
            if self.targets.head is None:
                names = sorted([*head_updates, *head_replaced])
                raise self._mismatch(adapter, f"it changes {names}, which this model has not")
            weight, bias = self.targets.head(head_updates, head_replaced)
            entry.head = (weight, bias)
        def to(t: torch.Tensor) -> torch.Tensor:
            return t.to(device=self.device, dtype=self.dtype)

        for wrapper, update, replaced in plan:
            if update is not None:
                wrapper.updates[slot] = (to(update.a), to(update.b), update.scale)
            else:
                assert replaced is not None
                bias = replaced.get("bias")
                wrapper.replacements[slot] = (
                    to(replaced["weight"]), None if bias is None else to(bias)
                )
            entry.wrappers.append(wrapper)
        return entry

    def remove(self, name: str) -> None:
        with self.lock:
            entry = self.adapters.pop(name, None)
            if entry is None:
                raise InputError(
                    f"No LoRA adapter named {name!r}; loaded: {sorted(self.adapters)}."
                )
            self.by_slot.pop(entry.slot, None)
            for wrapper in entry.wrappers:
                wrapper.updates.pop(entry.slot, None)
                wrapper.replacements.pop(entry.slot, None)

    def remove_all(self) -> None:
        for name in list(self.adapters):
            self.remove(name)


def token_row_head(backend: Any) -> HeadBuilder:
    """Head of a reranker converted from token logits: an lm_head update changes its rows."""
    ids = backend._token_ids(backend.tokenizer)  # the vocabulary ids of classifier_from_token
    method = backend.spec.method
    base_weight = backend.weight.detach().float()  # [1, H]: W[t1] − W[t0], or W[t]

    def build(updates: dict[str, LoraUpdate], replaced: dict[str, dict[str, torch.Tensor]]
              ) -> tuple[torch.Tensor, torch.Tensor | None]:
        if replaced:
            raise ModelLoadError("modules_to_save 'lm_head' is not supported (vLLM neither).")
        update = updates["lm_head"]
        rows = update.b.float()[ids] @ update.a.float() * update.scale  # [T, H]
        delta = (rows[1] - rows[0])[None] if method == "from_2_way_softmax" else rows  # [1, H]
        return base_weight + delta.to(base_weight.device), None

    return build


def score_head(backend: Any) -> HeadBuilder:
    """Head of an already-converted seq-cls reranker: a ``score`` update or replacement."""
    base_weight = backend.weight.detach().float()  # [C, H]
    base_bias = None if backend.bias is None else backend.bias.detach().float()

    def build(updates: dict[str, LoraUpdate], replaced: dict[str, dict[str, torch.Tensor]]
              ) -> tuple[torch.Tensor, torch.Tensor | None]:
        if "score" in replaced:
            new = replaced["score"]
            if tuple(new["weight"].shape) != tuple(base_weight.shape):
                raise ModelLoadError(
                    f"the adapter's score head is {tuple(new['weight'].shape)}, this model's "
                    f"{tuple(base_weight.shape)}: it was trained for another base model."
                )
            bias = new.get("bias")
            return new["weight"].float(), None if bias is None else bias.float()
        update = updates["score"]
        delta = update.b.float() @ update.a.float() * update.scale  # [C, H]
        if delta.shape != base_weight.shape:
            raise ModelLoadError("the adapter's score update has other shapes than this model's.")
        return base_weight + delta, base_bias

    return build
