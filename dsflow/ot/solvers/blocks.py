"""Sinkhorn sweeps over the OTDD ground cost, one block of rows at a time (linear memory when not stored).

Notation: x (n, d) and y (m, d) points with label rows ia (n,) and ib (m,) into a label table T (La, Lb);
the ground cost is

.. math::
    C_{ij} = \\lambda_x |x_i - y_j|^2 + \\lambda_y T[ia_i, ib_j].

Log-domain Sinkhorn only needs soft-minima of C against a potential,
softmin_j(h_j - C_ij) = -eps log sum_j exp(h_j - C_ij / eps) with h_j = log b_j + g_j / eps, a row reduction
complete within each block of rows, and a column reduction accumulated across blocks with a running logsumexp.
So :class:`GroundCost` either stores C (dense, fastest for moderate n m) or rebuilds each (B, m) block from one
GEMM (|x|^2 + |y|^2 - 2 x y^T, the label term folded in as extra columns: table rows on one side, one-hot
labels on the other), and C is never held whole (the KeOps-style path).

Every function here runs without autograd: the solver forms gradients itself from the converged potentials.
"""

from __future__ import annotations

from typing import Iterator, NamedTuple

import torch
from torch import Tensor

from dsflow.ot.costs import OTDDSettings
from dsflow.ot.labels.products import Gram

__all__ = ["GroundCost", "Extrapolation", "Wanted", "ground_cost", "sweep_cross", "sweep_self", "extrapolate"]


def one_hot(index: Tensor, classes: int, dtype: torch.dtype) -> Tensor:
    """(m, classes) one-hot rows of index (m,); unlike torch.nn.functional.one_hot, no range check (a host
    synchronisation on a GPU): the label rows were validated when the tables were built."""
    return torch.zeros(index.shape[0], classes, dtype=dtype, device=index.device).scatter_(1, index[:, None], 1.0)


