"""A quiet, useful console for dsflow's runs: third-party chatter that says nothing about the run is dropped.

Dropped (each is known to be harmless for dsflow's runs, and says so below):

* Lightning's "Tip: ... litlogger" advertisement, printed by every Trainer (``rank_zero_info``);
* torch's ``LeafSpec`` deprecation ``FutureWarning``, raised inside Lightning's own pytree helpers;
* "Total length of `list` across ranks is zero": Lightning's note that a datamodule without a validation split
  returns no validation loader, which is how dsflow's datamodules say "no validation" (flows, ``val_fraction: 0``).

Everything else, and every warning about the user's run (a Sinkhorn cap, a data problem), is kept.
:func:`quiet_third_party` is called by the entry points (:mod:`dsflow.cli`) and the benchmark runners, never on
import: a library must not change a user's warning filters behind their back.
"""

from __future__ import annotations

import logging
import warnings

__all__ = ["quiet_third_party"]

_KNOWN_HARMLESS = (
    (FutureWarning, r".*isinstance\(treespec, LeafSpec\)` is deprecated"),
    (UserWarning, r"Total length of `list` across ranks is zero"),
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
