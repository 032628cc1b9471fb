"""One inner-product GEMM per pair of point clouds and step, shared by the label tables and the outer cost.

A flow step in fd-fl needs x y^T twice: the Gaussian label tables take the class blocks of the centred Gram
(the Bures cross terms, :mod:`dsflow.ot.bures`) and the outer Sinkhorn its ground cost |x|^2 + |y|^2 - 2 x y^T
(:mod:`dsflow.ot.blocks`); the same holds for x x^T (the tables ss and the self problem). :func:`shared_gram`
computes the product once and keeps it until :func:`take_gram` hands it over, so the second user skips the GEMM
(at 784-d, classes of 200: about a quarter of a step's matrix-product arithmetic).

Products are taken after shifting both clouds by a common centre c (the mean of y): distances and centred
products are unchanged, and float32 loses less to cancellation than with raw pixel-scale coordinates.

The memo holds at most :data:`MAX_ENTRIES` products, each with a reference to its inputs (so that their storage
cannot be reused while the entry lives) and their version counters (an in-place update such as an optimizer step
invalidates it). Everything here runs without autograd.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

__all__ = ["Gram", "shared_gram", "take_gram", "clear_grams", "GRAM_LIMIT", "MAX_ENTRIES"]

MAX_ENTRIES = 2  # x y^T and x x^T of one step
#: largest n m for which the label tables take a shared product (WarmSinkhorn's default dense_limit: above it
#: the outer cost is rebuilt in blocks, and the tables use their own per-class products)
GRAM_LIMIT = 60_000_000


class Gram(NamedTuple):
    """(n, m) product (x - c)(y - c)^T and the (d,) centre c it was taken about."""

    prod: Tensor
    centre: Tensor


_memo: list[tuple[tuple, tuple[Tensor, Tensor], Gram]] = []


def _key(x: Tensor, y: Tensor) -> tuple:
    return tuple((t.data_ptr(), t._version, tuple(t.shape), t.stride(), t.dtype, t.device) for t in (x, y))


def _find(x: Tensor, y: Tensor) -> int | None:
    key = _key(x, y)
    for i, (k, _, _) in enumerate(_memo):
        if k == key:
            return i
    return None


@torch.no_grad()
def shared_gram(x: Tensor, y: Tensor) -> Gram:
    """The product of x (n, d) and y (m, d) about the mean of y, computed once until taken or evicted."""
    i = _find(x, y)
    if i is not None:
        return _memo[i][2]
    centre = y.mean(0)
    xc = x - centre
    prod = xc @ xc.T if x is y else xc @ (y - centre).T  # (n, m)
    gram = Gram(prod, centre)
    _memo.append((_key(x, y), (x, y), gram))
    del _memo[:-MAX_ENTRIES]
    return gram


def take_gram(x: Tensor, y: Tensor) -> Gram | None:
    """The memoised product of (x, y), removed from the memo (the caller may overwrite it), or None."""
    i = _find(x, y)
    return None if i is None else _memo.pop(i)[2]


def clear_grams() -> None:
    """Drop every memoised product."""
    _memo.clear()
