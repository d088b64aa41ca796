"""What the multimodal rerankers (Qwen3-VL, jina-reranker-m0) share: images through the runner.

A pair with images becomes one prompt as vLLM builds it (``parse_score_data``): each side's
text parts joined with "\\n", one ``<|vision_start|><|image_pad|><|vision_end|>`` per image in
front of them, then the score template over both sides. The processor's expansion follows: each
``<|image_pad|>`` becomes one token per merged patch group (grid t·h·w / merge²).

The runner moves token ids only, so an image rides in its ids: its expanded tokens are written
as ``MEDIA_BASE + slot``, where slot indexes the call's :class:`MediaTable` (the processed
pixels and grid of each image). ``forward`` turns the markers back into the image token and
hands the pixels of the batch's images, in prompt order, to the model. Batches, plans and
progress stay the runner's; an image is loaded and processed once per call.
"""

from __future__ import annotations

import inspect
import re
from abc import abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import torch

from ..calls import ScoreCall
from ..errors import InputError, InputTooLongError, TemplateError
from ..media import (
    IMAGE_PLACEHOLDER,
    ImagePart,
    MediaError,
    MediaPolicy,
    ScoreContent,
    load_image,
)
from ..types import ScoreResult, ScoreType
from .base import LocalBackend, score_results
from .batching import pad
from .pooling import pool
from .runner import Coverage, Prepared, ProgressFn, Stages
from .tokenizing import truncate_text_to_tokens

__all__ = [
    "MEDIA_BASE", "MediaTable", "SideText", "expand_images", "gather_images", "public_ids",
    "VisionRerankerBackend", "render_with_images", "side_text",
]

# Marker ids start here: far above any vocabulary, still an int64.
MEDIA_BASE = 1 << 40
_SENTINEL = re.compile("\ue000([qd])(\\d+)\ue001")


@dataclass(frozen=True)
class SideText:
    """One side of a pair as text: the joined text parts, and its images in order."""

    text: str
    images: tuple[ImagePart, ...]


def side_text(item: object, *, where: str) -> SideText:
    """A query or document (str or ScoreContent) as its text and images."""
    if isinstance(item, str):
        return SideText(item, ())
    if isinstance(item, ScoreContent):
        return SideText("\n".join(item.texts), item.images)
    raise InputError(f"{where} is {type(item).__name__}; expected a string or a content input.")


def render_with_images(
    render: Callable[[str, str], str], query: SideText, document: SideText
) -> tuple[str, list[tuple[str, int]]]:
    """The pair's prompt, placeholders in place, and which image each placeholder is.

    Each side's images go in front of its text (vLLM), and the template places both sides; so
    the images' order in the prompt is read off the render (a template may put the document
    first), through private-use sentinels that are then replaced by the placeholder.
    """
    def tagged(side: str, part: SideText) -> str:
        return "".join(f"\ue000{side}{k}\ue001" for k in range(len(part.images))) + part.text

    rendered = render(tagged("q", query), tagged("d", document))
    order = [(m.group(1), int(m.group(2))) for m in _SENTINEL.finditer(rendered)]
    expected = [("q", k) for k in range(len(query.images))]
    expected += [("d", k) for k in range(len(document.images))]
    if sorted(order) != sorted(expected):
        raise TemplateError(
            "The score template dropped or repeated an image of the pair (it must write each "
            "side's content exactly once); use the model's bundled template."
        )
    return _SENTINEL.sub(IMAGE_PLACEHOLDER, rendered), order


