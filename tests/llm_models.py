"""Builders of tiny random decoder rerankers (Qwen2/Qwen3/Gemma/Llama, nemotron's bidirectional
Llama), saved as the original checkpoints ship, with byte-level BPE tokenizers that hold the
classifier tokens and the ChatML specials. Also each family's prompt, written out from its model
card (independent of templates/*.jinja), for reference computations.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from tests.models import CORPUS

WORDS = ["yes", "no", "Yes", "No", "0", "1"]

QWEN3_SYSTEM = (
    "<|im_start|>system\nJudge whether the Document meets the requirements based on the Query "
    'and the Instruct provided. Note that the answer can only be "yes" or "no".<|im_end|>\n'
)
QWEN3_DEFAULT = "Given a web search query, retrieve relevant passages that answer the query"
QWEN3_SUFFIX = "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
MXBAI_TASK = (
    "You are a search relevance expert who evaluates how well documents match search queries. "
    "For each query-document pair, carefully analyze the semantic relationship between them, "
    "then provide your binary relevance judgment (0 for not relevant, 1 for relevant).\n"
    "Relevance:"
)
GEMMA_TASK = (
    "Given a query A and a passage B, determine whether the passage contains an answer to the "
    "query by providing a prediction of either 'Yes' or 'No'."
)


# Each family's prompt, written out from its model card (independent of templates/*.jinja).
def qwen3_prompt(q: str, d: str, instruction: str = QWEN3_DEFAULT) -> str:
    return (
        QWEN3_SYSTEM + f"<|im_start|>user\n<Instruct>: {instruction}\n<Query>: {q}\n"
        f"<Document>: {d}" + QWEN3_SUFFIX
    )


def mxbai_prompt(q: str, d: str) -> str:
    return (
        "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful "
        f"assistant.<|im_end|>\n<|im_start|>user\nquery: {q}\ndocument: {d}\n{MXBAI_TASK}"
        "<|im_end|>\n<|im_start|>assistant\n"
    )


def gemma_prompt(q: str, d: str) -> str:
    return f"A: {q}\nB: {d}\n{GEMMA_TASK}"


def basic_prompt(q: str, d: str) -> str:
    return f"Query: {q}\nDocument: {d}"


def nemotron_prompt(q: str, d: str) -> str:
    return f"question:{q} \n \n passage:{d}"


# -- builders -----------------------------------------------------------------------------------
def build_tokenizer(style: str) -> Any:
    """A byte-level BPE tokenizer holding the classifier words as single vocabulary tokens.

    qwen: ChatML specials, no BOS, pad <|endoftext|>. gemma: adds <bos>, has <pad>.
    llama: adds <|begin_of_text|>, and no pad token at all (as Llama 3).
    """
    from tokenizers import (
        AddedToken,
        Tokenizer,
        decoders,
        models,
        pre_tokenizers,
        processors,
        trainers,
    )
    from transformers import PreTrainedTokenizerFast

    specials = {
        "qwen": ["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        "gemma": ["<pad>", "<eos>", "<bos>", "<unk>"],
        "llama": ["<|begin_of_text|>", "<|end_of_text|>"],
    }[style]
    tok = Tokenizer(models.BPE(unk_token="<unk>" if style == "gemma" else None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    corpus = (
        CORPUS
        + [w for w in WORDS for _ in range(20)]
        + [qwen3_prompt("q", "d"), mxbai_prompt("q", "d"), gemma_prompt("q", "d")] * 3
    )
    tok.train_from_iterator(
        corpus,
        trainers.BpeTrainer(
            vocab_size=600,
            special_tokens=specials,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        ),
    )
    if style == "qwen":
        tok.add_tokens(
            [AddedToken(t, special=False, normalized=False) for t in ("<think>", "</think>")]
        )
        kwargs = {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"}
    else:
        bos = specials[2] if style == "gemma" else specials[0]
        tok.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A",
            pair=f"{bos} $A {bos} $B",
            special_tokens=[(bos, tok.token_to_id(bos))],
        )
        kwargs = (
            {"bos_token": "<bos>", "eos_token": "<eos>", "pad_token": "<pad>", "unk_token": "<unk>"}
            if style == "gemma"
            else {"bos_token": "<|begin_of_text|>", "eos_token": "<|end_of_text|>"}
        )
    for word in WORDS:
        assert tok.token_to_id(word) is not None, f"{word!r} must be one vocabulary token"
    return PreTrainedTokenizerFast(tokenizer_object=tok, model_max_length=1024, **kwargs)


STYLE = {"qwen2": "qwen", "qwen3": "qwen", "gemma": "gemma", "llama": "llama"}


def _lm_config(family: str, tok: Any, *, tie: bool) -> Any:
    from transformers import GemmaConfig, LlamaConfig, Qwen2Config, Qwen3Config

    common = dict(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        initializer_range=0.5,
        tie_word_embeddings=tie,
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
    )
    if family == "qwen2":
        return Qwen2Config(**common)
    if family == "qwen3":
        return Qwen3Config(head_dim=8, **common)
    if family == "gemma":
        return GemmaConfig(head_dim=8, **common)
    return LlamaConfig(**common)


def build_causal_lm(folder: Path, family: str, *, seed: int = 0, tie: bool = True) -> Path:
    """A random ``*ForCausalLM`` checkpoint of ``family``, as the original rerankers ship."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    tok = build_tokenizer(STYLE[family])
    model = AutoModelForCausalLM.from_config(_lm_config(family, tok, tie=tie))
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def convert_to_seq_cls(src: Path, folder: Path, tokens: list[str]) -> Path:
    """What vLLM's convert_model_to_seq_cls.py does: score = W[t1] − W[t0] (or W[t]), 1 label."""
    from transformers import (
        AutoConfig,
        AutoModelForCausalLM,
        AutoModelForSequenceClassification,
        AutoTokenizer,
    )

    tok = AutoTokenizer.from_pretrained(str(src))
    lm = AutoModelForCausalLM.from_pretrained(str(src))
    config = AutoConfig.from_pretrained(str(src), num_labels=1)
    seq = AutoModelForSequenceClassification.from_config(config)
    seq.model.load_state_dict(lm.model.state_dict())
    rows = lm.get_output_embeddings().weight.detach()[tok.convert_tokens_to_ids(tokens)]
    with torch.no_grad():
        seq.score.weight.copy_((rows[1] - rows[0])[None] if len(tokens) == 2 else rows)
    seq.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def build_nemotron(folder: Path, *, seed: int = 5) -> Path:
    """nvidia/llama-nemotron-rerank layout: LlamaBidirectionalForSequenceClassification config
    (model_type llama_bidirec, pooling avg) over plain Llama weights and a ``score`` head."""
    from transformers import LlamaForSequenceClassification

    torch.manual_seed(seed)
    tok = build_tokenizer("llama")
    config = _lm_config("llama", tok, tie=False)
    config.num_labels = 1
    model = LlamaForSequenceClassification(config)
    with torch.no_grad():
        model.score.weight.mul_(2.0)  # spread the tiny head's logits
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    raw = json.loads((folder / "config.json").read_text())
    raw.update(
        {
            "architectures": ["LlamaBidirectionalForSequenceClassification"],
            "model_type": "llama_bidirec",
            "pooling": "avg",
            "temperature": 1.0,
            "auto_map": {
                "AutoModelForSequenceClassification": (
                    "llama_bidirectional_model.LlamaBidirectionalForSequenceClassification"
                ),
            },
        }
    )
    (folder / "config.json").write_text(json.dumps(raw))
    return folder
