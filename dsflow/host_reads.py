"""Count the host reads of a piece of torch code: the operations that make the CPU wait for the device.

On a GPU every read of a device value by the host (``.item()``, ``float(t)``, ``bool(t)``, ``.tolist()``, a copy
to the CPU, and operations whose output size depends on the data: ``nonzero``, boolean-mask indexing,
``unique``, ``masked_select``) drains the queue of launched kernels and stalls the device until the host has
the value. A solver that reads a convergence number every few sweeps is launch-bound on a GPU however fast its
kernels are.

:class:`HostReads` counts these reads *on any device*, so that a CPU test can guard the GPU path: it intercepts
every aten operation (a ``TorchDispatchMode``) and the Python methods that read tensor memory directly on the
CPU (``tolist``, ``numpy``, ``__array__``), and records where each read came from. On CUDA it also turns on
``torch.cuda.set_sync_debug_mode("warn")`` and counts the synchronisations CUDA itself reports (reads hidden
inside library kernels, e.g. an eigensolver's error check), as ``cuda_syncs``.

    with HostReads() as reads:
        loss = objective(x); loss.backward()
    assert reads.count <= 10, reads.summary()
"""

from __future__ import annotations

import collections
import traceback
import warnings
from types import TracebackType
from typing import Any, Callable

import torch
from torch.utils._python_dispatch import TorchDispatchMode

__all__ = ["HostReads"]

_aten = torch.ops.aten
#: aten operations that read a device value on the host (a scalar, or a size that depends on the data)
_READS = {
    _aten._local_scalar_dense.default,  # item(), float(t), int(t), bool(t)
    _aten.nonzero.default,
    _aten.masked_select.default,
    _aten._unique.default,
    _aten._unique2.default,
    _aten.unique_dim.default,
    _aten.unique_consecutive.default,
    _aten.equal.default,
    _aten.is_nonzero.default,
}
_INDEXING = {_aten.index.Tensor, _aten.index_put.default, _aten.index_put_.default}
_COPIES = {_aten._to_copy.default, _aten.copy_.default}
_PYTHON_READS = ("tolist", "numpy", "__array__")


def _on_device(t: Any) -> bool:
    return isinstance(t, torch.Tensor) and t.device.type not in ("cpu", "meta")


def _reads_host(func: Any, args: tuple, kwargs: dict) -> bool:
    """Whether one aten call makes the host wait for a device value."""
    if func in _READS:
        return True
    if func in _INDEXING:  # boolean masks become indices (nonzero) on the host
        indices = args[1] if len(args) > 1 else kwargs.get("indices", ())
        return any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in indices)
    if func == _aten.repeat_interleave.Tensor:
        return kwargs.get("output_size") is None
    if func in _COPIES:  # a device tensor copied into host memory
        if func == _aten._to_copy.default:
            target = kwargs.get("device")
            return _on_device(args[0]) and target is not None and torch.device(target).type == "cpu"
        return _on_device(args[1]) and not _on_device(args[0])
    return False


def _caller(skip_torch: bool = True) -> str:
    """``file:line`` of the innermost frame outside torch and this module (where the read was written)."""
    for frame in reversed(traceback.extract_stack()[:-2]):
        name = frame.filename.replace("\\", "/")
        if name.endswith("host_reads.py") or (skip_torch and "/torch/" in name) or "/lightning/" in name:
            continue
        return f"{name.rsplit('/dsflow/', 1)[-1] if '/dsflow/' in name else name}:{frame.lineno}"
    return "<unknown>"


class _Mode(TorchDispatchMode):
    def __init__(self, record: Callable[[str], None]) -> None:
        super().__init__()
        self.record = record

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        if _reads_host(func, args, kwargs):
            self.record(str(func.overloadpacket.__name__))
        return func(*args, **kwargs)


class HostReads:
    """A context manager counting host reads (see the module docstring).

    Attributes:
        count: reads seen so far (aten reads plus direct reads of tensor memory).
        where: a Counter of ``"op at file:line"``, where each read was made.
        cuda_syncs: synchronisations reported by CUDA's sync debug mode (0 off CUDA).
    """

    def __init__(self) -> None:
        self.count = 0
        self.where: collections.Counter[str] = collections.Counter()
        self.cuda_syncs = 0
        self._mode = _Mode(self._record)
        self._inside_python_read = False
        self._saved: dict[str, Any] = {}
        self._caught: Any = None
        self._sync_mode: int | None = None

    def _record(self, what: str) -> None:
        if self._inside_python_read:  # tolist() on CUDA copies to the host: one read, not two
            return
        self.count += 1
        self.where[f"{what} at {_caller()}"] += 1

    def _wrap(self, name: str, method: Callable[..., Any]) -> Callable[..., Any]:
        def read(tensor: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
            if self._inside_python_read:
                return method(tensor, *args, **kwargs)
            self._record(name)
            self._inside_python_read = True
            try:
                return method(tensor, *args, **kwargs)
            finally:
                self._inside_python_read = False

        return read

    def summary(self, top: int = 8) -> str:
        """One line per place, most reads first."""
        lines = [f"{n:5d}  {where}" for where, n in self.where.most_common(top)]
        extra = f"; CUDA reported {self.cuda_syncs} synchronisations" if self.cuda_syncs else ""
        return f"{self.count} host reads{extra}:\n" + "\n".join(lines)

    def __enter__(self) -> "HostReads":
        for name in _PYTHON_READS:
            self._saved[name] = torch.Tensor.__dict__.get(name)  # None: inherited from torch._C.TensorBase
            setattr(torch.Tensor, name, self._wrap(name, getattr(torch.Tensor, name)))
        if torch.cuda.is_available():
            self._sync_mode = torch.cuda.get_sync_debug_mode()
            torch.cuda.set_sync_debug_mode("warn")
            self._caught = warnings.catch_warnings(record=True)
            self._warnings = self._caught.__enter__()
            warnings.simplefilter("always")
        self._mode.__enter__()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self._mode.__exit__(kind, error, trace)
        for name, method in self._saved.items():
            if method is None:
                delattr(torch.Tensor, name)
            else:
                setattr(torch.Tensor, name, method)
        self._saved.clear()
        if self._caught is not None:
            torch.cuda.set_sync_debug_mode(self._sync_mode or 0)
            records = self._warnings
            self._caught.__exit__(kind, error, trace)
            self.cuda_syncs = sum("synchroniz" in str(w.message) for w in records)
            for w in records:  # give back what was not a sync report
                if "synchroniz" not in str(w.message):
                    warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
            self._caught = None
