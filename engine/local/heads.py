"""Cross-encoder heads: which activation a checkpoint asks for, and applying it to logits."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import Any

import torch

from ..errors import UnsupportedScoreType

__all__ = [
    "Activation", "finalize_logits", "linear_head", "resolve_activation", "token_score_weight",
]


class Activation(str, enum.Enum):
    SIGMOID = "sigmoid"
    SOFTMAX = "softmax"
    IDENTITY = "identity"


# sentence-transformers stores the activation as a dotted torch class name.
_ST_ACTIVATIONS = {
    "torch.nn.modules.activation.Sigmoid": Activation.SIGMOID,
    "torch.nn.modules.linear.Identity": Activation.IDENTITY,
    "torch.nn.modules.activation.Softmax": Activation.SOFTMAX,
}


def resolve_activation(
    config: dict[str, Any], st_config: dict[str, Any], num_labels: int
) -> Activation:
    """vLLM's ``get_act_fn`` order: problem_type, then the ST activation, then the label count."""
    problem_type = config.get("problem_type")
    if problem_type == "regression":
        return Activation.IDENTITY
    if problem_type in ("single_label_classification", "multi_label_classification"):
        return Activation.SIGMOID if num_labels < 2 else Activation.SOFTMAX
    st_name = (
        st_config.get("activation_fn")
        or (config.get("sentence_transformers") or {}).get("activation_fn")
        or config.get("sbert_ce_default_activation_function")
    )
    if st_name:
        if not str(st_name).startswith("torch.nn.modules."):
            # vLLM allows only torch.nn classes here; anything else would be code from the hub.
            raise UnsupportedScoreType(
                f"The checkpoint asks for activation {st_name!r}; only torch.nn.modules.* "
                "activations are allowed. Pass use_activation=False to get raw logits."
            )
        act = _ST_ACTIVATIONS.get(str(st_name))
        if act is Activation.IDENTITY:
            return act
        # Sigmoid/Softmax (or another torch activation) map to the default for the label count.
    return Activation.SIGMOID if num_labels < 2 else Activation.SOFTMAX


def finalize_logits(
    logits: torch.Tensor, activation: Activation, *, use_activation: bool
) -> torch.Tensor:
    """Turn head logits [B, num_labels] (1 or 2 labels) into one float32 score per pair [B].

    One label: activation(logit), or the logit itself. Two labels: the probability of the second
    (positive) label, softmax over both, which equals sigmoid(z1 - z0); raw mode returns z1 - z0.
    """
    z = logits.float()  # [B, C]
    if z.shape[-1] == 1:
        raw = z[:, 0]  # [B]
        if not use_activation or activation is Activation.IDENTITY:
            return raw
        # 1 / (1 + e^-x), not torch.sigmoid: its vectorised and scalar tail loops differ in
        # the last bit, so a score would depend on its position in the batch.
        return 1.0 / (1.0 + torch.exp(-raw))
    if z.shape[-1] == 2:
        if not use_activation or activation is Activation.IDENTITY:
            return z[:, 1] - z[:, 0]  # [B]
        return torch.softmax(z, dim=-1)[:, 1]  # [B]
    raise UnsupportedScoreType(
        f"A cross-encoder score needs a head with 1 or 2 labels, this one has {z.shape[-1]}."
    )


def token_score_weight(lm_head: torch.Tensor, ids: Sequence[int], method: str) -> torch.Tensor:
    """The one-label score weight [1, H] built from LM-head rows ``lm_head`` [V, H], in float32.

    An LLM reranker converted from token logits (vLLM's ``classifier_from_token``) never runs
    its vocabulary-sized head: from_2_way_softmax uses w = W[t1] − W[t0], so h·w = z_t1 − z_t0
    and sigmoid of it is the t1 entry of softmax([z_t0, z_t1]); no_post_processing (one token)
    uses w = W[t].
    """
    # NOTE: like vLLM's converted head, this skips any final_logit_softcapping (Gemma 2/3) and
    # LM-head bias; the real rerankers (Qwen, Gemma 1, Qwen2) have neither.
    rows = lm_head[list(ids)].float()  # [T, H]
    if method == "from_2_way_softmax":
        return (rows[1] - rows[0]).unsqueeze(0)  # [1, H]
    return rows  # [1, H]


def linear_head(
    pooled: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None
) -> torch.Tensor:
    """Head logits [B, C] in float32 from pooled states [B, H] (vLLM's float32 score head)."""
    out = pooled.float() @ weight.T  # [B, C]
    return out + bias if bias is not None else out