class MediaTable:
    """The images of one call: processed once each, addressed by slot."""

    def __init__(self, *, processor: Any, policy: MediaPolicy, merge_size: int) -> None:
        self.processor = processor
        self.policy = policy
        self.merge = merge_size
        self.pixels: list[torch.Tensor] = []  # [patches, C·T·P·P] per slot
        self.grids: list[torch.Tensor] = []  # [3] (t, h, w) per slot
        self._memo: dict[tuple[str, int, int], int] = {}

    def slot(self, key: tuple[str, int, int], part: ImagePart, *, where: str) -> int:
        """The slot of image ``key`` = (side, item index, image index), loading it first."""
        known = self._memo.get(key)
        if known is not None:
            return known
        image = load_image(part.url, policy=self.policy, where=where)
        try:
            out = self.processor(images=[image], return_tensors="pt")
        except Exception as exc:  # a degenerate image (0 or 1 pixel wide) the resizer refuses
            raise MediaError(f"{where}: the image processor refused it ({exc}).") from None
        self.pixels.append(out["pixel_values"])
        self.grids.append(out["image_grid_thw"][0])
        self._memo[key] = len(self.pixels) - 1
        return len(self.pixels) - 1

    def tokens(self, slot: int) -> int:
        """How many prompt tokens the image takes (merged patch groups)."""
        return int(self.grids[slot].prod()) // (self.merge * self.merge)


def expand_images(
    ids: list[int], image_token_id: int, slots: Sequence[int], table: MediaTable, *, where: str
) -> list[int]:
    """Replace the k-th ``<|image_pad|>`` of ``ids`` by its image's tokens, as markers."""
    positions = [i for i, t in enumerate(ids) if t == image_token_id]
    if len(positions) != len(slots):
        raise InputError(
            f"{where}: the prompt has {len(positions)} image placeholders for {len(slots)} "
            "images; the text must not contain <|image_pad|> itself."
        )
    out: list[int] = []
    start = 0
    for pos, slot in zip(positions, slots, strict=True):
        out.extend(ids[start:pos])
        out.extend([MEDIA_BASE + slot] * table.tokens(slot))
        start = pos + 1
    out.extend(ids[start:])
    return out


def gather_images(
    input_ids: torch.Tensor, image_token_id: int, table: MediaTable
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None, torch.Tensor]:
    """A padded batch [B, L] with markers → (ids, pixel_values, grid_thw [N, 3], mm types [B, L]).

    Images come in prompt order, row by row: the order the model scatters their features in.
    """
    markers = input_ids >= MEDIA_BASE  # [B, L]
    ids = input_ids.masked_fill(markers, image_token_id)  # [B, L]
    mm_types = markers.to(torch.int32)  # [B, L]: 1 at image tokens (vLLM's M-RoPE input)
    slots: list[int] = []
    for row in (input_ids[markers.any(dim=1)] - MEDIA_BASE).tolist():
        previous = None
        for value in row:
            if value >= 0 and value != previous:
                slots.append(value)
            previous = value
    if not slots:
        return ids, None, None, mm_types
    pixels = torch.cat([table.pixels[s] for s in slots])  # [patches, C·T·P·P]
    grid = torch.stack([table.grids[s] for s in slots])  # [N, 3]
    return ids, pixels, grid, mm_types


def public_ids(coverage: Coverage, image_token_id: int) -> Coverage:
    """The coverage with markers shown as the image token (vLLM's prompt_token_ids)."""
    if coverage.input_ids is None:
        return coverage
    kept = [[image_token_id if t >= MEDIA_BASE else t for t in seq] for seq in coverage.input_ids]
    return replace(coverage, input_ids=kept)


def check_image_prompt(ids: list[int], limit: int, images: int, *, where: str) -> None:
    """An image can't be cut: a prompt with images over the limit is refused."""
    if images and len(ids) > limit:
        raise InputTooLongError(
            f"{where} is {len(ids)} tokens with its {images} image(s), over the limit of "
            f"{limit}; image tokens can't be cut. Use smaller images, shorter text or a larger "
            "max_length."
        )


