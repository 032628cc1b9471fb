"""Features of a frozen, reference-trained classifier, and feature maps side by side.

* :class:`OracleFeatures`: the activations of one layer of a frozen classifier checkpoint (by default the
  penultimate ones, the input of its last linear layer), e.g. the Table 1 LeNet-5 trained on MNIST. The network was
  trained on the reference's labels only; it never sees a target label, and its weights are not changed.
* :class:`Concat`: several feature maps of the same images side by side, each scaled to unit root-mean-square
  norm first (a map of many dimensions or large values would otherwise dominate the distances).
"""

from __future__ import annotations

import os

import torch
from torch import Tensor, nn

from dsflow.data.pseudo.features import ClusterFeatures

__all__ = ["OracleFeatures", "Concat"]


def _module(net: nn.Module, layer: str | None, who: str) -> nn.Module:
    """The named submodule ``layer`` of ``net``, or (None) its last ``nn.Linear``."""
    modules = dict(net.named_modules())
    if layer is None:
        linear = [m for m in modules.values() if isinstance(m, nn.Linear)]
        if not linear:
            raise ValueError(f"{who}: the network has no nn.Linear layer; name the layer to read")
        return linear[-1]
    if layer not in modules:
        raise ValueError(f"{who}: no layer '{layer}' in the network; its layers: {[k for k in modules if k]}")
    return modules[layer]


class OracleFeatures(ClusterFeatures):
    """(n, p) activations of one layer of a frozen classifier checkpoint, float64, flattened.

    Args:
        checkpoint: a checkpoint :func:`dsflow.tasks.oracle.load_oracle` reads (e.g. the Table 1 oracle's
            ``last.ckpt``); the Table 1 runner passes its own when ``checkpoint`` is left unset in a config.
        layer: the module (a name of ``net.named_modules()``, e.g. ``features`` for LeNet-5's 400 pooled conv
            features) whose output is read; None: the input of the last linear layer (the penultimate
            activations: 84 for LeNet-5).
        batch_size: images per forward pass.
    """

    def __init__(self, checkpoint: str | os.PathLike | None = None, layer: str | None = None, batch_size: int = 1000) -> None:
        if batch_size < 1:
            raise ValueError(f"OracleFeatures: batch_size must be >= 1, got {batch_size}")
        self.checkpoint, self.layer, self.batch_size = checkpoint, layer, batch_size

    def default_checkpoint(self, path: str) -> None:
        if self.checkpoint is None:
            self.checkpoint = path

    @torch.no_grad()
    def __call__(self, x: Tensor, num_clusters: int | None = None) -> Tensor:
        from dsflow.tasks.oracle import load_oracle  # the tasks package builds Lightning modules: only when used

        if self.checkpoint is None:
            raise ValueError("OracleFeatures: no checkpoint given (set `checkpoint`, or run it through the Table 1 "
                             "runner, which passes its oracle's)")
        oracle = load_oracle(self.checkpoint, map_location=x.device)  # the network where the images are
        oracle.check_input(tuple(x.shape[1:]), "the images to cluster")
        module = _module(oracle.net, self.layer, "OracleFeatures")
        seen: list[Tensor] = []
        if self.layer is None:  # the input of the last linear layer
            hook = module.register_forward_pre_hook(lambda m, args: seen.append(args[0].flatten(1)))
        else:
            hook = module.register_forward_hook(lambda m, args, out: seen.append(out.flatten(1)))
        try:
            for batch in x.float().split(self.batch_size):
                oracle.net(batch)
        finally:
            hook.remove()
        if len(seen) != -(-x.shape[0] // self.batch_size):
            raise RuntimeError(f"OracleFeatures: layer '{self.layer}' ran {len(seen)} times for "
                               f"{-(-x.shape[0] // self.batch_size)} batches (a module reused in the forward pass?)")
        return torch.cat(seen).double()  # (n, p)


class Concat(ClusterFeatures):
    """The maps' features side by side, (n, sum p_i), each block scaled to unit mean squared row norm and weighted.

    Args:
        parts: the feature maps (each applied to the same input).
        weights: a factor per block after scaling (default: all 1; the block's share of squared distances).
    """

    def __init__(self, parts: list[ClusterFeatures], weights: list[float] | None = None) -> None:
        if not parts:
            raise ValueError("Concat: parts must hold at least one feature map")
        if weights is not None and (len(weights) != len(parts) or min(weights) < 0):
            raise ValueError(f"Concat: need one weight >= 0 per part ({len(parts)}), got {weights}")
        self.parts, self.weights = list(parts), list(weights) if weights is not None else [1.0] * len(parts)

    def default_checkpoint(self, path: str) -> None:
        for part in self.parts:
            part.default_checkpoint(path)

    def __call__(self, x: Tensor, num_clusters: int | None = None) -> Tensor:
        blocks = []
        for part, w in zip(self.parts, self.weights):
            z = part(x, num_clusters)
            z = z.reshape(z.shape[0], -1).double()
            z = z - z.mean(0)
            blocks.append(w * z / z.pow(2).sum(1).mean().sqrt().clamp_min(1e-12))
        return torch.cat(blocks, 1)  # (n, sum p_i)
