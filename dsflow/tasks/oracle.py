"""Frozen oracles: rebuild a trained classifier from its checkpoint and check it fits the data it will score."""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["Oracle", "load_oracle", "read_oracle", "save_oracle"]


@dataclass
class Oracle:
    """A frozen classifier: ``net`` in eval mode, its ``input_shape`` (c, h, w) and ``num_classes``."""

    net: nn.Module
    input_shape: tuple[int, ...]
    num_classes: int
    path: str = ""

    def check_input(self, feature_shape: tuple[int, ...], what: str = "particles") -> None:
        """Raise ValueError unless ``feature_shape`` equals the oracle's input shape."""
        if tuple(feature_shape) != tuple(self.input_shape):
            raise ValueError(
                f"oracle {self.path}: expects inputs of shape {tuple(self.input_shape)} but {what} have shape "
                f"{tuple(feature_shape)}; set the dataset's `size`/`channels` to match"
            )

    @torch.no_grad()
    def probs(self, x: Tensor, batch_size: int = 1000) -> Tensor:
        """(n, num_classes) class probabilities of x (n, *input_shape) or flat (n, d), on the oracle's device (put
        it on the data's with :meth:`to`: scoring a flow then copies nothing to the host)."""
        x = x.reshape(x.shape[0], *self.input_shape)
        device = next(self.net.parameters()).device
        return torch.cat([torch.softmax(self.net(b.to(device)), -1) for b in x.split(batch_size)])

    def to(self, device: torch.device | str) -> "Oracle":
        """This oracle with its network on ``device`` (in place; returned for chaining)."""
        self.net.to(device)
        return self


def _net_class(class_path: str) -> type[nn.Module]:
    module, _, name = class_path.rpartition(".")
    cls = getattr(importlib.import_module(module), name, None)
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise ValueError(f"oracle checkpoint names '{class_path}', which is not an nn.Module class")
    return cls


def load_oracle(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> Oracle:
    """Load a checkpoint written by :class:`~dsflow.tasks.Classifier` (or :func:`save_oracle`) as a frozen Oracle.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: the file is not such a checkpoint, or its weights do not fit the network it names.
    """
    path = Path(path)
    spec, state = read_oracle(path, map_location)
    net = _net_class(spec["class_path"])(**spec["init_args"])
    try:
        net.load_state_dict(state)
    except RuntimeError as err:
        raise ValueError(f"oracle checkpoint {path}: weights do not fit {spec['class_path']}: {err}") from err
    net.eval().requires_grad_(False)
    return Oracle(net, tuple(spec["input_shape"]), int(spec["num_classes"]), str(path))


def read_oracle(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> tuple[dict, dict[str, Tensor]]:
    """The ``oracle`` entry (network class, arguments, input shape, class count) and the network's weights of a
    checkpoint written by :class:`~dsflow.tasks.Classifier`, read with ``weights_only=True``; builds nothing.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: the file is not such a checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"oracle checkpoint not found: {path} (train one with train.py, see README)")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises many types for unreadable files; re-raised precisely
        raise ValueError(f"oracle checkpoint {path}: not loadable with weights_only=True ({type(err).__name__}: {err})") from err
    spec = ckpt.get("oracle") if isinstance(ckpt, dict) else None
    if spec is None or "state_dict" not in ckpt:
        raise ValueError(f"oracle checkpoint {path}: no 'oracle' entry; it was not written by dsflow's Classifier")
    return spec, {k.removeprefix("net."): v for k, v in ckpt["state_dict"].items() if k.startswith("net.")}


def save_oracle(net: nn.Module, path: str | os.PathLike) -> Path:
    """Write ``net`` (a dsflow.models network) in the checkpoint layout :func:`load_oracle` reads."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model: Any = net  # its dsflow.models attributes, which nn.Module's typing reads as Tensor | Module
    ckpt = {
        "state_dict": {f"net.{k}": v for k, v in net.state_dict().items()},
        "oracle": {
            "class_path": f"{type(net).__module__}.{type(net).__qualname__}",
            "init_args": dict(model.init_args),
            "input_shape": list(model.input_shape),
            "num_classes": int(model.num_classes),
        },
    }
    torch.save(ckpt, path)
    return path