class GroundCost:
    """The (n, m) OTDD ground cost between x and y, stored or rebuilt block by block.

    Args:
        x: (n, d) row points; y: (m, d) column points.
        ia: (n,) label rows of x; ib: (m,) label columns of y, into ``table`` (La, Lb).
        lambda_x, lambda_y: weights of the feature and label costs.
        block_rows: rows per block; every block covers all m columns.
        store: keep the whole (n, m) matrix (computed once) instead of rebuilding blocks at each sweep.
        gram: the product (x - c)(y - c)^T the label tables already computed this step
            (:class:`~dsflow.ot.labels.products.SharedProducts`); a stored cost is then made from it, in place.
    """

    def __init__(
        self, x: Tensor, y: Tensor, ia: Tensor, ib: Tensor, table: Tensor,
        lambda_x: float, lambda_y: float, block_rows: int, store: bool, gram: Gram | None = None,
    ) -> None:
        self.x, self.y, self.ia, self.ib, self.table = x, y, ia, ib, table
        self.lambda_x, self.lambda_y = lambda_x, lambda_y
        self.sq_x = x.pow(2).sum(1)  # (n,)
        self.sq_y = y.pow(2).sum(1)  # (m,)
        self.n, self.m = x.shape[0], y.shape[0]
        self.block_rows = self.n if store else max(1, min(block_rows, self.n))
        # The label term rides along in the GEMM (no (B, m) gather): with X = [x, -k T[ia]] and Y = [y, onehot(ib)],
        # X Y^T = x y^T - k T[ia, ib], so lambda_x (|x|^2 + |y|^2 - 2 X Y^T) = C for k = lambda_y / (2 lambda_x).
        self._aug = bool(lambda_y) and lambda_x > 0
        self._scratch: Tensor | None = None
        if gram is not None and store and lambda_x > 0:  # x y^T already taken for the label tables this step
            self.full: Tensor | None = self._from_gram(gram)
            return
        if self._aug:
            k = lambda_y / (2.0 * lambda_x)
            self._xa = torch.cat([x, table[ia].to(x.dtype) * -k], 1)  # (n, d + Lb)
            self._ya = torch.cat([y, one_hot(ib, table.shape[1], y.dtype)], 1)  # (m, d + Lb)
        self.full = self._compute(0, self.n) if store else None

    def _from_gram(self, gram: Gram) -> Tensor:
        """(n, m) C from a shared product (x - c)(y - c)^T, overwritten in place; the label term is the rank-Lb
        product onehot(ia) T onehot(ib)^T (no (n, m) gather)."""
        sq_x = (self.x - gram.centre).pow(2).sum(1)  # (n,)
        sq_y = (self.y - gram.centre).pow(2).sum(1)  # (m,)
        c = gram.prod.mul_(-2.0).add_(sq_y[None, :]).add_(sq_x[:, None]).clamp_min_(0).mul_(self.lambda_x)
        if self.lambda_y:
            rows = self.table[self.ia].to(c.dtype)  # (n, Lb)
            cols = one_hot(self.ib, self.table.shape[1], c.dtype)  # (m, Lb)
            c.addmm_(rows, cols.T, alpha=self.lambda_y)
        return c

    def shifted(self, c: Tensor, h: Tensor, eps: float) -> Tensor:
        """(B, m) h - C / eps for a block c and h (m,) (per column) or (B, 1) (per row), written into a reused
        buffer (no allocation per sweep)."""
        if self._scratch is None:
            self._scratch = c.new_empty(self.block_rows, c.shape[1])
        h = h[None, :] if h.ndim == 1 else h
        return torch.sub(h, c, alpha=1.0 / eps, out=self._scratch[: c.shape[0]])

    def _compute(self, start: int, stop: int) -> Tensor:
        if self._aug:  # one GEMM gives the feature and the label terms
            c = torch.addmm(self.sq_y[None, :], self._xa[start:stop], self._ya.T, alpha=-2.0)  # (B, m)
            return c.add_(self.sq_x[start:stop, None]).clamp_min_(0).mul_(self.lambda_x)
        c = torch.addmm(self.sq_y[None, :], self.x[start:stop], self.y.T, alpha=-2.0)  # (B, m) |y|^2 - 2 x y^T
        c.add_(self.sq_x[start:stop, None]).clamp_min_(0).mul_(self.lambda_x)
        if self.lambda_y:
            c.add_(self.table[self.ia[start:stop]][:, self.ib], alpha=self.lambda_y)  # (B, m) label look-up
        return c

    def blocks(self) -> Iterator[tuple[int, int, Tensor]]:
        """Yield (start, stop, C[start:stop]) covering all rows."""
        for start in range(0, self.n, self.block_rows):
            stop = min(start + self.block_rows, self.n)
            yield start, stop, (self.full[start:stop] if self.full is not None else self._compute(start, stop))


