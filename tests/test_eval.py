"""The eval and finetune stages, `neds-run inspect`, TensorBoard logs and model selection."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from neds_framework import cli
from neds_framework.data.store import SessionStore
from neds_framework.engine.record import read_table
from neds_framework.engine.eval_tables import format_summary, summarise
from neds_framework.engine.evaluate import evaluate_session, recipe_metrics
from neds_framework.modality import modality_specs
from tests import helpers
from neds_framework.engine.record import RunRecord
from neds_framework.plugins import get_plugins, reset_plugins

ROOT = Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.usefixtures("fresh_plugins")  # plugins loaded per test (conftest)


def write_recipe(folder: Path, name: str, body: str) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(body)
    return path


def tiny_body(folder: Path, stages: str, name: str, lab: str = "synthlab", epochs: int = 2, extra: str = "") -> str:
    return helpers.tiny_recipe_text(folder, name, stages=stages, lab=lab, epochs=epochs,
                                    extra="eval: {figure_sessions: 1, top_neurons: 3}\n" + extra + "\n")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny run of prepare -> train -> eval, shared by the tests that only read it."""
    reset_plugins()
    folder = tmp_path_factory.mktemp("evalrun")
    recipe = write_recipe(folder, "tiny", tiny_body(folder, "[prepare, train, eval]", "tiny"))
    assert cli.main([str(recipe)]) == 0
    reset_plugins()
    return folder, folder / "runs" / "tiny"


def test_eval_writes_table_predictions_figures_and_tensorboard(trained):
    folder, run = trained
    record = RunRecord.load(run)
    rows = read_table(record)
    sessions = {r[0] for r in rows}
    assert len(sessions) == 2
    keys = {(task, modality, metric) for _, task, modality, metric, _ in rows}
    for expected in [
        ("encoding", "spikes", "bps"),
        ("oracle", "spikes", "bps"),
        ("encoding", "spikes", "psth_r2"),
        ("encoding", "spikes", "single_trial_r2"),
        ("decoding", "wheel", "r2"),
        ("decoding", "whisker", "psth_r2"),
        ("decoding", "choice", "accuracy"),
        ("decoding", "block", "balanced_accuracy"),
    ]:
        assert expected in keys, expected
    eid = sorted(sessions)[0]
    store = SessionStore(folder / "store.h5")
    test_trials = store.split(eid, "test")
    group = record.results[f"eval/test/{eid}/encoding/spikes"]
    assert group["prediction"].shape == group["target"].shape == (len(test_trials), 100, store.info(eid).n_neurons)
    assert group["bps_per_neuron"].shape == (store.info(eid).n_neurons,)
    np.testing.assert_array_equal(record.results[f"eval/test/{eid}"]["trials"], test_trials)
    np.testing.assert_array_equal(group["target"], store.read(eid, "spikes", test_trials))
    assert float(group["bps"]) == pytest.approx(np.nanmean(group["bps_per_neuron"]))
    # figures: training curves once, the per-session set for one session (figure_sessions: 1)
    pngs = sorted(p.relative_to(run / "figures").as_posix() for p in (run / "figures").rglob("*.png"))
    assert "training_curves.png" in pngs
    assert {p.split("/")[-1] for p in pngs if "/" in p} == {
        "encoding_psth.png", "encoding_bps.png", "decoding_wheel.png", "decoding_whisker.png",
        "confusion_choice.png", "confusion_block.png",
    }
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run / "tensorboard")).Reload()
    assert {"train/loss", "train/lr", "epoch/val_loss", "eval_test/encoding/spikes/bps"} <= set(events.Tags()["scalars"])
    assert any(tag.endswith("encoding_psth") for tag in events.Tags()["images"])


def test_inspect_prints_the_metrics_table(trained, capsys):
    _, run = trained
    assert cli.main(["inspect", str(run), "--sessions"]) == 0
    out = capsys.readouterr().out
    assert "evaluation on the test split, 2 session(s)" in out
    # Columns are as wide as their longest entry (e.g. the task oracle_behaviour): match any spacing.
    assert re.search(r"^oracle +spikes +bps ", out, re.M) and re.search(r"^decoding +choice +accuracy ", out, re.M)
    assert "checkpoints: best, last" in out and "2 epoch(s)" in out
    assert cli.main(["inspect", str(run.parent / "missing")]) == 2