class VisionRerankerBackend(LocalBackend):
    """A multimodal cross-encoder on the runner: text-and-image pairs → one prompt → a score.

    A subclass loads its model and sets ``model`` (ids, pixels, grid → last_hidden_state),
    ``tokenizer``, ``processor``, ``image_token_id``, ``pad_id`` and ``limit``, and supplies
    :meth:`render` (the pair's prompt), :meth:`head` and, optionally, :meth:`finish` (tokens
    appended after the prompt) and :meth:`prepare_text` (pairs without images).
    """

    score_type = ScoreType.CROSS_ENCODER
    accepts_media: ClassVar[bool] = True
    # One relevance score per pair (the yes/no logit difference, or jina's score head): vLLM's
    # Score API serves them as num_labels == 1.
    _num_labels: ClassVar[int] = 1
    model: torch.nn.Module
    tokenizer: Any
    processor: Any
    image_token_id: int
    pad_id: int
    limit: int

    # -- what a subclass supplies ----------------------------------------------------------------
    @abstractmethod
    def render(self, query: str, document: str, call: ScoreCall) -> str:
        """The pair's prompt text (placeholders already inside query/document)."""

    @abstractmethod
    def head(self, pooled: torch.Tensor, use_activation: bool) -> torch.Tensor:
        """Pooled states [B, H] → one float32 score per pair [B]."""

    def finish(self, ids: list[int]) -> list[int]:
        """Tokens the model reads after the prompt (jina-reranker-m0's score token)."""
        return ids

    def prepare_text(self, call: ScoreCall, items: list[int]) -> Prepared | None:
        """Pairs without images by the backend's text rules; None: the generic path below."""
        return None

    @property
    def max_length(self) -> int:
        return self.limit

    @property
    def min_length(self) -> int:
        return len(self.finish([])) + 1

    def modules(self) -> list[torch.nn.Module]:
        return [self.model]

    def media_policy(self) -> MediaPolicy:
        return self.config.media_policy()

    # -- the call --------------------------------------------------------------------------------
    def score_pairs(
        self, call: ScoreCall, *, progress: ProgressFn | None = None
    ) -> list[ScoreResult]:
        table = MediaTable(processor=self.processor, policy=self.media_policy(),
                           merge_size=int(getattr(self.processor, "merge_size", 2)))
        stages: Stages[torch.Tensor] = Stages(
            prepare=lambda items: self._prepare(call, items, table),
            forward=lambda ids, _types, _packed: self.forward(ids, table),
            head=lambda pooled, _: self.head(pooled, call.activation),
        )
        keep = call.vllm is not None and call.vllm.keep_token_ids
        scores, coverage = self.runner.scores(
            len(call.documents), stages, progress=progress, keep_ids=keep
        )
        return score_results(scores, public_ids(coverage, self.image_token_id))

    def _prepare(self, call: ScoreCall, items: list[int], table: MediaTable) -> Prepared:
        queries = [side_text(q, where=f"query {i}") for i, q in enumerate(call.queries)]
        docs = {i: side_text(call.documents[i], where=f"document {i}") for i in items}
        plain = [i for i in items if not queries[call.query_index[i]].images and not docs[i].images]
        ids: dict[int, list[int]] = {}
        cut: dict[int, bool] = {}
        text = self.prepare_text(call, plain) if plain else None
        if text is not None:
            for k, i in enumerate(plain):
                ids[i], cut[i] = text.input_ids[k], text.truncated[k]
        for i in items:
            if i not in ids:
                ids[i], cut[i] = self._pair(call, i, queries[call.query_index[i]], docs[i], table)
        return Prepared(input_ids=[ids[i] for i in items], token_type_ids=None,
                        truncated=[cut[i] for i in items])

    def _caps(self, call: ScoreCall) -> tuple[int | None, int | None]:
        if call.vllm is not None:
            return call.vllm.max_tokens_per_query or None, call.vllm.max_tokens_per_doc or None
        return self.config.max_tokens_per_query, self.config.max_tokens_per_doc

    def _encode(
        self, call: ScoreCall, query: SideText, document: SideText
    ) -> tuple[list[int], list[tuple[str, int]]]:
        """The pair's prompt ids (one <|image_pad|> per image) and which image each one is."""
        prompt, order = render_with_images(
            lambda q, d: self.render(q, d, call), query, document
        )
        ids = self.tokenizer(prompt, add_special_tokens=True, verbose=False)["input_ids"]
        return list(ids), order

    def _pair(self, call: ScoreCall, i: int, query: SideText, document: SideText,
              table: MediaTable) -> tuple[list[int], bool]:
        """One pair by the generic rules: caps on the text, images expanded, fitted to the limit."""
        cap_q, cap_d = self._caps(call)
        cut = False
        if cap_q is not None:
            q_text, c = truncate_text_to_tokens(self.tokenizer, query.text, cap_q)
            query, cut = SideText(q_text, query.images), cut or c
        if cap_d is not None:
            d_text, c = truncate_text_to_tokens(self.tokenizer, document.text, cap_d)
            document, cut = SideText(d_text, document.images), cut or c
        ids, order = self._encode(call, query, document)
        qi = call.query_index[i]
        slots = [
            table.slot(
                (side, qi if side == "q" else i, k),
                (query if side == "q" else document).images[k],
                where=f"{'query' if side == 'q' else 'document'} {qi if side == 'q' else i}, "
                f"image {k}",
            )
            for side, k in order
        ]
        ids = expand_images(ids, self.image_token_id, slots, table, where=f"pair {i}")
        extra = len(self.finish([]))
        truncate = call.vllm.truncate if call.vllm is not None else call.truncate_prompt_tokens
        limit = (call.vllm.max_model_len if call.vllm is not None else self.limit) - extra
        if truncate is not None:
            limit = min(limit, truncate - extra)
        if len(ids) > limit:
            check_image_prompt(ids, limit, len(slots), where=f"pair {i}")
            if truncate is None and (call.vllm is not None or self.config.overflow == "error"):
                raise InputTooLongError(
                    f"pair {i} is {len(ids) + extra} tokens, over the limit of {limit + extra}. "
                    "Shorten it, pass truncate_prompt_tokens, or load with max_tokens_per_doc=."
                )
            ids = ids[:limit] if truncate is not None else self._fit(call, query, document, limit)
            cut = True
        return self.finish(ids), cut

    def _fit(self, call: ScoreCall, query: SideText, document: SideText, limit: int) -> list[int]:
        """A text-only prompt cut to ``limit`` by shortening the document text, then the query."""
        sides = {"q": query, "d": document}
        ids = self._encode(call, query, document)[0]
        for side in ("d", "q"):
            original = sides[side].text
            n = len(self.tokenizer(original, add_special_tokens=False, verbose=False)["input_ids"])
            while len(ids) > limit and n > 0:
                n = max(0, n - (len(ids) - limit))
                sides[side] = SideText(truncate_text_to_tokens(self.tokenizer, original, n)[0], ())
                ids = self._encode(call, sides["q"], sides["d"])[0]
            if len(ids) <= limit:
                return list(ids)
        raise InputTooLongError(
            f"The prompt alone is {len(ids)} tokens with an empty query and document, over the "
            f"limit of {limit}. Raise max_length."
        )

    # -- forward ---------------------------------------------------------------------------------
    def forward(self, ids: list[list[int]], table: MediaTable) -> torch.Tensor:
        """Pooled float32 states at each pair's last real token [B, H]."""
        input_ids, mask = pad(ids, pad_id=self.pad_id, side="right")  # [B, L], [B, L]
        real, pixels, grid, mm_types = gather_images(input_ids, self.image_token_id, table)
        kwargs: dict[str, Any] = {
            "input_ids": real.to(self.device), "attention_mask": mask.to(self.device),
            "use_cache": False,
        }
        if pixels is not None and grid is not None:
            kwargs["pixel_values"] = pixels.to(self.device, self.dtype)
            kwargs["image_grid_thw"] = grid.to(self.device)
            # transformers >= 5 computes M-RoPE positions from the image-token map
            if _takes(getattr(self.model, "backbone", self.model), "mm_token_type_ids"):
                kwargs["mm_token_type_ids"] = mm_types.to(self.device)
        with torch.inference_mode():
            hidden = self.model(**kwargs).last_hidden_state  # [B, L, H]
            return pool(hidden.float(), mask.to(self.device), "lasttoken")  # [B, H]


def _takes(model: torch.nn.Module, name: str) -> bool:
    return name in inspect.signature(model.forward).parameters
