"""Write the tiny checkpoints of the vLLM reference suite into ``tests/fixtures/vllm/``.

    python -m tests.vllm_reference.build_fixtures            # only the missing ones
    python -m tests.vllm_reference.build_fixtures --force    # rebuild all (then re-record!)

The folders are committed: transformers differs between vLLM's venv and ours, so re-initialising
from a seed in each venv would not give the same bytes. Everything is small on purpose (written
out or small trained vocabularies, hidden 32 for encoders, 64 for decoders, 1-2 layers, float32).
head_dim is 32 everywhere: vLLM's CPU attention refuses 16 ("Unsupported CPU attention
configuration: head_dim=16"), in encoders too.

Runs under either venv (torch, transformers, tokenizers, safetensors; no sentence-transformers:
its files are written out by hand, as the hub layouts are).
"""

from __future__ import annotations

import argparse
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from .texts import CORPUS

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "vllm"

ENCODER = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=1,
               intermediate_size=37, initializer_range=0.3, max_position_embeddings=128)
DECODER = dict(hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=2,
               num_key_value_heads=1, head_dim=32, max_position_embeddings=256,
               initializer_range=0.3)

# Template renders (written out) so the decoder BPE vocabularies hold their pieces.
TEMPLATE_TEXT = [
    "<|im_start|>system\nJudge whether the Document meets the requirements based on the Query "
    'and the Instruct provided. Note that the answer can only be "yes" or "no".<|im_end|>\n'
    "<|im_start|>user\n<Instruct>: Given a web search query, retrieve relevant passages that "
    "answer the query\n<Query>: q\n<Document>: d<|im_end|>\n<|im_start|>assistant\n"
    "<think>\n\n</think>\n\n",
    "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant."
    "<|im_end|>\n<|im_start|>user\nquery: q\ndocument: d\nYou are a search relevance expert who "
    "evaluates how well documents match search queries. For each query-document pair, carefully "
    "analyze the semantic relationship between them, then provide your binary relevance "
    "judgment (0 for not relevant, 1 for relevant).\nRelevance:<|im_end|>\n"
    "<|im_start|>assistant\n",
    "A: q\nB: d\nGiven a query A and a passage B, determine whether the passage contains an "
    "answer to the query by providing a prediction of either 'Yes' or 'No'.",
    "Query: q\nDocument: d",
    "question:q \n \n passage:d",
]
CLASSIFIER_WORDS = ["yes", "no", "Yes", "No", "0", "1"]


# -- tokenizers -----------------------------------------------------------------------------------
def _words() -> list[str]:
    out: set[str] = set()
    for line in CORPUS:
        for w in line.lower().replace("?", " ? ").replace(".", " . ").replace(",", " , ").split():
            out.add(w)
    return sorted(out)


def wordpiece_vocab(extra: list[str] = ()) -> list[str]:  # type: ignore[assignment]
    """Specials, whole words, single characters and their ## continuations (about 150 tokens)."""
    chars = sorted({c for line in CORPUS for c in line.lower() if not c.isspace()}
                   | set("abcdefghijklmnopqrstuvwxyz0123456789"))
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *extra]
    for tok in [*_words(), *chars, *(f"##{c}" for c in chars)]:
        if tok not in vocab:
            vocab.append(tok)
    return vocab


def bert_tokenizer(folder: Path) -> Any:
    from transformers import BertTokenizerFast

    vocab = {t: i for i, t in enumerate(wordpiece_vocab())}
    tok = BertTokenizerFast(vocab=vocab, do_lower_case=True, model_max_length=128)
    assert len(tok) == len(vocab), "the written-out vocabulary was not taken"
    return tok


def modernbert_tokenizer() -> Any:
    """WordPiece with [CLS]/[SEP] specials and no token_type_ids (as ModernBERT's tokenizer)."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(wordpiece_vocab())}
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, cls_token="[CLS]", sep_token="[SEP]", pad_token="[PAD]",
        unk_token="[UNK]", mask_token="[MASK]", model_max_length=128,
        model_input_names=["input_ids", "attention_mask"],
    )


def roberta_tokenizer() -> Any:
    """Byte-level BPE (trained, 300 tokens) with RoBERTa's pair format ``<s> a </s></s> b </s>``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(
        CORPUS * 4, trainers.BpeTrainer(vocab_size=350, special_tokens=specials,
                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    )
    tok.post_processor = processors.RobertaProcessing(
        ("</s>", tok.token_to_id("</s>")), ("<s>", tok.token_to_id("<s>"))
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", sep_token="</s>",
        cls_token="<s>", pad_token="<pad>", unk_token="<unk>", mask_token="<mask>",
        model_input_names=["input_ids", "attention_mask"], model_max_length=128,
    )


