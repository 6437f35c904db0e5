"""The built-in reporters (`neds_framework.engine.reporting`): figures and TensorBoard.

They are registered by the engine's plugin (`neds_framework.engine.stages`) through the same
``neds_register_reporters`` hook a third-party reporter uses.
"""

from __future__ import annotations

import numpy as np

from neds_framework.engine.reporting import EvalReport


class FiguresReporter:
    """PNGs under ``figures/``: training curves, and per session (the first ``figure_sessions``)
    decoded traces, confusion matrices, PSTHs and per-neuron bits per spike (`eval_figures`)."""

    def __init__(self, settings=None):
        self.settings = settings

    def __call__(self, report: EvalReport) -> None:
        from neds_framework.engine import figures as fig
        from neds_framework.engine.eval_figures import draw_figures

        s = report.settings
        for name, figure in draw_figures(report.record, report.results[: s.figure_sessions], report.specs,
                                         report.bin_size, s.top_neurons):
            report.written.append(fig.save_png(figure, report.run_dir / "figures" / f"{name}.png"))
            report.figures.append((name, figure))


class TensorBoardReporter:
    """TensorBoard events under ``tensorboard/``: each mean score, the run's main settings beside
    them (HPARAMS), and every figure the reporters before it drew."""

    def __init__(self, settings=None):
        self.settings = settings

    def __call__(self, report: EvalReport) -> None:
        from neds_framework.engine.tensorboard import open_writer

        writer = open_writer(report.run_dir, True)
        try:
            for task, modality, metric, mean, _, _ in report.summary:
                writer.add_scalar(f"eval_{report.split}/{task}/{modality}/{metric}", mean, 0)
            for name, figure in report.figures:
                writer.add_figure(name, figure, 0, close=False)
            log_hparams(writer, report.recipe, report.summary)
        finally:
            writer.close()


def log_hparams(writer, recipe, summary) -> None:
    """The run's main settings beside its mean scores, for TensorBoard's HPARAMS tab."""
    hparams = {"seed": recipe.run.seed}
    model = getattr(recipe.model, "config", None)
    for key in ("layers", "hidden", "heads", "ffn", "dropout", "mode"):
        if hasattr(model, key):
            hparams[f"model.{key}"] = getattr(model, key)
    train = recipe.section("train")
    if train is not None:
        hparams.update({"train.lr": train.optimizer.lr, "train.batch_size": train.batch_size, "train.epochs": train.epochs})
    if recipe.masker is not None:
        hparams["masker"] = recipe.masker.name
    metrics = {f"hparam/{task}/{modality}/{metric}": mean for task, modality, metric, mean, _, _ in summary if np.isfinite(mean)}
    if metrics:
        writer.add_hparams(hparams, metrics, run_name="hparams")
