"""Which device a model runs on and in which dtype."""

from __future__ import annotations

import torch

from ..errors import ModelLoadError

__all__ = ["cpu_flags", "resolve_device", "resolve_dtype"]


def resolve_device(device: str | torch.device) -> torch.device:
    """"auto" picks cuda, then mps, then cpu; anything else is checked and used as given."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ModelLoadError(
            f"device={device!r} is not a torch device; use 'auto', 'cpu', 'cuda', 'cuda:0' "
            "or 'mps'."
        ) from exc
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError("device='cuda' was asked for but CUDA is not available; use 'cpu'.")
    return resolved


_DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "float16": torch.float16,
    "fp16": torch.float16,
    "half": torch.float16,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
}


# CPU flags (Linux /proc/cpuinfo names) of a native bfloat16 matrix unit. Without one, torch
# emulates bfloat16 matmuls and "fast" would be slower than float32.
_BF16_CPU_FLAGS = frozenset({"amx_bf16", "avx512_bf16"})


def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags from /proc/cpuinfo (empty where there is none, e.g. macOS)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.partition(":")[2].split())
    except OSError:
        pass
    return frozenset()


def resolve_dtype(dtype: str | torch.dtype, device: torch.device) -> torch.dtype:
    """The torch dtype for a ``dtype`` option.

    "auto" is exact: float32 on CPU, bfloat16 (or float16) on GPUs. It stays float32 on CPUs
    with AMX too, although there bfloat16 keeps rankings (Spearman ≥ 0.999, top-10 1.0 on the
    real MiniLM) and runs ~2x faster (bench/README.md): the default contract is scores equal to
    transformers'/vLLM's float32 ones to 1e-5, the same on every machine and in any batch
    company, and no load-time check can show that bfloat16 keeps an arbitrary checkpoint's
    rankings. "fast" is that opt-in: bfloat16 wherever the hardware runs it natively (GPUs;
    CPUs with AMX or AVX512-BF16), else what "auto" gives.
    """
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "fast" and device.type == "cpu":
        return torch.bfloat16 if cpu_flags() & _BF16_CPU_FLAGS else torch.float32
    if dtype in ("auto", "fast"):
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        if device.type == "mps":
            return torch.float16
        return torch.float32
    try:
        return _DTYPES[str(dtype).lower()]
    except KeyError:
        raise ModelLoadError(
            f"dtype={dtype!r} is not supported; use 'auto', 'fast', 'float32', 'bfloat16' or "
            "'float16'."
        ) from None
