"""The engine's stages, registered through the same entry-point path as every plugin.

Stage bodies import torch and the data stack; they are imported when a stage runs, so listing
plugins and validating recipes stay fast.
"""

from neds_framework.engine.stages.prepare import PrepareSettings
from neds_framework.engine.settings import EvalSettings, FinetuneSettings, FitSettings, SearchSettings, TrainSettings
from neds_framework.hookspecs import hookimpl


def prepare(context):
    from neds_framework.engine.stages.prepare import run_prepare

    return run_prepare(context)


def train(context):
    from neds_framework.engine.stages.train import run_train

    return run_train(context)


def finetune(context):
    from neds_framework.engine.stages.finetune import run_finetune

    return run_finetune(context)


def evaluate(context):
    from neds_framework.engine.stages.evaluate import run_eval

    return run_eval(context)


def search(context):
    from neds_framework.engine.stages.search import run_search

    return run_search(context)


def fit(context):
    from neds_framework.engine.stages.fit import run_fit

    return run_fit(context)


@hookimpl
def neds_register_stages(register):
    register("prepare", prepare, settings=PrepareSettings)
    register("train", train, settings=TrainSettings)
    register("finetune", finetune, settings=FinetuneSettings)
    register("eval", evaluate, settings=EvalSettings)
    register("search", search, settings=SearchSettings)
    register("fit", fit, settings=FitSettings)


@hookimpl
def neds_register_reporters(register):
    from neds_framework.engine.reporters import FiguresReporter, TensorBoardReporter

    register("figures", FiguresReporter)
    register("tensorboard", TensorBoardReporter)
