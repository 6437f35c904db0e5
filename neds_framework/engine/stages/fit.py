"""The `fit` stage: models fitted in closed form (baselines), evaluated like any trained model.

A fitted model is registered under `models` like NEDS, but its factory takes only its settings
and the object it returns has

    fit(store, eids, specs)  -> None    learn from each session's train split (specs: modality ->
                                        ModalitySpec, the modalities to use)
    predict(batch, masks)         -> dict    what `Head.predict` would give, for hidden modalities

The stage fits it on every session of the store and hands `predict` to the same evaluation as
the eval stage (`stages.evaluate.evaluate_and_report`), so baselines and NEDS are scored by the same
metric plugins, on the same splits and masks, into the same run.h5 layout.
"""

from __future__ import annotations

import time
from pathlib import Path

from neds_framework.engine.settings import FitSettings
from neds_framework.errors import NedsError
from neds_framework.modality import modality_specs
from neds_framework.model.build import component_settings


def run_fit(context) -> Path | None:
    from neds_framework.data.store import SessionStore
    from neds_framework.engine import distributed
    from neds_framework.engine.stages.evaluate import evaluate_and_report
    from neds_framework.engine.stages.prepare import store_path

    if not distributed.world().main:
        return None
    recipe = context.recipe
    settings: FitSettings = recipe.section("fit") or FitSettings()
    settings.check()
    if recipe.model is None:
        raise NedsError(f"{recipe.path}: model: missing; the fit stage fits a baseline, e.g. model: {{name: ridge_decoder}}")
    registries = context.plugins.registries
    model = registries.models.get(recipe.model.name).factory(component_settings(recipe.model, registries))
    if not (hasattr(model, "fit") and hasattr(model, "predict")):
        raise NedsError(f"fit: model '{recipe.model.name}' is not fitted in closed form (no fit/predict); train it with the train stage")
    store = SessionStore(store_path(recipe))
    specs = modality_specs(list(recipe.modalities) or list(store.info(store.eids[0]).modalities), registries)
    start = time.perf_counter()
    model.fit(store, list(store.eids), specs)
    seconds = time.perf_counter() - start
    print(f"fit: {recipe.model.name} on {len(store.eids)} session(s) in {seconds:.1f} s")
    return evaluate_and_report(context, model.predict, store, list(store.eids), specs, settings, "cpu",
                               {"fitted_model": recipe.model.name, "fit_seconds": seconds})
