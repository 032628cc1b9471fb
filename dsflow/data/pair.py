"""The DataModule of a flow: a source dataset (the particles' start) and a fixed reference dataset."""

from __future__ import annotations

import lightning as L
from torch.utils.data import DataLoader, Dataset

from dsflow.data.base import DatasetSource, LabeledData

__all__ = ["FlowDataModule"]


class _Steps(Dataset):
    """Step indices: a flow step reads its particles from the module, not from the batch."""

    def __init__(self, length: int) -> None:
        self.length = length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> int:
        return i


class FlowDataModule(L.LightningDataModule):
    """Pairs a source and a reference dataset for a :class:`~dsflow.flows.FlowModule`.

    ``flow.py`` links the loaded ``source`` and ``reference`` into the FlowModule's arguments of the same names
    (the module never reads the datamodule); the training loader only counts steps (one batch = one flow step),
    so no data crosses from host to device during the flow.

    Args:
        source: the dataset that flows (its features become the particles).
        reference: the fixed target dataset.
        steps_per_epoch: flow steps per Lightning epoch (only affects epoch-level hooks); the flow length is
            ``trainer.max_steps``.
    """

    def __init__(self, source: DatasetSource, reference: DatasetSource, steps_per_epoch: int = 100) -> None:
        super().__init__()
        if steps_per_epoch < 1:
            raise ValueError(f"FlowDataModule: steps_per_epoch must be >= 1, got {steps_per_epoch}")
        self.source_spec = source
        self.reference_spec = reference
        self.steps_per_epoch = steps_per_epoch
        self._source: LabeledData | None = None
        self._reference: LabeledData | None = None

    def setup(self, stage: str | None = None) -> None:
        if self._source is None:
            self._source = self.source_spec.load()
            self._reference = self.reference_spec.load()

    @property
    def source(self) -> LabeledData:
        self.setup()
        if self._source is None:
            raise RuntimeError("FlowDataModule: setup() loaded no source")
        return self._source

    @property
    def reference(self) -> LabeledData:
        self.setup()
        if self._reference is None:
            raise RuntimeError("FlowDataModule: setup() loaded no reference")
        return self._reference

    def train_dataloader(self) -> DataLoader:
        return DataLoader(_Steps(self.steps_per_epoch), batch_size=None, shuffle=False)
