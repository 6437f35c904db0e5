"""Which figures an evaluation draws, from its results (the drawing is in `figures`).

Per run: training curves. Per session (the first few): predicted vs true traces of each per-bin
behaviour (decoding), predicted vs true PSTHs of the best-predicted neurons of each count
modality (encoding), a confusion matrix per class variable (decoding), and the per-neuron
bits-per-spike histogram against the oracle where there is ground truth. The `figures` reporter
writes them as PNGs and the `tensorboard` reporter logs them (`engine.reporters`).
"""

from __future__ import annotations

import numpy as np

from neds_framework.engine import figures as fig
from neds_framework.engine.evaluate import SessionResult
from neds_framework.engine.record import RunRecord


def draw_figures(record: RunRecord, results: list[SessionResult], specs: dict, bin_size: float, top: int):
    """(name, figure) of an evaluation; ``specs`` (modality -> ModalitySpec) says which figure fits which modality."""
    out: list = []

    def emit(figure, name: str) -> None:
        if figure is not None:
            out.append((name, figure))

    counted = [name for name, spec in specs.items() if spec.values == "counts" and spec.element_masked]
    emit(fig.training_curves(record.history), "training_curves")
    for result in results:
        short = result.eid[:8]
        decoding = result.tasks.get("decoding", {})
        for modality, scored in decoding.items():
            spec = specs.get(modality)
            if spec is None:
                continue
            if not spec.per_trial and scored.target.ndim == 2:
                emit(fig.behaviour_traces(modality, scored.prediction, scored.target, bin_size, r2=scored.scalars.get("r2")),
                     f"{short}/decoding_{modality}")
            elif spec.values == "classes":
                emit(fig.confusion_matrix(modality, scored.prediction.astype(np.int64), scored.target.astype(np.int64),
                                          spec.n_classes), f"{short}/confusion_{modality}")
        for name in counted:
            encoded = result.tasks.get("encoding", {}).get(name)
            oracle = result.tasks.get("oracle", {}).get(name)
            if encoded is None:
                continue
            suffix = "" if name == counted[0] else f"_{name}"
            bps = encoded.arrays.get("bps_per_neuron")
            truth = oracle.prediction if oracle is not None else None
            emit(fig.psth_panels(encoded.prediction, encoded.target, bin_size, scores=bps, conditions=result.conditions,
                                 truth=truth, top=top), f"{short}/encoding_psth{suffix}")
            if bps is not None:
                emit(fig.bps_histogram(bps, oracle.arrays.get("bps_per_neuron") if oracle is not None else None),
                     f"{short}/encoding_bps{suffix}")
    return out
