"""Qwen3-VL-Reranker (``Qwen3VLForSequenceClassification``) from the original checkpoint.

Served as vLLM does with ``hf_overrides {"architectures": ["Qwen3VLForSequenceClassification"],
"classifier_from_token": ["no", "yes"], "is_original_qwen3_reranker": true}`` and the bundled
``qwen3_vl_reranker`` template: the checkpoint is a ``Qwen3VLForConditionalGeneration``, the
score is sigmoid(z_yes − z_no) at the last token, read through the float32 row
``W[yes] − W[no]`` of its LM head (never the whole head), as for the text Qwen3 reranker.

The model is transformers' own Qwen3-VL (vision tower, deepstack, M-RoPE); no remote code.
Pairs without images take exactly the text LLM reranker's prompt rules (``LLMPrompts``);
pairs with images are rendered by the same template with vLLM's placeholders (see
engine.local.vision).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch

from ..calls import ScoreCall
from ..config import ScorerConfig
from ..errors import ModelLoadError, UnsupportedScoreType
from ..templates import load_template
from .checkpoint import CheckpointInfo, cap_max_length, model_max_length
from .conversion import resolve_conversion
from .heads import Activation, finalize_logits, linear_head, resolve_activation, token_score_weight
from .llm_prompts import LLMPrompts, resolve_template
from .lora import LoraTargets, token_row_head
from .runner import Prepared
from .vision import VisionRerankerBackend
from .weights import cached, load_pretrained, load_tokenizer, quiet_transformers

__all__ = ["QWEN3_VL_ARCHITECTURES", "Qwen3VLRerankerBackend", "is_qwen3_vl", "load_processor"]

QWEN3_VL_ARCHITECTURES = frozenset(
    {"Qwen3VLForSequenceClassification", "Qwen3VLForConditionalGeneration"}
)


def is_qwen3_vl(info: CheckpointInfo) -> bool:
    """A Qwen3-VL checkpoint asked to score (vLLM's architecture override)."""
    return info.model_type == "qwen3_vl" and "Qwen3VLForSequenceClassification" in set(
        info.architectures
    )


def load_processor(info: CheckpointInfo) -> Any:
    """The checkpoint's own image processor (preprocessor_config.json), Pillow-based.

    transformers picks its torchvision variant where that is installed and falls back to the
    PIL one otherwise; both resize and normalise the same way.
    """
    from transformers import AutoImageProcessor

    if not (info.path / "preprocessor_config.json").is_file():
        raise ModelLoadError(
            f"{info.path} has no preprocessor_config.json: a multimodal reranker needs its image "
            "processor's settings (patch and merge size, pixel bounds, normalisation)."
        )
    try:
        with quiet_transformers():
            return AutoImageProcessor.from_pretrained(str(info.path))
    except Exception as exc:
        raise ModelLoadError(
            f"Could not load the image processor of {info.path}: {exc}. Image inputs need "
            "Pillow: pip install 'scorer[multimodal]'."
        ) from exc


def _text_config(info: CheckpointInfo) -> dict[str, Any]:
    text = info.config.get("text_config")
    return dict(text) if isinstance(text, dict) else dict(info.config)


class Qwen3VLRerankerBackend(VisionRerankerBackend):
    """Qwen3-VL decoder over the templated pair (text and images) → w·h_last → sigmoid."""

    def __init__(
        self, *, info: CheckpointInfo, config: ScorerConfig, device: torch.device,
        dtype: torch.dtype,
    ) -> None:
        super().__init__(info=info, config=config, device=device, dtype=dtype)
        self.spec = resolve_conversion(info.config)
        if not self.spec.tokens:
            raise UnsupportedScoreType(
                f"{info.path} is served from the original Qwen3-VL-Reranker checkpoint with "
                'hf_overrides {"architectures": ["Qwen3VLForSequenceClassification"], '
                '"classifier_from_token": ["no", "yes"], "is_original_qwen3_reranker": true}; '
                "classifier_from_token is missing."
            )
        self._slot = cached(
            (str(info.path), "qwen3-vl", str(device), dtype, self.spec), self._load
        )
        self.model, self.tokenizer, self.processor, self.weight = self._slot.value
        self.bias: torch.Tensor | None = None
        self.image_token_id = int(info.config.get("image_token_id")
                                  or self.tokenizer.convert_tokens_to_ids("<|image_pad|>"))
        pad_id = self.tokenizer.pad_token_id
        self.pad_id = int(pad_id if pad_id is not None else self.tokenizer.eos_token_id or 0)
        text_info = replace(info, config=_text_config(info))  # max_position_embeddings is there
        self.limit = cap_max_length(model_max_length(text_info, self.tokenizer), config.max_length)
        self.activation: Activation = resolve_activation(info.config, info.st_config, 1)
        self.template, self.template_kwargs = resolve_template(info, config, self.spec)
        self.prompts = LLMPrompts(
            tokenizer=self.tokenizer, template=self.template,
            template_kwargs=self.template_kwargs, use_sep_token=self.spec.use_sep_token,
            max_length=self.limit, config=config,
        )

    def _token_ids(self, tokenizer: Any) -> list[int]:
        ids = []
        for token in self.spec.tokens:
            token_id = tokenizer.convert_tokens_to_ids(token)
            if token_id is None or tokenizer.convert_ids_to_tokens(int(token_id)) != token:
                raise ModelLoadError(
                    f"classifier_from_token {token!r} is not a token of {self.info.path}'s "
                    "vocabulary (vocabulary token strings such as 'yes', not text)."
                )
            ids.append(int(token_id))
        return ids

    def _load(self) -> tuple[torch.nn.Module, Any, Any, torch.Tensor]:
        from transformers import Qwen3VLForConditionalGeneration

        tokenizer = load_tokenizer(self.info.path, trust_remote_code=False)
        processor = load_processor(self.info)
        ids = self._token_ids(tokenizer)
        lm: Any = load_pretrained(
            Qwen3VLForConditionalGeneration, self.info.path, dtype=self.dtype,
            device=self.device, trust_remote_code=False,
        )
        assert self.spec.method is not None  # resolve_conversion guarantees it with tokens
        with torch.no_grad():
            weight = token_score_weight(lm.lm_head.weight.detach(), ids, self.spec.method)
        # Keep the vision tower and decoder (Qwen3VLModel); the vocabulary head never runs.
        return lm.model, tokenizer, processor, weight

    # -- stages ----------------------------------------------------------------------------------
    def render(self, query: str, document: str, call: ScoreCall) -> str:
        template, kwargs = self.template, dict(self.template_kwargs)
        if call.vllm is not None:
            if call.vllm.template is not None:
                template = load_template(call.vllm.template)
            kwargs.update(dict(call.vllm.template_kwargs))
        if template is None:
            return query + document  # vLLM without a template: the plain concatenation
        return template.render(query, document, **kwargs)

    def prepare_text(self, call: ScoreCall, items: list[int]) -> Prepared | None:
        """Pairs without images: the text Qwen3 reranker's rules, unchanged."""
        queries = [q if isinstance(q, str) else "\n".join(q.texts)  # type: ignore[attr-defined]
                   for q in call.queries]
        docs = [call.documents[i] for i in items]
        docs = [d if isinstance(d, str) else "\n".join(d.texts)  # type: ignore[attr-defined]
                for d in docs]
        query_index = [call.query_index[i] for i in items]
        if call.vllm is not None:
            rendered = self.prompts.prepare_vllm(queries, docs, query_index, call.vllm)
        else:
            rendered = self.prompts.prepare(queries, docs, query_index,
                                            call.truncate_prompt_tokens, positions=items)
        return Prepared(input_ids=rendered.input_ids, token_type_ids=None,
                        truncated=rendered.truncated)

    def head(self, pooled: torch.Tensor, use_activation: bool) -> torch.Tensor:
        logits = linear_head(pooled, self.weight, self.bias)  # [B, 1]
        return finalize_logits(logits, self.activation, use_activation=use_activation)

    def lora_targets(self) -> LoraTargets:
        """PEFT names of Qwen3VLForConditionalGeneration: ``model.language_model.*``,
        ``model.visual.*`` (under our Qwen3VLModel) and ``lm_head`` (the score row)."""
        return LoraTargets(
            root=self.model, strip="model.", head_names=frozenset({"lm_head"}),
            head=token_row_head(self), describe="Qwen3VLForConditionalGeneration",
        )
