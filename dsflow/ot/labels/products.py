"""One inner-product GEMM per pair of point clouds and step, shared by the label tables and the outer cost.

A flow step in fd-fl needs x y^T twice: the Gaussian label tables take the class blocks of the centred Gram
(the Bures cross terms, :mod:`dsflow.ot.labels.bures`) and the outer Sinkhorn its ground cost |x|^2 + |y|^2 - 2 x y^T
(:mod:`dsflow.ot.solvers.blocks`); the same holds for x x^T (the tables ss and the self problem). The step's
:class:`SharedProducts` carries the products from one user to the other as explicit data: the tables put each
product into it (:meth:`SharedProducts.gram`), it travels with the tables in
:class:`~dsflow.ot.costs.LabelCosts`, and the solver takes the products out (:meth:`SharedProducts.take`), so
the second user skips the GEMM (at 784-d, classes of 200: about a quarter of a step's matrix-product arithmetic).

The bundle is made by the solver that will take the products
(:meth:`~dsflow.ot.OuterSolver.shared_products`), with that solver's own size limit: products
larger than the costs it stores are not shared, and the tables then use their own per-class products.

Products are taken after shifting both clouds by a common centre c (the mean of y): distances and centred
products are unchanged, and float32 loses less to cancellation than with raw pixel-scale coordinates.
Everything here runs without autograd.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

__all__ = ["Gram", "SharedProducts", "inner_products"]


class Gram(NamedTuple):
    """(n, m) product (x - c)(y - c)^T and the (d,) centre c it was taken about."""

    prod: Tensor
    centre: Tensor


@torch.no_grad()
def inner_products(x: Tensor, y: Tensor) -> Gram:
    """The product of x (n, d) and y (m, d) about the mean of y (x x^T when y is x)."""
    centre = y.mean(0)
    xc = x - centre
    prod = xc @ xc.T if x is y else xc @ (y - centre).T  # (n, m)
    return Gram(prod, centre)


def _key(x: Tensor, y: Tensor) -> tuple[object, ...]:
    return tuple((t.data_ptr(), t._version, tuple(t.shape), t.stride(), t.dtype, t.device) for t in (x, y))


class SharedProducts:
    """The inner products of one flow step, from the label tables that compute them to the solver that reuses them.

    Each entry holds a reference to its inputs (so that their storage cannot be reused while it lives) and their
    version counters (an in-place update such as an optimizer step invalidates it).

    Args:
        limit: largest n m of a product that is shared (the solver's limit on the costs it stores).
        max_entries: products kept at once (x y^T and x x^T of one step); older ones are dropped.
    """

    def __init__(self, limit: int, max_entries: int = 2) -> None:
        if limit < 0 or max_entries < 1:
            raise ValueError(f"SharedProducts: need limit >= 0 and max_entries >= 1, got {limit}, {max_entries}")
        self.limit, self.max_entries = limit, max_entries
        self._entries: list[tuple[tuple[object, ...], tuple[Tensor, Tensor], Gram]] = []

    def __len__(self) -> int:
        return len(self._entries)

    def admits(self, n: int, m: int) -> bool:
        """Whether an (n, m) product is shared (else its users compute what they need themselves)."""
        return n * m <= self.limit

    def _find(self, x: Tensor, y: Tensor) -> int | None:
        key = _key(x, y)
        for i, (k, _, _) in enumerate(self._entries):
            if k == key:
                return i
        return None

    def gram(self, x: Tensor, y: Tensor) -> Gram:
        """The product of x (n, d) and y (m, d) (:func:`inner_products`), computed once until taken or dropped."""
        i = self._find(x, y)
        if i is not None:
            return self._entries[i][2]
        gram = inner_products(x, y)
        self._entries.append((_key(x, y), (x, y), gram))
        del self._entries[:-self.max_entries]
        return gram

    def take(self, x: Tensor, y: Tensor) -> Gram | None:
        """The product of (x, y), removed from the bundle (the caller may overwrite it), or None."""
        i = self._find(x, y)
        return None if i is None else self._entries.pop(i)[2]

    def clear(self) -> None:
        """Drop every product (their memory is released once no table holds them)."""
        self._entries.clear()
