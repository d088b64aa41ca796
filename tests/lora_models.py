"""PEFT LoRA adapter folders written by hand, and the merged checkpoints they stand for.

An adapter folder is what ``peft``'s ``save_pretrained`` writes: ``adapter_config.json`` and
``adapter_model.safetensors`` with ``base_model.model.<module>.lora_A.weight`` [r, in] /
``lora_B.weight`` [out, r] and, for ``modules_to_save``, ``base_model.model.<module>.weight``.
The merged checkpoint is the reference: W' = W + (alpha / r) · B @ A written into a copy of the
base folder's weights (independent of engine.local.lora).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch


def _linear_shapes(folder: Path) -> dict[str, tuple[int, int]]:
    """Module name → (out, in) of every 2-D ``*.weight`` in a saved checkpoint."""
    from safetensors.torch import load_file

    return {
        k.removesuffix(".weight"): (int(v.shape[0]), int(v.shape[1]))
        for k, v in load_file(str(folder / "model.safetensors")).items()
        if k.endswith(".weight") and v.dim() == 2
    }


def write_adapter(
    folder: Path, base: Path, *, targets: list[str], r: int = 4, alpha: float = 8.0,
    seed: int = 0, modules_to_save: list[str] | None = None, rslora: bool = False,
    task_type: str = "SEQ_CLS", scale: float = 0.5, **config_extra: object,
) -> Path:
    """A random LoRA adapter of ``base`` on every module whose name ends with a target."""
    from safetensors.torch import load_file, save_file

    g = torch.Generator().manual_seed(seed)
    shapes = _linear_shapes(base)
    weights = load_file(str(base / "model.safetensors"))
    tensors: dict[str, torch.Tensor] = {}
    hit = 0
    for name, (out_f, in_f) in sorted(shapes.items()):
        if not any(name == t or name.endswith("." + t) for t in targets):
            continue
        hit += 1
        key = f"base_model.model.{name}"
        tensors[f"{key}.lora_A.weight"] = torch.randn(r, in_f, generator=g) * scale
        tensors[f"{key}.lora_B.weight"] = torch.randn(out_f, r, generator=g) * scale
    assert hit or modules_to_save, f"no module of {base} matches {targets}"
    for head in modules_to_save or []:
        for key, value in weights.items():
            if key.startswith(head + "."):
                tensors[f"base_model.model.{key}"] = torch.randn(value.shape, generator=g)
    folder.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(folder / "adapter_model.safetensors"))
    config = {
        "peft_type": "LORA", "task_type": task_type, "base_model_name_or_path": str(base),
        "r": r, "lora_alpha": alpha, "lora_dropout": 0.0, "target_modules": targets,
        "modules_to_save": modules_to_save, "bias": "none", "use_rslora": rslora,
        "use_dora": False, "fan_in_fan_out": False, "init_lora_weights": True,
        "rank_pattern": {}, "alpha_pattern": {}, **config_extra,
    }
    (folder / "adapter_config.json").write_text(json.dumps(config, indent=2))
    return folder


def merge_adapter(base: Path, adapter: Path, out: Path) -> Path:
    """A copy of ``base`` with the adapter merged into its weights (the reference model)."""
    import math

    from safetensors.torch import load_file, save_file

    shutil.copytree(base, out)
    config = json.loads((adapter / "adapter_config.json").read_text())
    r = config["r"]
    s = config["lora_alpha"] / (math.sqrt(r) if config.get("use_rslora") else r)
    weights = load_file(str(base / "model.safetensors"))
    lora = load_file(str(adapter / "adapter_model.safetensors"))
    for key, value in lora.items():
        name = key.removeprefix("base_model.model.")
        if ".lora_A." in name:
            module = name.split(".lora_A.")[0]
            b = lora[key.replace(".lora_A.", ".lora_B.")]
            weights[module + ".weight"] = weights[module + ".weight"] + s * (b @ value)
        elif ".lora_B." not in name:
            weights[name] = value  # modules_to_save: the adapter's own copy
    save_file({k: v.contiguous() for k, v in weights.items()}, str(out / "model.safetensors"))
    return out
