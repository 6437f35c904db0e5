"""Export (issue 17): portable safetensors weights, BrainWideBench prediction files scored by
ibl-bwb-eval against our own metrics, and the model card the eval stage writes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import tiny_recipe

NEDS_RUN = str(Path(sys.executable).with_name("neds-run"))
MODALITIES = """\
modalities:
  spikes: {tokenizer: {name: spikes, element_masks: true}, head: spikes}  # co_smoothing and forward hide neurons
"""
EVAL = MODALITIES + """\
eval:
  tasks: [encoding, decoding, co_smoothing, forward]
  figures: false
  tensorboard: false
"""


def neds(*args, cwd, ok=True):
    done = subprocess.run([NEDS_RUN, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=900)
    if ok:
        assert done.returncode == 0, done.stderr[-3000:]
    return done


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two seeds of one tiny run on the same store (prepare, train, eval)."""
    folder = tmp_path_factory.mktemp("export")
    for seed in (3, 4):
        recipe = tiny_recipe(folder, f"seed{seed}", seed=seed, epochs=2, extra=EVAL)
        neds(recipe, "--set", "train.progress=false", cwd=folder)
    return folder, [folder / "runs" / "seed3", folder / "runs" / "seed4"]


def _eval_predictions(run: Path) -> dict[str, np.ndarray]:
    from neds_framework.engine.record import RunRecord

    record = RunRecord.load(run)
    return {group: arrays["prediction"] for group, arrays in record.results.items()
            if group.startswith("eval/test/") and "prediction" in arrays and "/oracle" not in group}


# --------------------------------------------------------------------------- model card


def test_eval_writes_a_model_card_and_bwb_metadata(runs):
    _, (run, _) = runs
    card = (run / "MODEL_CARD.md").read_text()
    for part in ("# Model card: seed3", "## Data", "## Recipe", "## Metrics (test split)", "± s.e.m.", "## Compute",
                 "Training wall time:", "## Versions", "## Known limitations", "simulated sessions", "```yaml"):
        assert part in card, part
    assert "| decoding | wheel | r2 |" in card and "| encoding | spikes | bps |" in card
    meta = json.loads((run / "bwb_metadata.json").read_text())
    model = meta["model"]
    assert model["temporal_context_s"] == pytest.approx(2.0) and model["is_pretrained"] is False
    assert isinstance(model["n_parameters"], int) and model["n_parameters"] > 0
    assert set(meta["tasks"]) == {"ts1-choice", "ts1-wheel_speed", "ts1-whisker_motion_energy", "ts2-co_smoothing",
                                  "ts2-forecasting"}
    # Two sessions trained together from scratch: none of BWB's paradigms, said in the notes.
    assert meta["tasks"]["ts1-choice"]["training_paradigm"] is None and meta["notes"]
    assert meta["tasks"]["ts2-co_smoothing"]["extra_input_modality"] == ["behavior"]
    assert meta["tasks"]["ts1-choice"]["extra_input_modality"] == []
    for fields in meta["tasks"].values():
        assert fields["calibration"] == "transductive" and fields["supervision_regime"] == "full"


def test_card_command_rewrites_the_card(runs):
    folder, (run, _) = runs
    (run / "MODEL_CARD.md").unlink()
    done = neds("card", run, cwd=folder)
    assert "MODEL_CARD.md" in done.stdout and (run / "MODEL_CARD.md").exists()
    bad = neds("card", folder / "nowhere", cwd=folder, ok=False)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1 and "run.h5" in bad.stderr


# --------------------------------------------------------------------------- safetensors


def test_weights_round_trip_gives_identical_predictions(runs):
    folder, (run, _) = runs
    weights = folder / "seed3.safetensors"
    neds("export", run, "--weights", weights, cwd=folder)
    from safetensors import safe_open

    with safe_open(str(weights), framework="pt") as f:
        meta = f.metadata()
    assert meta["neds_format"] == "neds-weights/1" and "stages:" in meta["recipe"] and meta["checkpoint"] in ("best", "last")
    # eval from the file alone (another run folder, the same store): every prediction identical.
    recipe = tiny_recipe(folder, "from_weights", stages="[eval]", extra=EVAL + f"  run: {weights}\n")
    neds(recipe, cwd=folder)
    ours, theirs = _eval_predictions(run), _eval_predictions(folder / "runs" / "from_weights")
    assert ours.keys() == theirs.keys() and ours
    for group in ours:
        np.testing.assert_array_equal(ours[group], theirs[group], err_msg=group)
    # finetune accepts the file as its starting point.
    recipe = tiny_recipe(folder, "ft", stages="[finetune]", extra=MODALITIES + f"finetune: {{pretrained: {weights}, epochs: 1, "
                         "batch_size: 16, threads: 1, progress: false}\n")
    done = neds(recipe, cwd=folder)
    assert "2 pretrained session(s)" in done.stdout
    # Its card says it is pretrained (BWB: TSS, the whole model finetuned).
    neds("card", folder / "runs" / "ft", cwd=folder)
    meta = json.loads((folder / "runs" / "ft" / "bwb_metadata.json").read_text())
    assert meta["model"]["is_pretrained"] is True and str(weights) in meta["model"]["pretraining_data"]
    assert "(not evaluated yet" in (folder / "runs" / "ft" / "MODEL_CARD.md").read_text()