def test_a_model_predicting_the_true_rates_scores_the_oracle(trained):
    folder, _ = trained
    store = SessionStore(folder / "store.h5")
    eid = store.eids[0]
    registries = get_plugins().registries
    from neds_framework.recipe import load_recipe

    recipe = load_recipe(folder / "tiny.yaml", registries=registries)
    metrics = recipe_metrics(recipe, registries)

    trials = store.split(eid, "test")
    truth = torch.from_numpy(store.read_truth(eid, "rates", trials).astype(np.float32))

    def truth_predictor(batch, masks):
        """The simulator's rates; one batch holds the whole split, in split order."""
        assert batch.size == len(trials) and bool(masks["spikes"].all())
        return {"spikes": truth}

    specs = modality_specs(recipe.modalities, registries)
    result = evaluate_session(truth_predictor, store, eid, specs, metrics, tasks=("encoding",), batch_size=10_000)
    encoding, oracle = result.tasks["encoding"]["spikes"], result.tasks["oracle"]["spikes"]
    assert encoding.scalars["bps"] == pytest.approx(oracle.scalars["bps"], abs=1e-9)
    np.testing.assert_allclose(encoding.arrays["bps_per_neuron"], oracle.arrays["bps_per_neuron"])
    assert oracle.scalars["bps"] > 0.1  # the generated neurons carry real signal


def test_summary_is_mean_and_sem_over_sessions():
    rows = [("a", "encoding", "spikes", "bps", 0.1), ("b", "encoding", "spikes", "bps", 0.3),
            ("c", "encoding", "spikes", "bps", float("nan")), ("a", "decoding", "choice", "accuracy", 0.8)]
    summary = summarise(rows)
    assert summary[0][:3] == ("encoding", "spikes", "bps")
    assert summary[0][3] == pytest.approx(0.2) and summary[0][4] == pytest.approx(0.1) and summary[0][5] == 2
    assert summary[1][3] == pytest.approx(0.8) and np.isnan(summary[1][4])
    text = format_summary(summary)
    assert "0.2000" in text and "0.1000" in text


def test_finetune_adds_new_sessions_and_trains_only_them(trained, tmp_path):
    folder, pretrained_run = trained
    body = tiny_body(
        tmp_path, "[prepare, finetune, eval]", "ft", lab="heldoutlab",
        extra=f"finetune: {{pretrained: {pretrained_run}, train_only: new, epochs: 1, threads: 1, progress: false}}",
    )
    recipe = write_recipe(tmp_path, "ft", body)
    assert cli.main([str(recipe)]) == 0
    record = RunRecord.load(tmp_path / "runs" / "ft")
    pretrained = RunRecord.load(pretrained_run)
    old = set(pretrained.meta_value("model_sessions"))
    sessions = record.meta_value("model_sessions")
    new = set(sessions) - old
    assert len(new) == 2 and old <= set(sessions)
    before = pretrained.checkpoint("best")["model"]
    after = record.checkpoint("last")["model"]
    changed_new = False
    for key, value in after.items():
        if key in before:
            assert torch.equal(before[key], value), f"{key} was frozen but changed"
        else:
            assert any(eid in key.split(".") for eid in new), key
            changed_new = True
    assert changed_new
    rows = read_table(record)
    assert {r[0] for r in rows} == new  # evaluated on the new sessions
    assert record.meta["pretrained"] == str(pretrained_run)


def test_selection_on_a_named_validation_metric(tmp_path):
    body = tiny_body(tmp_path, "[prepare, train]", "sel", epochs=2).replace(
        "optimizer: {lr: 3.0e-3}}", "optimizer: {lr: 3.0e-3}, select: val_encoding_spikes_bps}"
    )
    recipe = write_recipe(tmp_path, "sel", body)
    assert cli.main([str(recipe)]) == 0
    record = RunRecord.load(tmp_path / "runs" / "sel")
    scores = record.history["epoch"]["val_encoding_spikes_bps"]
    assert len(scores) == 2 and all(np.isfinite(scores))
    assert record.checkpoint("best")["epoch"] == int(np.argmax(scores)) + 1  # higher is better


def test_bad_eval_and_finetune_settings_are_one_line_errors(tmp_path, capsys):
    recipe = write_recipe(tmp_path, "bad", tiny_body(tmp_path, "[eval]", "bad", extra="").replace(
        "eval: {figure_sessions: 1, top_neurons: 3}", "eval: {tasks: [encoding, telepathy]}"))
    assert cli.main([str(recipe)]) == 2
    assert "eval.tasks: unknown task 'telepathy'" in capsys.readouterr().err
    recipe = write_recipe(tmp_path, "noft", tiny_body(tmp_path, "[finetune]", "noft", extra="finetune: {epochs: 1}"))
    assert cli.main([str(recipe)]) == 2
    assert "finetune.pretrained: missing" in capsys.readouterr().err


