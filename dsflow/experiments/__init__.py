"""The experiment runners of the paper (``benchmarks/*.py`` are thin scripts calling their ``main(argv=None)``).

Each runner sweeps ``flow.py`` / ``train.py`` runs from YAML in-process and writes tables, figures and
``results.json``; tests drive the same ``main`` functions (``from dsflow.experiments import table1``). Importing a
runner changes nothing process-wide: each ``main`` flushes CPU denormals itself, as ``flow.py`` does.

* :mod:`~dsflow.experiments.common`: the options every runner has, ``--protocol`` YAML sweeps, progress lines,
  Markdown tables; :mod:`~dsflow.experiments.runs`: in-process runs of ``flow.py`` / ``train.py`` and the flow
  map's restarts; :mod:`~dsflow.experiments.datasets`: the one registry of the datasets the runners know by name.
* :mod:`~dsflow.experiments.table1` (Table 1), :mod:`~dsflow.experiments.transfer` (section 7.2; its settings in
  :mod:`~dsflow.experiments.transfer_settings`, its flowed data in :mod:`~dsflow.experiments.transfer_data`, its
  tables and figures in :mod:`~dsflow.experiments.transfer_report`), :mod:`~dsflow.experiments.transfer_schedule`,
  :mod:`~dsflow.experiments.repurpose` (section 7.3), :mod:`~dsflow.experiments.pseudo_labels` (pseudo-label
  selection), :mod:`~dsflow.experiments.flow_map` (appendix C, Fig. 9).
"""

__all__ = ["common", "datasets", "flow_map", "pseudo_labels", "repurpose", "runs", "table1", "transfer",
           "transfer_data", "transfer_report", "transfer_schedule", "transfer_settings"]
