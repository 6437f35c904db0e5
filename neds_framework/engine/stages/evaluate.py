"""The `eval` stage: score a trained run on held-out trials, per session, and report.

Loads the run's checkpoint (``eval.checkpoint``, default the best one), evaluates every session
of the store the model knows (`neds_framework.engine.evaluate`), and writes:

- into run.h5, under ``eval/<split>/``: a long ``table`` (session, task, modality, metric,
  value) and, per session, task and modality, the scalar scores, per-neuron scores, and (with
  ``save_predictions``) the predictions, targets and trial indices;
- whatever the reporters of ``eval.reporters`` write (`engine.reporting`): by default PNG
  figures under ``figures/`` and the same figures, the mean scores and the run's
  hyper-parameters to TensorBoard;
- the summary table (mean ± s.e.m. over sessions) on standard output.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from neds_framework import __version__
from neds_framework.engine.distributed import pick_device
from neds_framework.engine.eval_tables import format_summary, print_skipped, summarise
from neds_framework.engine.eval_tasks import TaskOptions
from neds_framework.engine.evaluate import SessionResult, evaluate_session, model_predictor, recipe_metrics
from neds_framework.engine.precision import autocast_factory, resolve_amp
from neds_framework.engine.stages.prepare import store_path
from neds_framework.engine.record import RunRecord, table_arrays
from neds_framework.engine.settings import EvalSettings
from neds_framework.engine.reporting import EvalReport, run_reporters
from neds_framework.engine.trained import open_trained
from neds_framework.errors import NedsError
from neds_framework.modality import modality_specs
from neds_framework.recipe import Recipe, dump_recipe


def result_arrays(result: SessionResult, save_predictions: bool) -> dict[str, dict[str, np.ndarray]]:
    """Record groups (relative to eval/<split>/<eid>) of one session's results."""
    groups: dict[str, dict[str, np.ndarray]] = {"": {"trials": result.trials}}
    for task, by_modality in result.tasks.items():
        for modality, scored in by_modality.items():
            arrays = {k: np.asarray(v, dtype=np.float64) for k, v in scored.scalars.items()}
            arrays.update(scored.arrays)
            if save_predictions:
                arrays["prediction"] = scored.prediction
                arrays["target"] = scored.target
            groups[f"{task}/{modality}"] = arrays
    return groups


def run_eval(context) -> Path | None:
    from neds_framework.engine import distributed

    if not distributed.world().main:  # rank 0 evaluates every session alone; the record is its
        return None
    recipe: Recipe = context.recipe
    settings: EvalSettings = recipe.section("eval") or EvalSettings()
    settings.check()
    registries = context.plugins.registries
    if settings.threads:
        torch.set_num_threads(settings.threads)

    model_dir = Path(settings.run) if settings.run else Path(context.run_dir)  # a run folder or a .safetensors file
    trained = open_trained(model_dir, registries, settings.checkpoint)
    model_recipe = trained.recipe if settings.run else recipe
    model = trained.model(registries, model_recipe)
    device = pick_device(settings.device, "eval.device")
    model.to(device)

    from neds_framework.data.store import SessionStore

    store = SessionStore(store_path(recipe))
    known = set(model.sessions())
    eids = [eid for eid in store.eids if eid in known]
    if not eids:
        raise NedsError(
            f"eval: the model of {model_dir} knows none of the store's sessions "
            f"({', '.join(store.eids[:3])}...); finetune it on them first (stage finetune)"
        )
    specs = modality_specs(model_recipe.modalities, registries)
    amp, amp_reason = resolve_amp(settings.amp, device, "eval.amp")
    return evaluate_and_report(context, model_predictor(model, autocast_factory(amp, device)), store, eids, specs,
                               settings, device, {"evaluated_run": str(model_dir), "eval_amp": amp, "eval_amp_reason": amp_reason})


def evaluate_and_report(context, predict, store, eids: list[str], specs: dict, settings: EvalSettings, device,
                        meta: dict) -> Path:
    """Score ``predict`` on the sessions, then write run.h5, figures, TensorBoard and the table.

    Shared by every stage that evaluates something: a trained model (eval), a fitted baseline (fit).
    """
    recipe: Recipe = context.recipe
    metrics = recipe_metrics(recipe, context.plugins.registries)
    options = TaskOptions(settings.heldout_fraction, settings.forward_bins, settings.intra_fraction)
    results = [
        evaluate_session(
            predict, store, eid, specs, metrics, settings.split, settings.tasks,
            settings.conditions, settings.batch_size, device, options=options,
        )
        for eid in eids
    ]
    rows = [row for r in results for row in r.rows()]

    record = RunRecord.load(context.run_dir) if (Path(context.run_dir) / "run.h5").exists() else RunRecord(context.run_dir)
    if not record.meta:
        record.meta.update(recipe=dump_recipe(recipe), framework_version=__version__, seed=recipe.run.seed,
                           store_hash=store.settings_hash, torch_version=torch.__version__)
    record.meta.update(meta)
    base = f"eval/{settings.split}"
    for key in [k for k in record.results if k == base or k.startswith(base + "/")]:
        del record.results[key]  # a re-evaluation replaces the previous one
    record.results[f"{base}/table"] = table_arrays(rows)
    for r in results:
        for group, arrays in result_arrays(r, settings.save_predictions).items():
            record.results[f"{base}/{r.eid}" + (f"/{group}" if group else "")] = arrays
    record.save()

    summary = summarise(rows)
    bin_size = float(store.info(eids[0]).meta.get("bin_size", 0.02))
    report = EvalReport(Path(context.run_dir), record, results, specs, summary, recipe, settings, settings.split, bin_size)
    run_reporters(report, context.plugins.registries)

    print_skipped(results)
    print(format_summary(summary, title=f"evaluation on the {settings.split} split of {len(eids)} session(s) (run {context.run_dir})"))
    return record.path
