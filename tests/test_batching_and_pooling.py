"""Pure pieces: batch planning, padding, pooling, cosine."""

from __future__ import annotations

import random

import pytest
import torch

from engine.local.batching import pad, plan_batches
from engine.local.pooling import pool
from engine.local.similarity import cosine


def test_plan_covers_every_index_once_within_budget() -> None:
    rng = random.Random(0)
    lengths = [rng.randint(1, 300) for _ in range(500)]
    batches = plan_batches(lengths, max_batch_size=16, max_tokens_per_batch=2048)
    flat = sorted(i for b in batches for i in b)
    assert flat == list(range(500))
    for b in batches:
        assert len(b) <= 16
        assert len(b) == 1 or len(b) * max(lengths[i] for i in b) <= 2048
    # Longest first, so padding within a batch is small.
    widths = [max(lengths[i] for i in b) for b in batches]
    assert widths == sorted(widths, reverse=True)


def test_single_sequence_over_budget_gets_its_own_batch() -> None:
    assert plan_batches([5000, 3], max_batch_size=8, max_tokens_per_batch=100) == [[0], [1]]


@pytest.mark.parametrize("side", ["right", "left"])
def test_pad(side: str) -> None:
    ids, mask = pad([[1, 2, 3], [4]], pad_id=0, side=side)
    if side == "right":
        assert ids.tolist() == [[1, 2, 3], [4, 0, 0]]
        assert mask.tolist() == [[1, 1, 1], [1, 0, 0]]
    else:
        assert ids.tolist() == [[1, 2, 3], [0, 0, 4]]
        assert mask.tolist() == [[1, 1, 1], [0, 0, 1]]


def test_pooling_modes_ignore_padding() -> None:
    hidden = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])  # [1, 3, 2]
    mask = torch.tensor([[1, 1, 0]])
    assert pool(hidden, mask, "cls").tolist() == [[1.0, 2.0]]
    assert pool(hidden, mask, "mean").tolist() == [[2.0, 3.0]]
    assert pool(hidden, mask, "max").tolist() == [[3.0, 4.0]]
    assert pool(hidden, mask, "lasttoken").tolist() == [[3.0, 4.0]]
    left = torch.tensor([[[100.0, 100.0], [1.0, 2.0], [3.0, 4.0]]])
    assert pool(left, torch.tensor([[0, 1, 1]]), "lasttoken").tolist() == [[3.0, 4.0]]
    sqrt = pool(hidden, mask, "mean_sqrt_len_tokens")
    assert torch.allclose(sqrt, torch.tensor([[4.0, 6.0]]) / 2**0.5)


def test_cosine_is_row_wise() -> None:
    a = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    b = torch.tensor([[0.0, 1.0], [2.0, 2.0]])
    assert torch.allclose(cosine(a, b), torch.tensor([0.0, 1.0]))
