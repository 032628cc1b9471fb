"""Joint-driven label dynamics: label Gaussians stepped by their own gradients (paper section 6.1, Alg. 2-3).

* :class:`JointDrivenFixed` (jd-fl): one Gaussian N(mu_c, cov_c) per class; labels fixed.
* :class:`JointDrivenVariable` (jd-vl): one Gaussian N(mu_i, diag(sd_i^2)) per particle; discrete labels are
  recovered by clustering the (mu_i, sd_i) every ``cluster_every`` steps, so the number of classes may change.

Parametrisations (SPD by construction, not by hope): jd-fl stores a lower-triangular factor L_c and uses
cov_c = L_c L_c^T + eps I; jd-vl stores log sd_i. The optimizer steps these parameters (so plain SGD is a forward
Euler step on (mu, L) or (mu, log sd), not on cov itself).

Step scaling (eq. 17 extended): F is a mean over particles, so its gradient in a label parameter shared by m
particles is O(m / n). :meth:`scale_grads` multiplies it by n / m, the inverse of the parameter's mass, exactly as
the features' gradient is multiplied by n (m = 1): a label Gaussian then moves like a particle of unit mass and
the step size means the same for features and labels, whatever n and the class sizes.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from dsflow.flows.dynamics import LabelDynamics, TableInputs
from dsflow.host_reads import host_section, to_host
from dsflow.flows.label_recovery import DBSCANLabelRecovery, LabelRecovery, match_labels
from dsflow.flows.particles import Particles, Reference
from dsflow.ot.costs import LabelCosts
from dsflow.ot.distances import squared_distances
from dsflow.ot.labels.label_distance import BaseGaussianLabelDistance, LabelDistance
from dsflow.ot.labels.stats import LabelStats, check_labels, class_stats

__all__ = ["JointDrivenFixed", "JointDrivenVariable"]


def _gaussian(distance: LabelDistance, who: str) -> BaseGaussianLabelDistance:
    if not isinstance(distance, BaseGaussianLabelDistance):
        raise ValueError(f"{who}: label Gaussians need a GaussianLabelDistance or DiagonalGaussianLabelDistance, "
                         f"got {type(distance).__name__}")
    return distance


class _ParamState(LabelDynamics):
    """Creates its parameters in setup() and materialises them from a state dict when loaded into a fresh module."""

    source_stats_from_samples = False  # the label Gaussians are parameters, not sample moments
    _param_names: tuple[str, ...] = ()

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args: Any, **kwargs: Any) -> None:
        for name in self._param_names:
            value = state_dict.get(prefix + name)
            if value is not None and getattr(self, name, None) is None:
                setattr(self, name, nn.Parameter(torch.empty_like(value)))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


class JointDrivenFixed(_ParamState):
    """jd-fl (Algorithm 2): class means and covariances are parameters stepped by their own gradients.

    Args:
        eps: floor added to every covariance, cov_c = L_c L_c^T + eps I (keeps it positive definite).
    """

    _param_names = ("means", "factors")

    def __init__(self, eps: float = 1e-4) -> None:
        super().__init__()
        if eps <= 0:
            raise ValueError(f"JointDrivenFixed: eps must be positive, got {eps}")
        self.eps = eps
        self.means: nn.Parameter | None = None  # (C, d)
        self.factors: nn.Parameter | None = None  # (C, d, d), only the lower triangle is used
        self.register_buffer("counts", None)  # (C,)

    def setup(self, particles: Particles, reference: Reference) -> None:
        if particles.x is None:
            raise RuntimeError("JointDrivenFixed.setup: the particles are not initialized (init_data() first)")
        x, y, c = particles.x.detach(), particles.y, particles.num_classes
        counts = check_labels(y, c, name="JointDrivenFixed labels", min_count=1)
        stats = class_stats(x, y, c, keep_covs=True, singletons=True)  # a singleton starts at cov = eps I
        d = x.shape[1]
        eye = torch.eye(d, dtype=x.dtype, device=x.device)
        chol, info = torch.linalg.cholesky_ex(stats.full_covs() + self.eps * eye)  # (C, d, d)
        if bool((info != 0).any()):
            raise ValueError("JointDrivenFixed: a class covariance is not positive semi-definite (non-finite data?)")
        self.means = nn.Parameter(stats.means.clone())
        self.factors = nn.Parameter(chol)
        self.counts = counts.to(x.dtype)

    def covariances(self) -> Tensor:
        """(C, d, d) cov_c = L_c L_c^T + eps I, symmetric positive definite by construction."""
        if self.factors is None:
            raise RuntimeError("JointDrivenFixed: no class Gaussians yet (setup() first)")
        low = torch.tril(self.factors)
        eye = torch.eye(low.shape[-1], dtype=low.dtype, device=low.device)
        return low @ low.transpose(-1, -2) + self.eps * eye  # (C, d, d)

    def stats(self) -> LabelStats:
        """Class Gaussians as factors F_c = [L_c, sqrt(eps) I] (C, d, 2d), F_c F_c^T = cov_c.

        The factor form gives the Bures cross terms as nuclear norms (singular values, whose gradients stay finite
        when they repeat, e.g. for an isotropic class) instead of matrix square roots of the parameters.
        """
        if self.means is None or self.factors is None:
            raise RuntimeError("JointDrivenFixed: no class Gaussians yet (setup() first)")
        low = torch.tril(self.factors)
        root_eps = self.eps**0.5 * torch.eye(low.shape[-1], dtype=low.dtype, device=low.device).expand_as(low)
        return LabelStats(self.means, None, torch.cat([low, root_eps], -1), self.counts)  # factors (C, d, 2d)

    def label_costs(self, particles: Particles, reference: Reference, inputs: TableInputs) -> LabelCosts:
        gauss = _gaussian(inputs.distance, "JointDrivenFixed")
        ref_summary, rr = self._reference_summary(reference, inputs)
        src = gauss.gaussians(self.stats())
        # Bures is symmetric: taking the matrix square roots of the (constant) reference side keeps eigenvector
        # derivatives of the parameters out of the source-reference table.
        sr = gauss.table(ref_summary, src).transpose(0, 1)  # (C, C')
        return LabelCosts(particles.y, reference.y, gauss.table(src, src), sr, rr, inputs.products)

    def scale_grads(self, particles: Particles) -> None:
        inv_mass = particles.n / self.counts.clamp_min(1)  # (C,) n / n_c
        if self.means is not None and self.means.grad is not None:
            self.means.grad.mul_(inv_mass[:, None])
        if self.factors is not None and self.factors.grad is not None:
            self.factors.grad.mul_(inv_mass[:, None, None])


class JointDrivenVariable(_ParamState):
    """jd-vl (Algorithm 3): one diagonal label Gaussian per particle, labels recovered by clustering.

    At the start each particle takes its class's mean and standard deviations. The OTDD then compares particles
    through their own Gaussians (label rows = particles, Ls = n); the discrete labels (``particles.y``, used by
    energies, figures and saved outputs) are re-derived every ``cluster_every`` steps and renamed to overlap the
    previous ones.

    Args:
        clustering: how labels are recovered, a :class:`LabelRecovery` (default: DBSCAN with the paper's radius 5
            and 4 points; the radius is in W_2 units, so scale it to the data).
        cluster_every: steps between clusterings (1 = every step).
        min_std: lower bound of the initial standard deviations.
    """

    _param_names = ("means", "log_std")
    variable_labels = True

    def __init__(self, clustering: LabelRecovery | None = None, cluster_every: int = 1, min_std: float = 1e-3) -> None:
        super().__init__()
        if cluster_every < 1 or min_std <= 0:
            raise ValueError(f"JointDrivenVariable: need cluster_every >= 1 and min_std > 0, got {cluster_every}, {min_std}")
        self.clustering = clustering if clustering is not None else DBSCANLabelRecovery()
        self.cluster_every = cluster_every
        self.min_std = min_std
        self.means: nn.Parameter | None = None  # (n, d)
        self.log_std: nn.Parameter | None = None  # (n, d)
        self.steps = 0

    def get_extra_state(self) -> Any:
        return {"steps": self.steps}

    def set_extra_state(self, state: Any) -> None:
        self.steps = int(state["steps"])

    def setup(self, particles: Particles, reference: Reference) -> None:
        if particles.x is None:
            raise RuntimeError("JointDrivenVariable.setup: the particles are not initialized (init_data() first)")
        x, y, c = particles.x.detach(), particles.y, particles.num_classes
        check_labels(y, c, name="JointDrivenVariable labels", min_count=0)
        stats = class_stats(x, y, c, keep_covs=True)
        sd = torch.diagonal(stats.full_covs(), dim1=-2, dim2=-1).clamp_min(self.min_std**2).sqrt()  # (C, d)
        self.means = nn.Parameter(stats.means[y].clone())  # (n, d)
        self.log_std = nn.Parameter(sd[y].log())  # (n, d)

    def std(self) -> Tensor:
        """(n, d) per-particle standard deviations, positive by construction."""
        if self.log_std is None:
            raise RuntimeError("JointDrivenVariable: no per-particle Gaussians yet (setup() first)")
        return self.log_std.exp()

    def label_costs(self, particles: Particles, reference: Reference, inputs: TableInputs) -> LabelCosts:
        gauss = _gaussian(inputs.distance, "JointDrivenVariable")
        ref_summary, rr = self._reference_summary(reference, inputs)
        if self.means is None:
            raise RuntimeError("JointDrivenVariable: no per-particle Gaussians yet (setup() first)")
        mu, sd = self.means, self.std()
        # Diagonal Gaussians commute: W_2^2 = |mu - mu'|^2 + |sd - sd'|^2 exactly, for either distance variant.
        ss = squared_distances(mu, mu) + squared_distances(sd, sd)  # (n, n)
        sr = gauss.table_from_diagonal(mu, sd, ref_summary)  # (n, C')
        index = torch.arange(mu.shape[0], device=mu.device)
        return LabelCosts(index, reference.y, ss, sr, rr, inputs.products)

    def scale_grads(self, particles: Particles) -> None:
        for p in (self.means, self.log_std):
            if p is not None and p.grad is not None:
                p.grad.mul_(particles.n)  # each Gaussian belongs to one particle: mass 1/n

    def points(self) -> Tensor:
        """(n, 2d) the clustered points (mu_i, sd_i)."""
        if self.means is None:
            raise RuntimeError("JointDrivenVariable: no per-particle Gaussians yet (setup() first)")
        return torch.cat([self.means.detach(), self.std().detach()], 1)

    @torch.no_grad()
    def after_step(self, particles: Particles) -> None:
        self.steps += 1
        if self.steps % self.cluster_every:
            return
        points, old = to_host(self.points(), particles.y)  # sklearn and the matching run on the host
        with host_section():
            labels = match_labels(self.clustering(points), old)
            num_classes = int(labels.max()) + 1
        particles.y = labels.to(particles.y.device)
        particles.num_classes = num_classes
