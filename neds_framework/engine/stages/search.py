"""The `search` stage: Ray Tune over recipe keys, ASHA on every validation, best recipe out.

Each trial is the recipe with its sampled keys set, trained by the train stage in its own run
folder (`<run>/trials/<trial id>/`, a full run record), on the store the prepare stage made.
After every validation the trial reports ``search.metric`` to Tune, so ASHA can stop poor trials
early (the reference reported once, at the end, which made its ASHA a random search). The stage
writes a table of trials into run.h5 (`search/trials`), the best trial's recipe as
`best_recipe.yaml` (stages prepare, train, eval: ready to run), and prints the table.

Ray is an optional extra: ``pip install -e '.[tune]'``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np

from neds_framework import __version__
from neds_framework.atomic import atomic_write_text
from neds_framework.engine.stages.prepare import store_path
from neds_framework.engine.record import RunRecord
from neds_framework.engine.settings import SearchSettings
from neds_framework.errors import NedsError
from neds_framework.recipe import RawRecipe, Recipe, apply_overrides, dump_recipe, recipe_to_dict, structure_recipe


def _ray():
    try:
        import ray
        from ray import tune
    except ImportError:
        raise NedsError("the search stage needs Ray Tune, an optional extra: pip install -e '.[tune]' (or pip install 'ray[tune]')") from None
    return ray, tune


def sample_space(space: dict, tune) -> dict:
    makers = {
        "uniform": lambda a: tune.uniform(*a),
        "loguniform": lambda a: tune.loguniform(*a),
        "randint": lambda a: tune.randint(*a),
        "choice": lambda a: tune.choice(a),
        "grid": lambda a: tune.grid_search(a),
    }
    return {key: makers[kind](args) for key, spec in space.items() for kind, args in spec.items()}


def trial_recipe(recipe_data: dict, recipe_path: str, config: dict, overrides: list[str], registries) -> Recipe:
    """The recipe with a trial's sampled keys (and the search's own overrides) set."""
    raw = RawRecipe(data=recipe_data, origins={(): f"{recipe_path} (search trial)"}, path=recipe_path)
    items = [f"{key}={json.dumps(_plain(value))}" for key, value in config.items()] + overrides
    return structure_recipe(apply_overrides(raw, items), registries)


def _plain(value):
    return value.item() if isinstance(value, np.generic) else value


def _run_trial(config: dict, recipe_data: dict, recipe_path: str, trials_dir: str, store: str,
               metric: str, threads: int) -> None:
    """One Tune trial (runs in a Ray worker process)."""
    from ray import tune

    from neds_framework.engine.context import RunContext
    from neds_framework.engine.stages.train import train_model
    from neds_framework.plugins import get_plugins

    trial_id = tune.get_context().get_trial_id()
    plugins = get_plugins()
    overrides = ["stages=[train]", f"run.dir={json.dumps(trials_dir)}", f"run.name={json.dumps(trial_id)}",
                 f"data.store={json.dumps(store)}", "train.progress=false", f"train.threads={threads}",
                 f"train.select={metric}"]
    recipe = trial_recipe(recipe_data, recipe_path, config, overrides, plugins.registries)
    run_dir = Path(trials_dir) / trial_id
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / "recipe.yaml", dump_recipe(recipe))

    def report(row: dict) -> None:
        tune.report({metric: float(row[metric]), "epoch": int(row["epoch"]) + 1,
                     "train_loss": float(row.get("train_loss", float("nan")))})

    train_model(RunContext(recipe=recipe, plugins=plugins, run_dir=run_dir), on_validate=report)


def run_search(context) -> Path:
    from neds_framework.engine import distributed

    if distributed.world().distributed:
        raise NedsError("search: run it in one process (each trial is a process of its own); drop --nproc")
    recipe: Recipe = context.recipe
    settings: SearchSettings | None = recipe.section("search")
    if settings is None:
        raise NedsError("search: the recipe has no 'search' section; it needs at least search.space")
    settings.check()
    ray, tune = _ray()
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    run_dir = Path(context.run_dir).resolve()
    store = str(store_path(recipe).resolve())
    if not Path(store).exists():
        raise NedsError(f"search: no prepared store at {store}; put the prepare stage before search in stages")
    # Trials must not depend on the folder a Ray worker starts in: every path is absolute.
    data = recipe_to_dict(recipe)
    data["stages"] = ["train"]
    mode = settings.resolved_mode
    scheduler = (
        ASHAScheduler(time_attr="epoch", grace_period=settings.grace_period, reduction_factor=settings.reduction_factor)
        if settings.scheduler == "asha" else FIFOScheduler()
    )
    trainable = tune.with_parameters(
        _run_trial, recipe_data=data, recipe_path=str(recipe.path), trials_dir=str(run_dir / "trials"), store=store,
        metric=settings.metric, threads=max(1, int(settings.cpus_per_trial)),
    )
    trainable = tune.with_resources(trainable, {"cpu": settings.cpus_per_trial, "gpu": settings.gpus_per_trial})
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False, ignore_reinit_error=True,
             logging_level="ERROR")
    try:
        from ray.tune.search.basic_variant import BasicVariantGenerator

        tuner = tune.Tuner(
            trainable,
            param_space=sample_space(settings.space, tune),
            tune_config=tune.TuneConfig(
                metric=settings.metric, mode=mode, scheduler=scheduler, num_samples=settings.samples,
                max_concurrent_trials=settings.max_concurrent or None,
                search_alg=BasicVariantGenerator(random_state=settings.seed),
            ),
            run_config=tune.RunConfig(storage_path=str(run_dir / "ray"), name="search", verbose=0),
        )
        results = tuner.fit()
    finally:
        ray.shutdown()
    rows = _trial_rows(results, settings, mode)
    if not rows:
        raise NedsError("search: no trial reported a result; see the trial folders under " + str(run_dir / "trials"))
    best = rows[0]
    best_recipe = trial_recipe(recipe_to_dict(recipe), str(recipe.path), best["config"],
                               ["stages=[prepare, train, eval]"], context.plugins.registries)
    atomic_write_text(run_dir / "best_recipe.yaml", dump_recipe(best_recipe))
    _record(context, recipe, rows, settings)
    _print(rows, settings, run_dir)
    return run_dir / "best_recipe.yaml"


def _trial_rows(results, settings: SearchSettings, mode: str) -> list[dict]:
    """One row per trial (best reported score, reports, config), best trial first."""
    rows = []
    for result in results:
        history = result.metrics_dataframe
        if history is None or settings.metric not in getattr(history, "columns", []):
            continue
        scores = history[settings.metric].to_numpy(dtype=float)
        best = float(np.nanmin(scores) if mode == "min" else np.nanmax(scores))
        rows.append({
            "trial": str(result.metrics.get("trial_id", Path(result.path).name)),
            "config": {k: _plain(v) for k, v in result.config.items()},
            "score": best,
            "reports": int(len(scores)),
            "error": "" if result.error is None else str(result.error).splitlines()[0][:200],
        })
    rows.sort(key=lambda r: r["score"] if mode == "min" else -r["score"])
    return rows


def _record(context, recipe: Recipe, rows: list[dict], settings: SearchSettings) -> None:
    path = Path(context.run_dir)
    record = RunRecord.load(path) if (path / "run.h5").exists() else RunRecord(path)
    record.meta.setdefault("recipe", dump_recipe(recipe))
    record.meta.setdefault("framework_version", __version__)
    table = {"trial": np.asarray([r["trial"] for r in rows], dtype=str),
             settings.metric: np.asarray([r["score"] for r in rows]),
             "reports": np.asarray([r["reports"] for r in rows]),
             "error": np.asarray([r["error"] for r in rows], dtype=str)}
    for key in settings.space:
        values = [r["config"].get(key) for r in rows]
        table[key] = np.asarray(values) if all(isinstance(v, (int, float)) for v in values) else np.asarray(values, dtype=str)
    record.results["search/trials"] = table
    record.meta["search_metric"] = settings.metric
    record.save()


def _print(rows: list[dict], settings: SearchSettings, run_dir: Path) -> None:
    keys = list(settings.space)
    header = ["trial", *keys, settings.metric, "reports"]
    body = [[r["trial"], *(_fmt(r["config"].get(k)) for k in keys), _fmt(r["score"]), str(r["reports"])] for r in rows]
    widths = [max(len(x[i]) for x in [header, *body]) for i in range(len(header))]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    print(f"search: {len(rows)} trial(s), best first ({settings.scheduler}, {settings.metric} {settings.resolved_mode})")
    print("\n".join([line(header), line(["-" * w for w in widths]), *(line(b) for b in body)]))
    print(f"best recipe: {run_dir / 'best_recipe.yaml'}", file=sys.stderr)


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
