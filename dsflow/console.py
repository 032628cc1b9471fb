"""A quiet, useful console for dsflow's runs: third-party chatter that says nothing about the run is dropped.

Dropped (each is known to be harmless for dsflow's runs, and says so below):

* Lightning's "Tip: ... litlogger" advertisement, printed by every Trainer (``rank_zero_info``);
* torch's ``LeafSpec`` deprecation ``FutureWarning``, raised inside Lightning's own pytree helpers;
* "Total length of `list` across ranks is zero": Lightning's note that a datamodule without a validation split
  returns no validation loader, which is how dsflow's datamodules say "no validation" (flows, ``val_fraction: 0``);
* "Using ModelCheckpoint with manual optimization and every_n_train_steps, but no pre-optimization state was
  saved" (with a page of example code): a flow takes its step by manual optimization
  (:meth:`~dsflow.flows.FlowModule.flow_step`), and the checkpoint of step t holding the particles after step t is
  exactly what a resumed flow needs.

wandb's "The anonymous setting has no effect" is not filtered but avoided at its source: Lightning hands
``wandb.init`` ``anonymous=None``, which :func:`dsflow.cli.wandb_logger` leaves out.

Everything else, and every warning about the user's run (a Sinkhorn cap, a data problem), is kept.
:func:`quiet_third_party` is called by the entry points (:mod:`dsflow.cli`) and the benchmark runners, never on
import: a library must not change a user's warning filters behind their back.
"""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path
from typing import Any

__all__ = ["quiet_third_party", "run_summary"]

_KNOWN_HARMLESS = (
    (FutureWarning, r".*isinstance\(treespec, LeafSpec\)` is deprecated"),
    (UserWarning, r"Total length of `list` across ranks is zero"),
    (UserWarning, r"Using ModelCheckpoint with manual optimization and every_n_train_steps"),
)


class _DropAdvertisement(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "litlogger" not in record.getMessage()


_FILTER = _DropAdvertisement()


def quiet_third_party() -> None:
    """Drop the known-harmless third-party messages listed in this module's docstring (idempotent)."""
    for category, message in _KNOWN_HARMLESS:
        warnings.filterwarnings("ignore", message=message, category=category)
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)


def run_summary(run_dir: str | Path, trainer: Any) -> str:
    """The lines a finished run ends with: what it did, how long it took, what it scored, and where it wrote.

    Flows (a ``summary.json`` in ``run_dir``): steps, seconds, objective before and after, the oracle accuracy
    before and after when an :class:`~dsflow.callbacks.OracleScorer` scored it, and the exported dataset with its
    clipped fraction when a :class:`~dsflow.callbacks.DatasetExport` wrote one (``export.json``). Training runs: epochs, steps and the
    best monitored value of the checkpoint callback.
    """
    run_dir = Path(run_dir)
    lines = []
    summary = run_dir / "summary.json"
    if summary.is_file():
        s = json.loads(summary.read_text())
        first = s.get("initial_objective")
        start = "?" if first is None else f"{first:.4g}"
        state = " (interrupted)" if s.get("interrupted") else ""
        lines.append(f"flow{state}: {s['steps']} steps in {s['wall_time_s']:.1f} s ({s['seconds_per_step']:.3g} s/step), "
                     f"{s['num_particles']} particles; objective {start} -> {s['final_objective']:.4g}")
        for cb in trainer.callbacks:
            history = getattr(cb, "history", None)
            if history and isinstance(history, list) and "accuracy" in history[0]:
                lines.append(f"oracle accuracy: {history[0]['accuracy']:.1f} % (step {history[0]['step']}) -> "
                             f"{history[-1]['accuracy']:.1f} % (step {history[-1]['step']})")
        lines += _export_line(run_dir)
    else:
        best = getattr(trainer.checkpoint_callback, "best_model_score", None)
        monitor = getattr(trainer.checkpoint_callback, "monitor", None)
        score = f"; best {monitor} {float(best):.4g}" if best is not None and monitor else ""
        lines.append(f"trained {trainer.current_epoch} epochs ({trainer.global_step} steps){score}")
    lines.append(f"run dir: {run_dir}")
    return "\n".join(lines)


def _export_line(run_dir: Path) -> list[str]:
    """The final export's line (``export.json``'s record of ``flowed.npz``), if the flow wrote one."""
    path = run_dir / "export.json"
    if not path.is_file():
        return []
    final = [r for r in json.loads(path.read_text()).get("exports", []) if r.get("file") == "flowed.npz"]
    if not final:
        return []
    from dsflow.export import Export  # torch and numpy: only for runs that exported

    r = final[-1]
    folder = run_dir / r["folder"] if r.get("folder") else None
    return [Export(run_dir / r["file"], r["count"], r["clipped"], r["labels"], folder, r.get("clipped_visibly", 0.0),
                   r.get("max_outside", 0.0)).describe()]
