"""Reading a PEFT LoRA adapter folder (adapter_config.json + adapter_model.safetensors).

What is refused, and in which words, follows vLLM's ``PEFTHelper``: DoRA, LoRA bias, adapter
bias other than "none", inits that rewrite the base weights (PiSSA, OLoRA, CorDA, LoftQ), aLoRA,
layer replication, modules_to_save other than the classification head, ranks over
``max_lora_rank``. Scaling is PEFT's: ``lora_alpha / r`` (``/ sqrt(r)`` with rsLoRA), with
``rank_pattern`` / ``alpha_pattern`` matched per module as PEFT's ``get_pattern_key`` does.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..errors import ModelLoadError
from .checkpoint import read_json

__all__ = ["LoraUpdate", "PeftAdapter", "read_peft_adapter"]

_PREFIX = "base_model.model."
_HEADS = ("classifier", "score")  # vLLM: the only modules_to_save it takes
_UNSUPPORTED_INITS = ("pissa", "olora", "corda", "loftq")


@dataclass(frozen=True, kw_only=True)
class LoraUpdate:
    """One module's low-rank update: ``a`` [r, in], ``b`` [out, r], ``scale`` (alpha / r)."""

    a: torch.Tensor
    b: torch.Tensor
    scale: float


@dataclass(frozen=True, kw_only=True)
class PeftAdapter:
    """A PEFT LoRA adapter as read from its folder (module names without ``base_model.model.``).

    Attributes:
        updates: module name → its low-rank update.
        replaced: module name → the tensors of a ``modules_to_save`` module ("weight", "bias").
    """

    path: Path
    rank: int
    lora_alpha: float
    base_model_name_or_path: str | None
    updates: dict[str, LoraUpdate]
    replaced: dict[str, dict[str, torch.Tensor]]


def _match_pattern(pattern: Mapping[str, Any], name: str) -> Any:
    # PEFT's get_pattern_key (and vLLM's): a key matches a dot-bounded suffix of the name.
    for key, value in pattern.items():
        if re.match(rf"(.*\.)?({key})$", name):
            return value
    return None


def _refusals(config: Mapping[str, Any], max_rank: int | None) -> list[str]:
    """vLLM's PEFTHelper checks, in its words where it has them."""
    errors = []
    if str(config.get("peft_type", "LORA")).upper() != "LORA":
        errors.append(f"peft_type {config.get('peft_type')!r} is not LoRA.")
    unsupported = [m for m in config.get("modules_to_save") or () if m not in _HEADS]
    if unsupported:
        errors.append(
            "vLLM only supports modules_to_save being either None or [\"classifier\", "
            f"\"score\"] for classification models. Unsupported modules_to_save: {unsupported}"
        )
    if config.get("use_dora"):
        errors.append("vLLM does not yet support DoRA.")
    if config.get("lora_bias"):
        errors.append("vLLM does not support LoRA bias (lora_bias).")
    init = config.get("init_lora_weights", True)
    if isinstance(init, str) and init.lower().startswith(_UNSUPPORTED_INITS):
        errors.append(
            f"init_lora_weights={init!r} changes the base weights when PEFT loads the adapter; "
            "convert it to a plain LoRA adapter first."
        )
    for key, what in (("alora_invocation_tokens", "Activated LoRA (aLoRA)"),
                      ("layer_replication", "layer_replication"),
                      ("use_bdlora", "block-diagonal LoRA (BD-LoRA)"), ("use_qalora", "QALoRA")):
        if config.get(key):
            errors.append(f"vLLM does not support {what}.")
    if config.get("fan_in_fan_out"):
        errors.append("fan_in_fan_out (GPT-2 Conv1D layers) is not supported.")
    if config.get("bias", "none") != "none":
        errors.append("Adapter bias is not supported.")
    ranks = [int(config.get("r", 0)), *(config.get("rank_pattern") or {}).values()]
    if max_rank is not None and max(ranks) > max_rank:
        errors.append(f"LoRA rank {max(ranks)} is greater than max_lora_rank {max_rank}.")
    return errors


