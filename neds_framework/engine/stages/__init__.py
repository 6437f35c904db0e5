"""The engine's stages, registered through the same entry-point path as every plugin.

One module per stage (`prepare`, `train`, `finetune`, `evaluate`, `fit`, `search`); the
stages registered here import a stage's module only when it runs, so listing plugins and
validating recipes stay fast. The built-in reporters are registered here too.
"""

import importlib

from neds_framework.engine.stages.prepare import PrepareSettings
from neds_framework.engine.settings import EvalSettings, FinetuneSettings, FitSettings, SearchSettings, TrainSettings
from neds_framework.hookspecs import hookimpl


def _lazy(module: str, function: str):
    """A stage that imports ``neds_framework.engine.stages.<module>`` only when it runs."""

    def stage(context):
        return getattr(importlib.import_module(f"neds_framework.engine.stages.{module}"), function)(context)

    stage.__name__ = f"{module}_stage"
    return stage


@hookimpl
def neds_register_stages(register):
    register("prepare", _lazy("prepare", "run_prepare"), settings=PrepareSettings)
    register("train", _lazy("train", "run_train"), settings=TrainSettings)
    register("finetune", _lazy("finetune", "run_finetune"), settings=FinetuneSettings)
    register("eval", _lazy("evaluate", "run_eval"), settings=EvalSettings)
    register("search", _lazy("search", "run_search"), settings=SearchSettings)
    register("fit", _lazy("fit", "run_fit"), settings=FitSettings)


@hookimpl
def neds_register_reporters(register):
    from neds_framework.engine.reporters import FiguresReporter, TensorBoardReporter

    register("figures", FiguresReporter)
    register("tensorboard", TensorBoardReporter)
