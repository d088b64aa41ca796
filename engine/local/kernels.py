"""Row-invariant linear layers and row buckets for the padding-free forwards.

Why it exists: a pair's score must not depend on the other pairs in its call (exact mode,
float32). A matrix product reads its rows together, and MKL (``F.linear`` on CPU) picks its
kernel by shape: measured here, a row's float32 result changes with the row count for small
counts (M < 16, and 1536→384 at M=64/100 against M ≥ 512). torch's fused oneDNN linear
(``torch.ops.mkldnn._linear_pointwise``) gives bit-identical rows for every row count from 2 to
16,384 and any memory offset (tests/test_batch_invariance.py checks it), only M = 1 takes
another path. Its fused post-ops (GELU, SiLU, tanh) run inside the kernel too, where torch's
own activations differ between their vector and scalar loops (so a value's result would depend
on where it sits in the tensor).

So every linear layer of the packed forwards goes through :func:`linear` on row counts from
:func:`bucket_rows` (never 1, and a handful of shapes, since oneDNN keeps a kernel per shape).
Off CPU, without oneDNN, or in float64 (no oneDNN kernel) the same functions fall back to
``F.linear`` and torch's activations: correct, not batch-invariant.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

import torch
import torch.nn.functional as F  # noqa: N812

__all__ = [
    "ACTIVATIONS", "ROW_BUCKET", "Linears", "bucket_rows", "linear", "linear_add",
    "linear_mul", "onednn_works", "pad_rows", "rows_linear", "run_dense",
]

# Row counts are rounded up to a multiple of this above it (oneDNN builds, and caches at ~0.5 MB
# each, one kernel per matrix shape: free row counts grew memory +100 MB over 40 batches).
ROW_BUCKET = 512
# Below ROW_BUCKET: steps of at most 1.5x, so a small call pays at most a third more rows (a
# single 20-token pair runs 24 rows, not 512) and there are 12 shapes. 8 is the floor: oneDNN
# sums a one-row product in another order.
_SMALL_BUCKETS = (8, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512)

# Activation name (HF's hidden_act / hidden_activation, ST's Dense class) → oneDNN post-op
# (name, algorithm) and torch's own function for the fallback.
ACTIVATIONS: dict[str, tuple[str, str, Callable[[torch.Tensor], torch.Tensor]]] = {
    "none": ("none", "", lambda x: x),
    "gelu": ("gelu", "none", F.gelu),
    "gelu_new": ("gelu", "tanh", lambda x: F.gelu(x, approximate="tanh")),
    "gelu_pytorch_tanh": ("gelu", "tanh", lambda x: F.gelu(x, approximate="tanh")),
    "relu": ("relu", "", F.relu),
    "silu": ("swish", "", F.silu),
    "swish": ("swish", "", F.silu),
    "tanh": ("tanh", "", torch.tanh),
    "sigmoid": ("sigmoid", "", torch.sigmoid),
}


def bucket_rows(n: int) -> int:
    """The row count a matrix of ``n`` rows is padded to (see the module docstring)."""
    if n <= ROW_BUCKET:
        return next(b for b in _SMALL_BUCKETS if b >= n)
    return -(-n // ROW_BUCKET) * ROW_BUCKET


@cache
def _onednn_dtype_works(dtype: torch.dtype) -> bool:
    if not torch.backends.mkldnn.is_available():  # type: ignore[no-untyped-call]
        return False
    try:
        x = torch.ones((2, 4), dtype=dtype)
        w = torch.ones((3, 4), dtype=dtype)
        b = torch.zeros(3, dtype=dtype)
        y = torch.ops.mkldnn._linear_pointwise(x, w, b, "swish", [], "")
        z = torch.ops.mkldnn._linear_pointwise.binary(x, y, w, b, "add")
        return bool(torch.isfinite(z).all())
    except (RuntimeError, AttributeError, NotImplementedError):
        return False


def onednn_works(x: torch.Tensor) -> bool:
    """Whether torch's fused oneDNN linear kernels run for ``x`` (a CPU float32/bfloat16
    tensor, on an x86/ARM build with mkldnn)."""
    return (
        x.device.type == "cpu" and x.dtype in (torch.float32, torch.bfloat16)
        and _onednn_dtype_works(x.dtype)
    )


def linear(
    x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, act: str = "none",
    *, fused: bool | None = None,
) -> torch.Tensor:
    """act(x @ w.T + b) for x [M, K], w [N, K] → [M, N], fused in one oneDNN kernel where it can.

    Row-invariant on the oneDNN path for M ≥ 2 (callers pad with :func:`pad_rows`).
    ``fused``: take (True) or avoid (False) the oneDNN kernel; None decides from ``x``. The
    GPU path passes False, so no CPU-only kernel is ever asked for there.
    """
    post, algo, fallback = ACTIVATIONS[act]
    if onednn_works(x) if fused is None else fused:
        return torch.ops.mkldnn._linear_pointwise(x, w, b, post, [], algo)  # type: ignore[no-any-return]
    return fallback(F.linear(x, w, b))


def linear_add(
    x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, residual: torch.Tensor,
    *, fused: bool | None = None,
) -> torch.Tensor:
    """x @ w.T + b + residual ([M, N]) in one kernel where oneDNN can."""
    if onednn_works(x) if fused is None else fused:
        return torch.ops.mkldnn._linear_pointwise.binary(x, residual, w, b, "add")  # type: ignore[no-any-return]
    return F.linear(x, w, b) + residual


def linear_mul(
    x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, other: torch.Tensor,
    *, fused: bool | None = None,
) -> torch.Tensor:
    """(x @ w.T + b) * other ([M, N]) in one kernel where oneDNN can (SwiGLU's up projection)."""
    if onednn_works(x) if fused is None else fused:
        return torch.ops.mkldnn._linear_pointwise.binary(x, other, w, b, "mul")  # type: ignore[no-any-return]
    return F.linear(x, w, b) * other


def pad_rows(x: torch.Tensor, rows: int) -> torch.Tensor:
    """``x`` [M, ...] with zero rows appended up to ``rows`` (no copy when M == rows)."""
    extra = rows - x.shape[0]
    if extra <= 0:
        return x
    return torch.cat([x, x.new_zeros((extra, *x.shape[1:]))])


def rows_linear(
    x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, act: str = "none",
    *, fused: bool | None = None,
) -> torch.Tensor:
    """:func:`linear` over the last dim of ``x`` [..., K] → [..., N], each row's result
    independent of how many rows come with it (rows padded to a bucket, then dropped)."""
    lead = x.shape[:-1]
    flat = x.reshape(-1, x.shape[-1])  # [M, K]
    m = flat.shape[0]
    out = linear(pad_rows(flat, bucket_rows(m)), w, b, act, fused=fused)[:m]  # [M, N]
    return out.reshape(*lead, w.shape[0])


def run_dense(layers: torch.nn.Module, x: torch.Tensor, linears: Linears | None = None
              ) -> torch.Tensor:
    """Run a ``Linear``, ST's Dense (``Sequential(Linear, activation)``) or a ``Sequential`` of
    them over the last dim of ``x`` row-invariantly (``linears``: unused, kept for callers that
    pass one; its device decides whether oneDNN may run). Anything else runs as the module.
    """
    parts = list(layers) if isinstance(layers, torch.nn.Sequential) else [layers]
    if parts and all(isinstance(p, torch.nn.Sequential) for p in parts):
        for part in parts:  # PyLate/ST: a Sequential of Dense modules
            x = run_dense(part, x, linears)
        return x
    if not parts or not isinstance(parts[0], torch.nn.Linear) or len(parts) > 2:
        return layers(x)  # type: ignore[no-any-return]
    act = "none"
    if len(parts) == 2:
        act = _module_act(parts[1])
        if act == "":
            return layers(x)  # type: ignore[no-any-return]
    lin = parts[0]
    fused = None if linears is None else linears.fused
    return rows_linear(x.to(lin.weight.dtype), lin.weight, lin.bias, act, fused=fused)


def _module_act(module: torch.nn.Module) -> str:
    """The ACTIVATIONS name of an activation module, or "" for one oneDNN has no post-op for."""
    if isinstance(module, torch.nn.Identity):
        return "none"
    names = {torch.nn.Tanh: "tanh", torch.nn.ReLU: "relu", torch.nn.Sigmoid: "sigmoid",
             torch.nn.SiLU: "silu"}
    if isinstance(module, torch.nn.GELU):
        return "gelu" if module.approximate == "none" else "gelu_new"
    return names.get(type(module), "")


class Linears:
    """The linear layers of one forward on ``device`` in ``dtype``: ``lin(x, w, b, act)``,
    ``lin.add(x, w, b, residual)`` and ``lin.mul(x, w, b, other)``, rows padded to
    :func:`bucket_rows` and cut back, so each row's result is independent of how many rows come
    with it (oneDNN on CPU). ``fused`` is decided here, from the device, never from a tensor:
    on a GPU it is False and only ``F.linear`` runs."""

    def __init__(self, device: torch.device, dtype: torch.dtype) -> None:
        self.device = device
        self.dtype = dtype
        self.fused = (
            device.type == "cpu" and dtype in (torch.float32, torch.bfloat16)
            and _onednn_dtype_works(dtype)
        )

    def __call__(
        self, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, act: str = "none"
    ) -> torch.Tensor:
        """act(x @ w.T + b): x [M, K] → [M, N]."""
        return rows_linear(x, w, b, act, fused=self.fused)

    def add(
        self, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, residual: torch.Tensor
    ) -> torch.Tensor:
        """x @ w.T + b + residual: x [M, K], residual [M, N] → [M, N]."""
        m = x.shape[0]
        rows = bucket_rows(m)
        return linear_add(pad_rows(x, rows), w, b, pad_rows(residual, rows),
                          fused=self.fused)[:m]

    def mul(
        self, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, other: torch.Tensor
    ) -> torch.Tensor:
        """(x @ w.T + b) * other: x [M, K], other [M, N] → [M, N]."""
        m = x.shape[0]
        rows = bucket_rows(m)
        return linear_mul(pad_rows(x, rows), w, b, pad_rows(other, rows), fused=self.fused)[:m]