def ground_cost(
    x: Tensor, y: Tensor, ia: Tensor, ib: Tensor, table: Tensor, settings: OTDDSettings, block_entries: int,
    store: bool, gram: Gram | None = None,
) -> GroundCost:
    """The :class:`GroundCost` of ``settings`` between x (n, d) and y (m, d), in blocks of about
    ``block_entries`` entries when not stored."""
    rows = max(1, block_entries // max(1, y.shape[0]))
    return GroundCost(x, y, ia, ib, table, settings.lambda_x, settings.lambda_y, rows, store, gram)


_FLOOR = -87.0  # exp of anything lower is a float32 denormal: slow on CPUs, and negligible against the max


def logsumexp(z: Tensor, dim: int) -> Tensor:
    """torch.logsumexp without denormals: terms below e^-87 of the largest are flushed (z is overwritten)."""
    top = z.amax(dim, keepdim=True)
    top = torch.where(torch.isfinite(top), top, torch.zeros_like(top))
    total = z.sub_(top).clamp_min_(_FLOOR).exp_().sum(dim, keepdim=True)
    return (total.log_() + top).squeeze(dim)


def _softmin_rows(cost: GroundCost, c: Tensor, h: Tensor, eps: float) -> Tensor:
    """(B,) -eps logsumexp_j(h_j - C_ij / eps) for a (B, m) block and h (m,)."""
    return -eps * logsumexp(cost.shifted(c, h, eps), dim=1)


def sweep_cross(cost: GroundCost, a_log: Tensor, b_log: Tensor, g: Tensor, eps: float) -> tuple[Tensor, Tensor]:
    """One Sinkhorn iteration on OT(a, b): f <- softmin(C, g), then g <- softmin(C^T, f) with the new f.

    Both updates share one pass over C: rows are complete within a block, columns are accumulated.
    Returns f (n,) and g (m,).
    """
    f = g.new_empty(cost.n)
    col = g.new_full((cost.m,), float("-inf"))  # running logsumexp over rows, per column
    hg = b_log + g / eps
    for start, stop, c in cost.blocks():
        f[start:stop] = _softmin_rows(cost, c, hg, eps)
        hf = a_log[start:stop] + f[start:stop] / eps  # (B,)
        col = torch.logaddexp(col, logsumexp(cost.shifted(c, hf[:, None], eps), dim=0))
    return f, -eps * col


def sweep_self(cost: GroundCost, a_log: Tensor, p: Tensor, eps: float) -> Tensor:
    """softmin(C, p) for a symmetric problem OT(a, a) (C is (n, n)); the caller averages it with p."""
    out = p.new_empty(cost.n)
    hp = a_log + p / eps
    for start, stop, c in cost.blocks():
        out[start:stop] = _softmin_rows(cost, c, hp, eps)
    return out


class Wanted(NamedTuple):
    """Which envelope gradients an extrapolation forms (:class:`Extrapolation`).

    Attributes:
        grad: the gradient in the row points x (n, d).
        table_grad: the gradient in the label table (La, Lb).
    """

    grad: bool = False
    table_grad: bool = False


class Extrapolation(NamedTuple):
    """The last, gradient-giving soft-min of a problem (envelope theorem).

    Attributes:
        row: (n,) softmin(C, h) for the rows (the extrapolated row potential).
        col: (m,) softmin(C^T, h_rows) for the columns, or None when not asked for.
        grad: (n, d) sum_j pi_ij d C_ij / d x_i with pi_ij = a_i P_ij, P the row-normalised plan, or None.
        table_grad: (La, Lb) sum over i, j with labels (l, l') of lambda_y pi_ij, or None.
    """

    row: Tensor
    col: Tensor | None
    grad: Tensor | None
    table_grad: Tensor | None


def extrapolate(
    cost: GroundCost, a_log: Tensor, h_cols: Tensor, eps: float, h_rows: Tensor | None = None,
    want: Wanted = Wanted(),
) -> Extrapolation:
    """Row soft-min against h_cols (m,) (and column soft-min against h_rows (n,)), with the envelope gradients
    ``want`` asks for.

    For f_i = softmin_j(h_j - C_ij / eps): d f_i / d C_ij = P_ij = softmax_j(h_j - C_ij / eps), and
    d C_ij / d x_i = 2 lambda_x (x_i - y_j), so d <a, f> / d x_i = 2 lambda_x a_i (x_i - sum_j P_ij y_j).
    """
    a = a_log.exp()
    row = h_cols.new_empty(cost.n)
    col = None if h_rows is None else h_cols.new_full((cost.m,), float("-inf"))
    grad = torch.zeros_like(cost.x) if want.grad else None
    table_grad = torch.zeros_like(cost.table) if want.table_grad else None
    for start, stop, c in cost.blocks():
        logits = torch.sub(h_cols[None, :], c, alpha=1.0 / eps)  # (B, m)
        lse = logsumexp(logits.clone(), dim=1)  # (B,)
        row[start:stop] = -eps * lse
        if col is not None and h_rows is not None:  # col exists exactly when h_rows was given
            col = torch.logaddexp(col, logsumexp(cost.shifted(c, h_rows[start:stop, None], eps), dim=0))
        if grad is None and table_grad is None:
            continue
        plan = logits.sub_(lse[:, None]).clamp_min_(_FLOOR).exp_().mul_(a[start:stop, None])  # (B, m) a_i P_ij
        if grad is not None:
            grad[start:stop] = 2 * cost.lambda_x * (plan.sum(1, keepdim=True) * cost.x[start:stop] - plan @ cost.y)
        if table_grad is not None:
            by_col = plan.new_zeros(stop - start, cost.table.shape[1]).index_add_(1, cost.ib, plan)  # (B, Lb)
            table_grad.index_add_(0, cost.ia[start:stop], by_col, alpha=cost.lambda_y)
    return Extrapolation(row, None if col is None else -eps * col, grad, table_grad)