MIXED = """
masker:
  name: mixture
  schemes: {neds_multitask: 0.5, neuron: 0.25, inter_region: 0.25}
  options: {neuron: {ratio: 0.25}}
modalities:
  spikes: {tokenizer: {name: spikes, element_masks: true}, head: spikes}
"""


def test_a_mixed_masking_recipe_trains_and_its_matching_evaluations_run(trained, tmp_path):
    folder, _ = trained
    body = tiny_body(tmp_path, "[prepare, train, eval]", "mixed", epochs=1).replace(
        "eval: {figure_sessions: 1, top_neurons: 3}",
        "eval: {figures: false, tasks: [encoding, co_smoothing, forward, inter_region, intra_region], forward_bins: 10}",
    )
    recipe = write_recipe(tmp_path, "mixed", body + textwrap.dedent(MIXED))
    assert cli.main([str(recipe)]) == 0
    record = RunRecord.load(tmp_path / "runs" / "mixed")
    rows = read_table(record)
    keys = {(task, metric) for _, task, modality, metric, _ in rows if modality == "spikes"}
    for task in ("co_smoothing", "forward", "inter_region", "intra_region"):
        assert (task, "bps") in keys and (f"oracle_{task}", "bps") in keys, task
    assert any(task == "inter_region" and metric.startswith("bps_region_") for task, metric in keys)
    store = SessionStore(tmp_path / "store.h5")
    eid = store.eids[0]
    forward = record.results[f"eval/test/{eid}/forward/spikes"]["target"]
    assert np.isnan(forward[:, :90]).all() and not np.isnan(forward[:, 90:]).any()  # only the last 10 bins scored
    co = record.results[f"eval/test/{eid}/co_smoothing/spikes"]
    held = ~np.isnan(co["target"][0, 0])
    n = store.info(eid).n_neurons
    assert held.sum() == round(0.2 * n)
    assert np.isnan(co["bps_per_neuron"][~held]).all()
    inter = record.results[f"eval/test/{eid}/inter_region/spikes"]["target"]
    assert not np.isnan(inter).any()  # every neuron predicted once, with its region hidden


def test_the_oracle_scores_its_own_ceiling_on_each_spike_task(trained):
    folder, _ = trained
    store = SessionStore(folder / "store.h5")
    eid = store.eids[0]
    trials = store.split(eid, "test")
    truth = torch.from_numpy(store.read_truth(eid, "rates", trials).astype(np.float32))
    registries = get_plugins().registries
    from neds_framework.recipe import load_recipe

    recipe = load_recipe(folder / "tiny.yaml", registries=registries)

    def truth_predictor(batch, masks):
        """The true rates where this pass hides spikes, nonsense elsewhere: any element scored
        from a pass that did not hide it would pull the score off the oracle's."""
        return {"spikes": torch.where(masks["spikes"], truth, 1000.0)}

    result = evaluate_session(truth_predictor, store, eid, modality_specs(["spikes", "wheel"], registries), recipe_metrics(recipe, registries),
                              tasks=("co_smoothing", "forward", "inter_region", "intra_region"), batch_size=10_000)
    for task in ("co_smoothing", "forward", "inter_region", "intra_region"):
        got, ceiling = result.tasks[task]["spikes"].scalars, result.tasks[f"oracle_{task}"]["spikes"].scalars
        assert got["bps"] == pytest.approx(ceiling["bps"], abs=1e-9), task


def test_passes_merge_into_one_prediction_per_element_whatever_the_modality_shape():
    from neds_framework.engine.evaluate import merge_pass

    b, t, f = 2, 4, 3
    first = torch.zeros(b, t, dtype=torch.bool)
    first[:, :2] = True  # a (B, T) bin mask over (B, T, F) LFP bands
    made = merge_pass(None, torch.full((b, t, f), 1.0), first)
    pred, hidden = merge_pass(made, torch.full((b, t, f), 2.0), ~first)
    assert hidden.shape == (b, t, f) and bool(hidden.all())
    assert (pred[:, :2] == 1.0).all() and (pred[:, 2:] == 2.0).all()
