"""The engine's stages, registered through the same entry-point path as every plugin.

One module per stage (`prepare`, `train`, `finetune`, `evaluate`, `fit`, `search`); the
`<name>_stage` functions here import a stage's module only when it runs, so listing plugins and
validating recipes stay fast. The built-in reporters are registered here too.
"""

from neds_framework.engine.stages.prepare import PrepareSettings
from neds_framework.engine.settings import EvalSettings, FinetuneSettings, FitSettings, SearchSettings, TrainSettings
from neds_framework.hookspecs import hookimpl


def prepare_stage(context):
    from neds_framework.engine.stages.prepare import run_prepare

    return run_prepare(context)


def train_stage(context):
    from neds_framework.engine.stages.train import run_train

    return run_train(context)


def finetune_stage(context):
    from neds_framework.engine.stages.finetune import run_finetune

    return run_finetune(context)


def evaluate_stage(context):
    from neds_framework.engine.stages.evaluate import run_eval

    return run_eval(context)


def search_stage(context):
    from neds_framework.engine.stages.search import run_search

    return run_search(context)


def fit_stage(context):
    from neds_framework.engine.stages.fit import run_fit

    return run_fit(context)


@hookimpl
def neds_register_stages(register):
    register("prepare", prepare_stage, settings=PrepareSettings)
    register("train", train_stage, settings=TrainSettings)
    register("finetune", finetune_stage, settings=FinetuneSettings)
    register("eval", evaluate_stage, settings=EvalSettings)
    register("search", search_stage, settings=SearchSettings)
    register("fit", fit_stage, settings=FitSettings)


@hookimpl
def neds_register_reporters(register):
    from neds_framework.engine.reporters import FiguresReporter, TensorBoardReporter

    register("figures", FiguresReporter)
    register("tensorboard", TensorBoardReporter)