def test_weights_errors_are_one_line(runs, tmp_path):
    folder, (run, _) = runs
    not_weights = tmp_path / "x.safetensors"
    from safetensors.numpy import save_file

    save_file({"a": np.zeros(2, np.float32)}, str(not_weights))
    for path, says in ((not_weights, "without neds-framework metadata"), (tmp_path / "missing.safetensors", "no such weights file")):
        recipe = tiny_recipe(folder, "bad_weights", stages="[eval]", extra=EVAL + f"  run: {path}\n")
        done = neds(recipe, cwd=folder, ok=False)
        errors = [line for line in done.stderr.splitlines() if line.startswith("neds-run: error:")]
        assert done.returncode == 2 and says in errors[0] and len(errors) == 1 and "Traceback" not in done.stderr, done.stderr
    done = neds("export", run, "--weights", tmp_path / "w.pt", cwd=folder, ok=False)
    assert done.returncode == 2 and ".safetensors" in done.stderr


# --------------------------------------------------------------------------- BrainWideBench


def _our_table(run: Path):
    from neds_framework.engine.record import RunRecord, read_table

    record = RunRecord.load(run)
    table = {(s, t, m, k): v for s, t, m, k, v in read_table(record)}
    return record, table


def test_bwb_export_scored_by_ibl_bwb_eval_agrees_with_our_metrics(runs, tmp_path):
    ibl_bwb_eval = pytest.importorskip("ibl_bwb_eval", reason="make install adds ibl-bwb-eval (pip install --no-deps ibl-bwb-eval==0.1.0)")
    from ibl_bwb_eval.scoring import ts1, ts2

    assert ibl_bwb_eval.__version__ == "0.1.0"
    folder, seeds = runs
    pred, truth = tmp_path / "predictions", tmp_path / "ground_truth"
    done = neds("export", *seeds, "--bwb", pred, "--label", "neds-tiny", "--truth", truth, cwd=folder)
    assert "BrainWideBench file(s)" in done.stdout
    files = sorted(p.relative_to(pred).as_posix() for p in pred.rglob("*.safetensors"))
    eids = sorted({f.split("/")[2] for f in files})
    assert len(eids) == 2 and len(files) == 2 * 5 * 2  # sessions x tasks x seeds
    assert all(f.startswith("neds-tiny/ts") and f.endswith(("seed_3.safetensors", "seed_4.safetensors")) for f in files)

    scored1 = ts1.score_dir(pred, truth)
    scored2 = ts2.score_dir(pred, truth)
    assert len(scored1) == 2 * 3 * 2 and len(scored2) == 2 * 2 * 2
    for seed, run in zip((3, 4), seeds):
        record, table = _our_table(run)
        for eid in eids:
            # TS1: BWB's macro accuracy is balanced accuracy; its R2Score over trials x bins is our pooled R²
            # (torchmetrics sums in float32: the unexplained share 1 − R² agrees to 1e-6 relative).
            got = scored1[("neds-tiny", "ts1-choice", eid, seed)]
            assert got["bacc"] == pytest.approx(table[(eid, "decoding", "choice", "balanced_accuracy")], abs=1e-6)
            for name, task in (("wheel", "ts1-wheel_speed"), ("whisker", "ts1-whisker_motion_energy")):
                got = scored1[("neds-tiny", task, eid, seed)]
                assert 1 - got["r2"] == pytest.approx(1 - table[(eid, "decoding", name, "r2")], rel=1e-6), (name, eid)
            # TS2: BWB pools bits per spike over neurons (spike-weighted); we average per neuron (the
            # reference's formula). From our per-neuron values the pooled number is reproduced; its
            # Poisson D² is the mean of our per-neuron pseudo-R².
            for task, bwb_task in (("co_smoothing", "ts2-co_smoothing"), ("forward", "ts2-forecasting")):
                arrays = record.results[f"eval/test/{eid}/{task}/spikes"]
                target = arrays["target"]
                spikes = np.nansum(target, axis=(0, 1))
                per_neuron = arrays["bps_per_neuron"]
                scoredn = np.isfinite(per_neuron) & (spikes > 0)
                pooled = float((per_neuron[scoredn] * spikes[scoredn]).sum() / spikes[scoredn].sum())
                got = scored2[("neds-tiny", bwb_task, eid, seed)]
                assert got["bps"] == pytest.approx(pooled, abs=1e-6), (task, eid)
                d2 = arrays["pseudo_r2_per_neuron"]
                assert got["poisson_d2"] == pytest.approx(float(np.nanmean(d2[scoredn])), abs=1e-6), (task, eid)
    summary = ts1.summarize(scored1)
    assert all(v["bacc"][2] == 2 for k, v in summary.items() if k[1] == "ts1-choice")  # both seeds, with their s.e.m.


def test_bwb_export_refuses_two_runs_of_one_seed(runs, tmp_path):
    folder, (run, _) = runs
    done = neds("export", run, run, "--bwb", tmp_path / "p", cwd=folder, ok=False)
    assert done.returncode == 2 and "both have seed 3" in done.stderr
    done = neds("export", run, cwd=folder, ok=False)
    assert done.returncode == 2 and "--weights" in done.stderr