def _load_tensors(folder: Path) -> dict[str, torch.Tensor]:
    st, pt = folder / "adapter_model.safetensors", folder / "adapter_model.bin"
    try:
        if st.is_file():
            from safetensors.torch import load_file

            return load_file(str(st))
        if pt.is_file():
            return torch.load(str(pt), map_location="cpu", weights_only=True)  # type: ignore[no-any-return]
    except Exception as exc:
        raise ModelLoadError(f"Could not read the LoRA weights in {folder}: {exc}.") from exc
    raise ModelLoadError(
        f"{folder} has no adapter_model.safetensors (or adapter_model.bin); a PEFT adapter folder "
        "holds adapter_config.json and its weights."
    )


def read_peft_adapter(path: str | Path, *, max_rank: int | None = None) -> PeftAdapter:
    """Read a PEFT LoRA folder (adapter_config.json + adapter_model.safetensors).

    Raises:
        ModelLoadError: not a PEFT folder, an unsupported LoRA feature, or inconsistent weights.
    """
    folder = Path(path).expanduser()
    config = read_json(folder / "adapter_config.json")
    if not isinstance(config, dict):
        raise ModelLoadError(
            f"{folder} is not a PEFT adapter folder: it has no adapter_config.json. Save the "
            "adapter with peft's save_pretrained (adapter_config.json + adapter_model.safetensors)."
        )
    if "r" not in config or "lora_alpha" not in config:
        raise ModelLoadError(f"{folder}/adapter_config.json lacks 'r' or 'lora_alpha'.")
    errors = _refusals(config, max_rank)
    if errors:
        raise ModelLoadError(f"LoRA adapter {folder} can't be served: {' '.join(errors)}")
    r, alpha = int(config["r"]), float(config["lora_alpha"])
    rslora = bool(config.get("use_rslora"))
    ranks, alphas = config.get("rank_pattern") or {}, config.get("alpha_pattern") or {}
    pieces: dict[str, dict[str, torch.Tensor]] = {}
    replaced: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in _load_tensors(folder).items():
        if not key.startswith(_PREFIX):
            raise ModelLoadError(
                f"{folder}: weight {key!r} is not under {_PREFIX!r}; this is not a PEFT LoRA "
                "state dict."
            )
        name = key[len(_PREFIX):]
        if "lora_embedding_" in name:
            raise ModelLoadError(f"{folder}: LoRA on embeddings ({name}) is not supported.")
        if "lora_magnitude_vector" in name:
            raise ModelLoadError(f"{folder}: vLLM does not yet support DoRA.")
        found = re.fullmatch(r"(.+)\.(lora_[AB])(?:\.[^.]+)?\.weight", name)
        if found:
            pieces.setdefault(found.group(1), {})[found.group(2)] = tensor
            continue
        module, _, param = name.rpartition(".")
        module = module.removesuffix(".modules_to_save.default").removesuffix(".modules_to_save")
        if not any(module == h or module.startswith(h + ".") or module.endswith("." + h)
                   for h in config.get("modules_to_save") or ()):
            raise ModelLoadError(
                f"{folder}: weight {key!r} is neither a LoRA matrix nor part of modules_to_save "
                f"{config.get('modules_to_save')}."
            )
        replaced.setdefault(module, {})[param] = tensor
    updates: dict[str, LoraUpdate] = {}
    for module, ab in pieces.items():
        if set(ab) != {"lora_A", "lora_B"}:
            raise ModelLoadError(f"{folder}: module {module} has {sorted(ab)}, not lora_A and B.")
        a, b = ab["lora_A"], ab["lora_B"]
        rank = _match_pattern(ranks, module) or r
        module_alpha = _match_pattern(alphas, module) or alpha
        if a.dim() != 2 or b.dim() != 2 or a.shape[0] != rank or b.shape[1] != rank:
            raise ModelLoadError(
                f"{folder}: {module} has lora_A {tuple(a.shape)} and lora_B {tuple(b.shape)}, "
                f"not rank {rank} as adapter_config.json says."
            )
        scale = module_alpha / (math.sqrt(rank) if rslora else rank)
        updates[module] = LoraUpdate(a=a, b=b, scale=float(scale))
    if not updates and not replaced:
        raise ModelLoadError(f"{folder}: the adapter has no weights.")
    return PeftAdapter(
        path=folder.resolve(), rank=max([r, *ranks.values()]), lora_alpha=alpha,
        base_model_name_or_path=config.get("base_model_name_or_path"), updates=updates,
        replaced=replaced,
    )
