"""What the transfer runner (:mod:`dsflow.experiments.transfer`) sweeps and records: its settings (one LeNet-5
each) and what each is compared as, its options, its tasks and their records, and the summary rows of its report.

A setting's value is its name on the command line, in ``--protocol`` files, in ``task.json`` and in the tables;
the runner itself branches on the members (:attr:`Setting.needs_flow`, ``Setting.FINETUNE``), never on the names.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass, field, fields
from enum import Enum
from pathlib import Path
from typing import Any, NamedTuple

__all__ = ["Setting", "COMPARISON", "TransferOptions", "Task", "TaskRecord", "SummaryRow"]


class Setting(Enum):
    """One LeNet-5 of a task: what it is trained on (the value: the setting's name)."""

    TARGET_ONLY = "target only"
    Z0 = "+ z0"
    ZT = "+ zT"
    TRAJECTORY = "+ z1..T"
    FLOW_MAP = "+ h(z0)"
    FINETUNE = "fine-tune"
    REPEATED = "target repeated"
    REPEATED_T = "target repeated (z1..T steps)"

    @property
    def label(self) -> str:
        """The setting's name (command line, ``task.json``, tables)."""
        return self.value

    @property
    def needs_flow(self) -> bool:
        """Whether its training data comes from the flow (the others need only the flow's datasets)."""
        return self in (Setting.Z0, Setting.ZT, Setting.TRAJECTORY, Setting.FLOW_MAP)

    @property
    def comparison(self) -> str:
        """What it is compared as (the table's "comparison" column)."""
        return COMPARISON[self]

    @property
    def control(self) -> bool:
        """A step-matched control (not the paper's; drawn hatched)."""
        return self in (Setting.REPEATED, Setting.REPEATED_T)

    @property
    def run_name(self) -> str:
        """Its LeNet-5's run directory under ``<task>/lenet/``: ``plus_zT``, ``fine-tune``, ..."""
        return self.value.replace(" ", "_").replace("+", "plus").replace("..", "-").replace("(", "").replace(")", "")


COMPARISON = {
    Setting.TARGET_ONLY: "baseline",
    Setting.Z0: "equal epochs (paper)",
    Setting.ZT: "equal epochs (paper)",
    Setting.TRAJECTORY: "equal epochs (paper)",
    Setting.FLOW_MAP: "equal epochs (paper)",
    Setting.FINETUNE: "model adaptation, same labeled data (paper Fig. 4)",
    Setting.REPEATED: "control: the steps of + zT",
    Setting.REPEATED_T: "control: the steps of + z1..T",
}


@dataclass(frozen=True)
class TransferOptions:
    """The runner's options a task depends on (from the command line)."""

    out: Path
    config: list[str]
    settings: tuple[Setting, ...]
    flow_args: list[str]
    lenet_args: list[str]
    finetune_args: list[str]
    map_args: list[str]
    map_restarts: int
    n_test: int | None

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> TransferOptions:
        return cls(Path(args.out), args.config, tuple(map(Setting, args.settings)), args.flow_args, args.lenet_args,
                   args.finetune_args, args.map_args, args.map_restarts, args.n_test)

    def key(self) -> dict:
        """What a task's results depend on besides its pair, k and seed: a rerun reuses them only if equal."""
        return {name: getattr(self, name) for name in ("config", "flow_args", "lenet_args", "finetune_args", "map_args",
                                                         "map_restarts", "n_test")}

    def source_key(self) -> dict:
        """What draws and trains a source model (fine-tuning's first stage)."""
        return {"config": self.config, "flow_args": self.flow_args, "lenet_args": self.lenet_args}


class Task(NamedTuple):
    """One source:target pair, k shots per class and seed."""

    src: str
    tgt: str
    k: int
    seed: int

    @property
    def pair(self) -> str:
        return f"{self.src}->{self.tgt}"

    @property
    def name(self) -> str:
        """Its folder under ``--out``."""
        return f"{self.src}-{self.tgt}-k{self.k}-s{self.seed}"


@dataclass
class TaskRecord:
    """What a task found (``task.json``): accuracy (%) per setting, and flow, flow-map and landing diagnostics
    (:func:`dsflow.tasks.transfer.landing_report` of z0 and zT; None: not measured yet)."""

    pair: str
    k: int
    seed: int
    key: dict
    acc: dict[Setting, float] = field(default_factory=dict)
    flow_seconds: float | None = None
    landing: dict | None = None
    landing_z0: dict | None = None
    map_mse: float | None = None
    map_identity_mse: float | None = None
    map_seconds: float | None = None
    test: dict | None = None

    def to_json(self) -> dict[str, Any]:
        """As ``task.json`` holds it (settings by name; what was not measured left out)."""
        out = {k: v for k, v in asdict(self).items() if v is not None}
        return out | {"acc": {s.label: a for s, a in self.acc.items()}}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TaskRecord:
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"task record: unknown keys {unknown}")
        return cls(**{**data, "acc": {Setting(s): a for s, a in data.get("acc", {}).items()}})


@dataclass(frozen=True)
class SummaryRow:
    """One (pair, k, setting) of the report: mean and std (over ``seeds`` seeds) of the accuracy (%)."""

    pair: str
    k: int
    setting: Setting
    mean: float
    std: float
    seeds: int

    def to_json(self) -> dict[str, Any]:
        """As ``results.json`` holds it (and the figures take it)."""
        return {"pair": self.pair, "k": self.k, "setting": self.setting.label, "comparison": self.setting.comparison,
                "mean": self.mean, "std": self.std, "seeds": self.seeds}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SummaryRow:
        return cls(data["pair"], data["k"], Setting(data["setting"]), data["mean"], data["std"], data["seeds"])
