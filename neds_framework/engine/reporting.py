"""What an evaluation hands its reporters, and running them.

A reporter is an output an evaluation writes beside run.h5: the built-in ``figures`` (PNGs under
``figures/``) and ``tensorboard`` (scores, hyper-parameters and figures as TensorBoard events),
or any a plugin registers with ``neds_register_reporters``. The eval and fit stages call each
reporter of ``eval.reporters`` in order with one `EvalReport`; a reporter may add figures to
``report.figures`` for the ones after it (TensorBoard logs every figure added before it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs


@attrs.define
class EvalReport:
    """One evaluation's results, for reporters.

    run_dir:  the run folder (write under it)
    record:   the run's `RunRecord`, results already saved
    results:  one `SessionResult` per evaluated session (task -> modality -> scores, predictions)
    specs:    modality -> `ModalitySpec` of the evaluated modalities
    summary:  (task, modality, metric, mean, s.e.m., sessions) over sessions
    recipe:   the resolved recipe; settings: its `EvalSettings`; split: the evaluated split
    bin_size: seconds per time bin
    figures:  (name, matplotlib Figure) drawn so far, in order
    written:  paths reporters wrote
    """

    run_dir: Path
    record: Any
    results: list
    specs: dict
    summary: list
    recipe: Any
    settings: Any
    split: str
    bin_size: float
    figures: list = attrs.Factory(list)
    written: list = attrs.Factory(list)


def run_reporters(report: EvalReport, registries) -> None:
    """Each reporter the eval settings name, in order (``figures: false`` / ``tensorboard: false``
    switch those two off)."""
    settings = report.settings
    off = {name for name, on in (("figures", settings.figures), ("tensorboard", settings.tensorboard)) if not on}
    for name in settings.reporters:
        if name in off:
            continue
        entry = registries.reporters.get(name)
        reporter = entry.factory(entry.settings() if entry.settings is not None else None)
        reporter(report)
