"""Finding a checkpoint and reading what it says about itself (no weights loaded).

Score-type detection reads only the checkpoint's own files (config.json architectures,
sentence-transformers modules.json, ColBERT projection files); it never guesses from the
model's name.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InputError, ModelLoadError, ScoreTypeDetectionError, UnsupportedScoreType
from ..types import ScoreType

__all__ = [
    "CheckpointInfo", "STModule", "cap_max_length", "check_score_type_supported",
    "detect_score_type", "inspect_checkpoint", "model_max_length", "read_json",
    "resolve_model_path",
]

_HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?")
# Published rerankers whose architecture name doesn't end in ForSequenceClassification
# (jina-reranker-m0; vLLM registers it as a sequence-classification model).
RANKING_ARCHITECTURES = frozenset({"JinaVLForRanking"})
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
# Position-embedding tables of these families start after the padding index, so
# max_position_embeddings overstates the usable length (514 → 512 for RoBERTa/XLM-R).
PADDING_OFFSET_FAMILIES = {"roberta", "xlm-roberta", "camembert", "bart", "longformer"}


@dataclass(frozen=True, kw_only=True)
class STModule:
    """One entry of a sentence-transformers ``modules.json``."""

    kind: str  # last component of the type: "Transformer", "Pooling", "Dense", "Normalize", ...
    type: str
    path: Path


@dataclass(frozen=True, kw_only=True)
class CheckpointInfo:
    """What a checkpoint folder says about itself (read once, no weights loaded)."""

    path: Path
    config: dict[str, Any]
    architectures: tuple[str, ...]
    # config.json's own architectures, before any hf_overrides (what the weights are).
    disk_architectures: tuple[str, ...] = ()
    st_modules: tuple[STModule, ...] = ()
    st_config: dict[str, Any] = field(default_factory=dict)
    sentence_bert_config: dict[str, Any] = field(default_factory=dict)
    colbert_linear_in_weights: bool = False  # colbert-ir HF_ColBERT: "linear.weight"
    colbert_linear_pt: bool = False  # BGE-M3: colbert_linear.pt

    @property
    def model_type(self) -> str:
        return str(self.config.get("model_type", ""))

    def st_modules_of(self, kind: str) -> list[STModule]:
        return [m for m in self.st_modules if m.kind == kind]

    @property
    def has_classification_head(self) -> bool:
        return any(
            a.endswith("ForSequenceClassification") or a in RANKING_ARCHITECTURES
            for a in self.architectures
        )

    @property
    def is_st_cross_encoder(self) -> bool:
        return self.st_config.get("model_type") == "CrossEncoder"

    @property
    def late_interaction_format(self) -> str | None:
        """The ColBERT projection format, or None: "st-dense", "colbert-linear", "bge-m3"."""
        if self.colbert_linear_pt:
            return "bge-m3"
        if self.colbert_linear_in_weights:
            return "colbert-linear"
        if self.is_pylate and self.st_modules_of("Dense"):
            return "st-dense"
        return None

    @property
    def is_pylate(self) -> bool:
        return self.st_config.get("model_type") == "ColBERT" or any(
            m.type.startswith("pylate.") for m in self.st_modules
        )


def resolve_model_path(model: str | os.PathLike[str], *, revision: str | None = None) -> Path:
    """A local folder, or a hub id found in the local Hugging Face cache (never downloaded)."""
    text = os.fspath(model)
    if not text.strip():
        raise ModelLoadError("model is an empty string; pass a model folder or a hub id.")
    path = Path(text).expanduser()
    if path.is_dir():
        return path.resolve()
    if path.exists():
        raise ModelLoadError(
            f"{text!r} is a file, not a model folder. Pass the folder that holds config.json."
        )
    if _HUB_ID.fullmatch(text):
        try:
            from huggingface_hub import snapshot_download

            return Path(
                snapshot_download(repo_id=text, revision=revision, local_files_only=True)
            ).resolve()
        except Exception as exc:  # any miss: not cached, bad id, offline
            raise ModelLoadError(
                f"Model {text!r} is neither a local folder nor in the local Hugging Face cache. "
                "scorer never downloads at run time: download it first "
                f"(`huggingface-cli download {text}`) or pass the path of a local folder."
            ) from exc
    raise ModelLoadError(
        f"Model path {text!r} does not exist. Pass an existing folder in Hugging Face layout "
        "(config.json, tokenizer files, weights) or a hub id that is in the local cache."
    )


def read_json(path: Path) -> dict[str, Any] | list[Any] | None:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))  # type: ignore[no-any-return]
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelLoadError(
            f"{path} is not valid JSON ({exc}); the checkpoint is corrupt."
        ) from exc


def _safetensors_keys(path: Path) -> set[str]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return set(f.keys())
    except Exception as exc:
        raise ModelLoadError(
            f"Could not read weights {path}: {exc}. The file is corrupt or truncated; "
            "re-download or re-save the checkpoint."
        ) from exc


def inspect_checkpoint(path: Path) -> CheckpointInfo:
    """Read config.json and the sentence-transformers/ColBERT files of a checkpoint folder."""
    config = read_json(path / "config.json")
    if not isinstance(config, dict):
        present = sorted(p.name for p in path.iterdir())[:12]
        raise ModelLoadError(
            f"{path} is not a model folder: it has no config.json (found: {present}). "
            "Pass the folder of a Hugging Face checkpoint."
        )
    if not any((path / w).is_file() for w in WEIGHT_FILES) and not list(
        path.glob("model-*.safetensors")
    ) and not (path / "model.safetensors.index.json").is_file():
        raise ModelLoadError(
            f"{path} has a config.json but no weights (expected one of {list(WEIGHT_FILES)}). "
            "The checkpoint is incomplete."
        )
    modules_raw = read_json(path / "modules.json")
    st_modules: list[STModule] = []
    if modules_raw is not None and not isinstance(modules_raw, list):
        raise ModelLoadError(
            f"{path / 'modules.json'} must hold a list of module entries (sentence-transformers' "
            f"layout), got a JSON {type(modules_raw).__name__}; the checkpoint is corrupt."
        )
    for position, entry in enumerate(modules_raw or []):
        if not isinstance(entry, dict) or not isinstance(entry.get("type", ""), str) or not \
                isinstance(entry.get("path", ""), str):
            raise ModelLoadError(
                f"{path / 'modules.json'} entry {position} is {entry!r:.80}, not an object with "
                "string 'type' and 'path'; the checkpoint is corrupt."
            )
        type_name = str(entry.get("type", ""))
        st_modules.append(
            STModule(
                kind=type_name.rsplit(".", 1)[-1],
                type=type_name,
                path=path / str(entry.get("path", "")),
            )
        )
    st_config = read_json(path / "config_sentence_transformers.json")
    sbert = read_json(path / "sentence_bert_config.json")
    colbert_in_weights = False
    st_path = path / "model.safetensors"
    if st_path.is_file():
        keys = _safetensors_keys(st_path)
        colbert_in_weights = "linear.weight" in keys
    return CheckpointInfo(
        path=path,
        config=config,
        architectures=tuple(config.get("architectures") or ()),
        disk_architectures=tuple(config.get("architectures") or ()),
        st_modules=tuple(st_modules),
        st_config=st_config if isinstance(st_config, dict) else {},
        sentence_bert_config=sbert if isinstance(sbert, dict) else {},
        colbert_linear_in_weights=colbert_in_weights,
        colbert_linear_pt=(path / "colbert_linear.pt").is_file(),
    )


def detect_score_type(info: CheckpointInfo) -> ScoreType:
    """Decide the score type from the checkpoint's files, or explain why it can't."""
    found: dict[ScoreType, str] = {}
    if info.has_classification_head:
        arch = next(
            a for a in info.architectures
            if a.endswith("ForSequenceClassification") or a in RANKING_ARCHITECTURES
        )
        found[ScoreType.CROSS_ENCODER] = f"config.json architectures has {arch}"
    elif info.is_st_cross_encoder:
        found[ScoreType.CROSS_ENCODER] = "config_sentence_transformers.json says CrossEncoder"
    if info.late_interaction_format is not None:
        found[ScoreType.LATE_INTERACTION] = {
            "bge-m3": "colbert_linear.pt (BGE-M3 ColBERT vectors)",
            "colbert-linear": "a ColBERT 'linear.weight' projection in model.safetensors",
            "st-dense": "a PyLate ColBERT modules.json with a Dense projection",
        }[info.late_interaction_format]
    elif any(a.startswith(("HF_ColBERT", "ColBERT")) for a in info.architectures):
        found[ScoreType.LATE_INTERACTION] = f"config.json architectures {list(info.architectures)}"
    if info.st_modules_of("Pooling") and not info.is_pylate:
        found[ScoreType.BI_ENCODER] = "sentence-transformers modules.json with a Pooling module"
    if len(found) == 1:
        (score_type,) = found
        return score_type
    options = ", ".join(repr(t.value) for t in ScoreType)
    if not found:
        raise ScoreTypeDetectionError(
            f"Can't tell the score type of {info.path}: no *ForSequenceClassification "
            "architecture, no sentence-transformers Pooling module and no ColBERT projection "
            f"(architectures: {list(info.architectures)}). Pass score_type= one of {options}, "
            "e.g. Scorer.load(path, score_type='bi-encoder')." + _causal_lm_hint(info)
        )
    reasons = "; ".join(f"{t.value}: {why}" for t, why in found.items())
    raise ScoreTypeDetectionError(
        f"{info.path} can serve more than one score type ({reasons}). Pass score_type= one of "
        f"{', '.join(repr(t.value) for t in found)}."
    )


def check_score_type_supported(info: CheckpointInfo, score_type: ScoreType) -> None:
    """Refuse combinations that would silently use random weights."""
    if score_type is ScoreType.CROSS_ENCODER and not (
        info.has_classification_head or info.is_st_cross_encoder
    ):
        raise UnsupportedScoreType(
            f"{info.path} has no classification head (architectures: {list(info.architectures)}), "
            "so it can't be a cross-encoder: a new head would be random. Use "
            "score_type='bi-encoder' or 'late-interaction' for an encoder checkpoint."
            + _causal_lm_hint(info)
        )


def _causal_lm_hint(info: CheckpointInfo) -> str:
    """For a decoder LLM: how it becomes a reranker (vLLM's conversion from token logits)."""
    causal = [a for a in info.architectures if a.endswith("ForCausalLM")]
    if not causal:
        return ""
    family = causal[0].removesuffix("ForCausalLM")
    return (
        f" {causal[0]} is a decoder LLM: an LLM reranker scores it from token logits via "
        "hf_overrides, e.g. hf_overrides={'architectures': "
        f"['{family}ForSequenceClassification'], "
        "'classifier_from_token': ['no', 'yes'], 'method': 'from_2_way_softmax'} "
        "(Qwen3-Reranker: add 'is_original_qwen3_reranker': True); see README 'LLM rerankers'."
    )


def model_max_length(info: CheckpointInfo, tokenizer: Any) -> tuple[int, int]:
    """(default, hard) input limits in tokens.

    hard: the position table (what the model can read at all). default: also capped by the
    tokenizer's model_max_length and sentence-transformers' max_seq_length, which a user may
    raise up to ``hard`` with ``max_length=``.
    """
    hard: int | None = None
    mpe = info.config.get("max_position_embeddings")
    if isinstance(mpe, int) and mpe > 0:
        if info.model_type in PADDING_OFFSET_FAMILIES:
            pad = info.config.get("pad_token_id", 1)
            mpe -= int(pad if isinstance(pad, int) else 1) + 1
        hard = mpe
    limits = [hard] if hard else []
    tok_max = getattr(tokenizer, "model_max_length", None)
    if isinstance(tok_max, int) and 0 < tok_max < 1_000_000:
        limits.append(tok_max)
    st_max = info.sentence_bert_config.get("max_seq_length")
    if isinstance(st_max, int) and st_max > 0:
        limits.append(st_max)
    default = min(limits) if limits else 512
    return default, hard or max(default, 512)

def position_limit(info: CheckpointInfo) -> int | None:
    """How many tokens the position table holds (vLLM's max_model_len, less the padding offset
    of the RoBERTa family, whose table starts after the padding index); None if unsaid."""
    mpe = info.config.get("max_position_embeddings")
    if not isinstance(mpe, int) or mpe <= 0:
        return None
    if info.model_type in PADDING_OFFSET_FAMILIES:
        pad = info.config.get("pad_token_id", 1)
        mpe -= int(pad if isinstance(pad, int) else 1) + 1
    return mpe


def cap_max_length(limits: tuple[int, int], user_limit: int | None) -> int:
    """The model's default limit, or the user's max_length if it fits the position table."""
    default, hard = limits
    if user_limit is None:
        return default
    if user_limit > hard:
        raise InputError(
            f"max_length={user_limit} is more than this model can read ({hard} positions)."
        )
    return user_limit
