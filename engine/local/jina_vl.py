"""jina-reranker-m0 (``JinaVLForSequenceClassification``), natively, no ``trust_remote_code``.

The published checkpoint is ``JinaVLForRanking``: a Qwen2-VL (``Qwen2VLForConditionalGeneration``
weights in the pre-4.52 layout, ``model.*`` / ``visual.*``) with its LM head replaced by a score
MLP ``score = Sequential(Linear(H, H), ReLU, Linear(H, 1))`` read at the last token. As in vLLM
(``jina_vl.py``):

- the prompt is the model's own score template ``"**Document**:\\n{doc}\\n**Query**:\\n{query}"``
  (document first) and token id 100 is appended as the scoring token;
- images become ``<|vision_start|><|image_pad|><|vision_end|>`` in front of their side's text,
  so a document's image comes before the query's in the prompt;
- the logit is calibrated by ``logit_mean`` 2.65 before the sigmoid (vLLM's pooler default for
  this model, the remote code's ``LOGIT_BIAS``), also when ``use_activation=False``.

The backbone is transformers' own Qwen2-VL, loaded with its legacy-layout key conversion; the
score MLP is read from the same weights file.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch

from ..calls import ScoreCall
from ..config import ScorerConfig
from ..errors import ModelLoadError
from .checkpoint import CheckpointInfo, cap_max_length, model_max_length
from .heads import Activation, finalize_logits, resolve_activation
from .lora import LoraTargets
from .qwen_vl import _text_config, load_processor
from .vision import VisionRerankerBackend
from .weights import cached, load_pretrained, load_tokenizer, read_weights

__all__ = ["JINA_VL_ARCHITECTURES", "JinaVLBackend", "JinaVLForRanking", "is_jina_vl"]

JINA_VL_ARCHITECTURES = frozenset({"JinaVLForRanking", "JinaVLForSequenceClassification"})
SCORE_TOKEN_ID = 100  # vLLM's JinaVLForSequenceClassification.post_process_tokens
LOGIT_MEAN = 2.65  # vLLM's JinaVLForSequenceClassificationConfig default (pooler logit_mean)


def is_jina_vl(info: CheckpointInfo) -> bool:
    return info.model_type == "qwen2_vl" and bool(JINA_VL_ARCHITECTURES & set(info.architectures))


def score_template(query: str, document: str) -> str:
    """vLLM's JinaVLForSequenceClassification.get_score_template."""
    return f"**Document**:\n{document}\n**Query**:\n{query}"


class JinaVLForRanking(torch.nn.Module):
    """``model`` (Qwen2VLModel: ``visual`` + ``language_model``) and the ``score`` MLP.

    The module names are those of the published model after transformers' key conversion
    (``model.language_model.*``, ``model.visual.*``, ``score.0`` / ``score.2``), so PEFT
    adapters of it find their layers.
    """

    def __init__(self, backbone: torch.nn.Module, hidden: int) -> None:
        super().__init__()
        self.model = backbone
        self.score = torch.nn.Sequential(
            torch.nn.Linear(hidden, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 1)
        )

    @property
    def backbone(self) -> torch.nn.Module:
        """The Qwen2-VL model (whose forward signature callers inspect)."""
        return self.model

    def forward(self, **kwargs: Any) -> Any:
        return self.model(**kwargs)


class JinaVLBackend(VisionRerankerBackend):
    """Qwen2-VL over ``**Document** … **Query** …`` + token 100 → score MLP → (z − 2.65) → σ."""

    def __init__(
        self, *, info: CheckpointInfo, config: ScorerConfig, device: torch.device,
        dtype: torch.dtype,
    ) -> None:
        super().__init__(info=info, config=config, device=device, dtype=dtype)
        self._slot = cached((str(info.path), "jina-vl", str(device), dtype), self._load)
        self.ranker, self.tokenizer, self.processor = self._slot.value
        self.model = self.ranker  # what forward calls: ids, pixels, grid → last_hidden_state
        self.image_token_id = int(info.config.get("image_token_id")
                                  or self.tokenizer.convert_tokens_to_ids("<|image_pad|>"))
        pad_id = self.tokenizer.pad_token_id
        self.pad_id = int(pad_id if pad_id is not None else self.tokenizer.eos_token_id or 0)
        text_info = replace(info, config=_text_config(info))
        self.limit = cap_max_length(model_max_length(text_info, self.tokenizer), config.max_length)
        self.activation: Activation = resolve_activation(info.config, info.st_config, 1)

    def _load(self) -> tuple[JinaVLForRanking, Any, Any]:
        from transformers import Qwen2VLForConditionalGeneration

        tokenizer = load_tokenizer(self.info.path, trust_remote_code=False)
        processor = load_processor(self.info)
        lm: Any = load_pretrained(
            Qwen2VLForConditionalGeneration, self.info.path, dtype=self.dtype,
            device=self.device, trust_remote_code=False, expect_unused=("score.",),
            allow_missing=("lm_head",),  # replaced by the score MLP in the published model
        )
        hidden = int(lm.config.text_config.hidden_size)
        ranker = JinaVLForRanking(lm.model, hidden)
        state = {k: v for k, v in read_weights(self.info.path).items() if k.startswith("score.")}
        try:
            ranker.score.load_state_dict({k[len("score."):]: v for k, v in state.items()})
        except RuntimeError as exc:
            raise ModelLoadError(
                f"{self.info.path} lacks jina-reranker-m0's score MLP (score.0 / score.2 weights "
                f"of size {hidden}): {str(exc)[:300]}. It is not a JinaVLForRanking checkpoint."
            ) from exc
        # vLLM runs the head in float32 (head_dtype); so do we.
        ranker.score.float().to(self.device)
        return ranker.eval(), tokenizer, processor

    # -- stages ----------------------------------------------------------------------------------
    def render(self, query: str, document: str, call: ScoreCall) -> str:
        return score_template(query, document)

    def finish(self, ids: list[int]) -> list[int]:
        return [*ids, SCORE_TOKEN_ID]

    def head(self, pooled: torch.Tensor, use_activation: bool) -> torch.Tensor:
        with torch.inference_mode():
            logits = self.ranker.score(pooled.float()) - LOGIT_MEAN  # [B, 1], calibrated
        return finalize_logits(logits, self.activation, use_activation=use_activation)

    def modules(self) -> list[torch.nn.Module]:
        return [self.ranker]

    def lora_targets(self) -> LoraTargets:
        """PEFT names of the published JinaVLForRanking, old layout (``model.layers.*``,
        ``visual.*``) or new (``model.language_model.*``, ``model.visual.*``), and ``score.*``."""
        return LoraTargets(root=self.ranker, rename=_jina_name, describe="JinaVLForRanking")


def _jina_name(name: str) -> str:
    """A PEFT module name of either layout → the path under :class:`JinaVLForRanking`."""
    if name.startswith(("model.language_model.", "model.visual.", "score.")) or name == "score":
        return name
    if name.startswith("visual."):
        return "model." + name
    if name.startswith("model."):
        return "model.language_model." + name[len("model."):]
    return name