def xlmr_tokenizer() -> Any:
    """A written-out Unigram (sentencepiece-style) vocabulary with XLM-R's pair format."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    words = sorted({w for line in CORPUS for w in line.split()})
    chars = sorted({c for line in CORPUS for c in line if not c.isspace()})
    vocab = [(t, 0.0) for t in specials]
    vocab += [("\u2581" + w, -1.0 - 0.01 * i) for i, w in enumerate(words)]
    vocab += [("\u2581", -8.0)]
    vocab += [(c, -10.0 - 0.01 * i) for i, c in enumerate(chars)]
    tok = Tokenizer(models.Unigram(vocab, unk_id=3, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", 0), ("</s>", 2)],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", sep_token="</s>",
        cls_token="<s>", pad_token="<pad>", unk_token="<unk>", mask_token="<mask>",
        model_input_names=["input_ids", "attention_mask"], model_max_length=128,
    )


def decoder_tokenizer(style: str) -> Any:
    """Byte-level BPE (trained, 400 tokens) holding the classifier words as single tokens.

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
    corpus = CORPUS * 3 + [w for w in CLASSIFIER_WORDS for _ in range(20)] + TEMPLATE_TEXT * 3
    tok.train_from_iterator(corpus, trainers.BpeTrainer(
        vocab_size=400, special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    if style == "qwen":
        tok.add_tokens([AddedToken(t, special=False, normalized=False)
                        for t in ("<think>", "</think>")])
        kwargs = {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"}
    else:
        bos = specials[2] if style == "gemma" else specials[0]
        tok.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos} $B",
            special_tokens=[(bos, tok.token_to_id(bos))],
        )
        kwargs = (
            {"bos_token": "<bos>", "eos_token": "<eos>", "pad_token": "<pad>", "unk_token": "<unk>"}
            if style == "gemma"
            else {"bos_token": "<|begin_of_text|>", "eos_token": "<|end_of_text|>"}
        )
    for word in CLASSIFIER_WORDS:
        assert tok.token_to_id(word) is not None, f"{word!r} must be one vocabulary token"
    return PreTrainedTokenizerFast(tokenizer_object=tok, model_max_length=256, **kwargs)


# -- helpers --------------------------------------------------------------------------------------
def _scale_head(model: torch.nn.Module, factor: float = 4.0) -> None:
    """Random tiny heads give logits near 0; spread them so scores differ and sigmoid matters."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if any(k in name for k in ("classifier", "out_proj", "score")):
                p.mul_(factor)


def _save(model: Any, tok: Any, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder, safe_serialization=True)
    tok.save_pretrained(folder)
    gen = folder / "generation_config.json"
    if gen.exists():  # not read by either side; one file less to commit
        gen.unlink()
    return folder


def _write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


ST_TRANSFORMER = {"idx": 0, "name": "0", "path": "",
                  "type": "sentence_transformers.models.Transformer"}


# -- encoders -------------------------------------------------------------------------------------
def build_bert_ce(folder: Path, *, num_labels: int = 1, seed: int = 0) -> Path:
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    tok = bert_tokenizer(folder)
    model = BertForSequenceClassification(
        BertConfig(vocab_size=len(tok), num_labels=num_labels, **ENCODER))
    _scale_head(model)
    return _save(model, tok, folder)


def build_roberta_ce(folder: Path, *, seed: int = 1) -> Path:
    from transformers import RobertaConfig, RobertaForSequenceClassification

    torch.manual_seed(seed)
    tok = roberta_tokenizer()
    cfg = {**ENCODER, "max_position_embeddings": 130}  # RoBERTa positions start at pad_id + 1
    model = RobertaForSequenceClassification(RobertaConfig(
        vocab_size=len(tok), num_labels=1, pad_token_id=tok.pad_token_id, bos_token_id=0,
        eos_token_id=2, **cfg))
    _scale_head(model)
    return _save(model, tok, folder)


def build_xlmr_ce(folder: Path, *, seed: int = 2) -> Path:
    from transformers import XLMRobertaConfig, XLMRobertaForSequenceClassification

    torch.manual_seed(seed)
    tok = xlmr_tokenizer()
    cfg = {**ENCODER, "max_position_embeddings": 130}
    model = XLMRobertaForSequenceClassification(XLMRobertaConfig(
        vocab_size=len(tok), num_labels=1, pad_token_id=tok.pad_token_id, bos_token_id=0,
        eos_token_id=2, **cfg))
    _scale_head(model)
    return _save(model, tok, folder)


def build_modernbert_ce(folder: Path, *, seed: int = 3) -> Path:
    from transformers import ModernBertConfig, ModernBertForSequenceClassification

    torch.manual_seed(seed)
    tok = modernbert_tokenizer()
    vocab = tok.get_vocab()
    model = ModernBertForSequenceClassification(ModernBertConfig(
        vocab_size=len(tok), num_labels=1, hidden_size=32, intermediate_size=48,
        num_hidden_layers=2, num_attention_heads=1, max_position_embeddings=128,
        global_attn_every_n_layers=1, local_attention=128, classifier_pooling="cls",
        initializer_range=0.3, pad_token_id=vocab["[PAD]"], cls_token_id=vocab["[CLS]"],
        sep_token_id=vocab["[SEP]"], bos_token_id=vocab["[CLS]"], eos_token_id=vocab["[SEP]"]))
    _scale_head(model)
    return _save(model, tok, folder)


def _bert_encoder(folder: Path, *, seed: int, tok: Any = None) -> tuple[Any, Any]:
    from transformers import BertConfig, BertModel

    torch.manual_seed(seed)
    tok = tok if tok is not None else bert_tokenizer(folder)
    model = BertModel(BertConfig(vocab_size=len(tok), **ENCODER), add_pooling_layer=False)
    return model, tok


def build_bert_bi(folder: Path, *, seed: int = 4) -> Path:
    """sentence-transformers layout: Transformer, Pooling (mean), Normalize."""
    model, tok = _bert_encoder(folder, seed=seed)
    _save(model, tok, folder)
    _write_json(folder / "modules.json", [
        ST_TRANSFORMER,
        {"idx": 1, "name": "1", "path": "1_Pooling",
         "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize",
         "type": "sentence_transformers.models.Normalize"},
    ])
    _write_json(folder / "1_Pooling" / "config.json", {
        "word_embedding_dimension": 32, "pooling_mode_cls_token": False,
        "pooling_mode_mean_tokens": True, "pooling_mode_max_tokens": False,
        "pooling_mode_mean_sqrt_len_tokens": False, "include_prompt": True})
    _write_json(folder / "sentence_bert_config.json",
                {"max_seq_length": 128, "do_lower_case": False})
    _write_json(folder / "config_sentence_transformers.json", {"similarity_fn_name": "cosine"})
    return folder


def build_colbert_ir(folder: Path, *, seed: int = 5, dim: int = 8) -> Path:
    """colbert-ir layout: HF_ColBERT config, BERT weights under ``bert.``, ``linear.weight``."""
    from safetensors.torch import load_file, save_file

    model, tok = _bert_encoder(folder, seed=seed)
    _save(model, tok, folder)
    weights = load_file(str(folder / "model.safetensors"))
    state = {f"bert.{k}": v for k, v in weights.items()}
    state["linear.weight"] = torch.randn(dim, 32)
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    config = json.loads((folder / "config.json").read_text())
    config["architectures"] = ["HF_ColBERT"]
    _write_json(folder / "config.json", config)
    return folder


def build_pylate(folder: Path, *, seed: int = 6, dim: int = 8) -> Path:
    """PyLate layout: modules.json [Transformer, pylate Dense], [Q]/[D] prefixes as added tokens."""
    from safetensors.torch import save_file

    tok = bert_tokenizer(folder)
    tok.add_tokens(["[Q] ", "[D] "])
    model, tok = _bert_encoder(folder, seed=seed, tok=tok)
    _save(model, tok, folder)
    (folder / "1_Dense").mkdir()
    save_file({"linear.weight": torch.randn(dim, 32)},
              str(folder / "1_Dense" / "model.safetensors"), metadata={"format": "pt"})
    _write_json(folder / "1_Dense" / "config.json", {
        "in_features": 32, "out_features": dim, "bias": False,
        "activation_function": "torch.nn.modules.linear.Identity"})
    _write_json(folder / "modules.json", [
        ST_TRANSFORMER,
        {"idx": 1, "name": "1", "path": "1_Dense", "type": "pylate.models.Dense.Dense"},
    ])
    _write_json(folder / "config_sentence_transformers.json", {
        "model_type": "ColBERT", "query_prefix": "[Q] ", "document_prefix": "[D] ",
        "query_length": 32, "document_length": 128, "similarity_fn_name": "MaxSim"})
    _write_json(folder / "sentence_bert_config.json", {"max_seq_length": 128})
    return folder


def build_bge_m3(folder: Path, *, seed: int = 7) -> Path:
    """BGE-M3 layout: XLM-R encoder, ST modules (CLS pooling, Normalize), colbert/sparse .pt."""
    from transformers import XLMRobertaConfig, XLMRobertaModel

    torch.manual_seed(seed)
    tok = xlmr_tokenizer()
    cfg = {**ENCODER, "max_position_embeddings": 130}
    model = XLMRobertaModel(XLMRobertaConfig(
        vocab_size=len(tok), pad_token_id=tok.pad_token_id, bos_token_id=0, eos_token_id=2,
        **cfg), add_pooling_layer=False)
    _save(model, tok, folder)
    torch.save(torch.nn.Linear(32, 32, bias=True).state_dict(), folder / "colbert_linear.pt")
    torch.save(torch.nn.Linear(32, 1, bias=True).state_dict(), folder / "sparse_linear.pt")
    _write_json(folder / "1_Pooling" / "config.json",
                {"word_embedding_dimension": 32, "pooling_mode_cls_token": True,
                 "pooling_mode_mean_tokens": False})
    _write_json(folder / "modules.json", [
        ST_TRANSFORMER,
        {"idx": 1, "name": "1", "path": "1_Pooling",
         "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize",
         "type": "sentence_transformers.models.Normalize"},
    ])
    return folder


# -- decoders -------------------------------------------------------------------------------------
STYLE = {"qwen2": "qwen", "qwen3": "qwen", "gemma": "gemma", "llama": "llama"}


def _lm_config(family: str, tok: Any, *, tie: bool) -> Any:
    from transformers import GemmaConfig, LlamaConfig, Qwen2Config, Qwen3Config

    common = dict(vocab_size=len(tok), tie_word_embeddings=tie, pad_token_id=tok.pad_token_id,
                  bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, **DECODER)
    cls = {"qwen2": Qwen2Config, "qwen3": Qwen3Config, "gemma": GemmaConfig,
           "llama": LlamaConfig}[family]
    return cls(**common)


def build_causal_lm(folder: Path, family: str, *, seed: int, tie: bool) -> Path:
    """A random ``*ForCausalLM`` checkpoint of ``family``, as the original rerankers ship."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    tok = decoder_tokenizer(STYLE[family])
    model = AutoModelForCausalLM.from_config(_lm_config(family, tok, tie=tie))
    return _save(model, tok, folder)


def build_qwen3_seq_cls(folder: Path, src: Path) -> Path:
    """What vLLM's convert_model_to_seq_cls.py does: score = W[yes] − W[no], one label."""
    from transformers import (
        AutoConfig,
        AutoModelForCausalLM,
        AutoModelForSequenceClassification,
        AutoTokenizer,
    )

    tok = AutoTokenizer.from_pretrained(str(src))
    lm = AutoModelForCausalLM.from_pretrained(str(src))
    config = AutoConfig.from_pretrained(str(src), num_labels=1)
    config.architectures = ["Qwen3ForSequenceClassification"]
    seq = AutoModelForSequenceClassification.from_config(config)
    seq.model.load_state_dict(lm.model.state_dict())
    rows = lm.get_output_embeddings().weight.detach()[tok.convert_tokens_to_ids(["no", "yes"])]
    with torch.no_grad():
        seq.score.weight.copy_((rows[1] - rows[0])[None])
    return _save(seq, tok, folder)


NEMOTRON_CODE = '''"""Config class of the tiny nemotron-style fixture (real checkpoints ship one).

Only the config is needed by vLLM (which has its own LlamaBidirectional implementation); the
model classes here are the plain Llama ones, so this file is not a faithful bidirectional model.
"""

from transformers import LlamaConfig, LlamaForSequenceClassification, LlamaModel


class LlamaBidirectionalConfig(LlamaConfig):
    model_type = "llama_bidirec"

    def __init__(self, pooling="avg", temperature=1.0, **kwargs):
        self.pooling = pooling
        self.temperature = temperature
        super().__init__(**kwargs)


class LlamaBidirectionalModel(LlamaModel):
    config_class = LlamaBidirectionalConfig


class LlamaBidirectionalForSequenceClassification(LlamaForSequenceClassification):
    config_class = LlamaBidirectionalConfig
'''


def build_nemotron(folder: Path, *, seed: int = 15) -> Path:
    """nvidia/llama-nemotron-rerank layout: LlamaBidirectionalForSequenceClassification config
    (model_type llama_bidirec, pooling avg) over plain Llama weights and a ``score`` head."""
    from transformers import LlamaForSequenceClassification

    torch.manual_seed(seed)
    tok = decoder_tokenizer("llama")
    config = _lm_config("llama", tok, tie=False)
    config.num_labels = 1
    model = LlamaForSequenceClassification(config)
    _scale_head(model, 2.0)
    _save(model, tok, folder)
    raw = json.loads((folder / "config.json").read_text())
    raw.update({
        "architectures": ["LlamaBidirectionalForSequenceClassification"],
        "model_type": "llama_bidirec",
        "pooling": "avg",
        "temperature": 1.0,
        "auto_map": {
            "AutoConfig": "llama_bidirectional_model.LlamaBidirectionalConfig",
            "AutoModel": "llama_bidirectional_model.LlamaBidirectionalModel",
            "AutoModelForSequenceClassification":
                "llama_bidirectional_model.LlamaBidirectionalForSequenceClassification",
        },
    })
    _write_json(folder / "config.json", raw)
    (folder / "llama_bidirectional_model.py").write_text(NEMOTRON_CODE)
    return folder


BUILDERS: dict[str, Callable[[Path], Path]] = {
    "bert_ce": build_bert_ce,
    "bert_ce_2labels": lambda f: build_bert_ce(f, num_labels=2, seed=10),
    "roberta_ce": build_roberta_ce,
    "xlmr_ce": build_xlmr_ce,
    "modernbert_ce": build_modernbert_ce,
    "bert_bi": build_bert_bi,
    "colbert_ir": build_colbert_ir,
    "pylate": build_pylate,
    "bge_m3": build_bge_m3,
    # Qwen3 and Gemma tie the head to the embeddings (as the real ones); Qwen2 and Llama don't.
    "qwen3_lm": lambda f: build_causal_lm(f, "qwen3", seed=11, tie=True),
    "qwen2_lm": lambda f: build_causal_lm(f, "qwen2", seed=12, tie=False),
    "gemma_lm": lambda f: build_causal_lm(f, "gemma", seed=13, tie=True),
    "llama_lm": lambda f: build_causal_lm(f, "llama", seed=14, tie=False),
    "qwen3_seq_cls": lambda f: build_qwen3_seq_cls(f, FIXTURES / "qwen3_lm"),
    "nemotron": build_nemotron,
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--force", action="store_true", help="rebuild folders that exist")
    p.add_argument("names", nargs="*", help=f"subset of {sorted(BUILDERS)}")
    args = p.parse_args(argv)
    for name in args.names or list(BUILDERS):
        folder = FIXTURES / name
        if folder.exists() and not args.force:
            continue
        if folder.exists():
            shutil.rmtree(folder)
        BUILDERS[name](folder)
        size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
        print(f"built {name}: {size / 1024:.0f} KiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
