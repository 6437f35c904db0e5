"""The train stage: optimisers and schedules by name, the run record, kill-and-resume equality."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import pytest
import torch

from neds_framework import cli
from tests import helpers
from neds_framework.engine.optim import build_optimizer, build_schedule
from neds_framework.engine.record import RunRecord
from neds_framework.engine.settings import OptimizerSettings, ScheduleSettings
from neds_framework.errors import NedsError

NEDS_RUN = str(Path(sys.executable).with_name("neds-run"))
ROOT = Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.usefixtures("fresh_plugins")  # plugins loaded per test (conftest)


def tiny_recipe(folder: Path, epochs: int = 3) -> Path:
    return helpers.tiny_recipe(folder, stages="[prepare, train]", seed=7, epochs=epochs)


def test_optimisers_by_name():
    params = [torch.nn.Parameter(torch.zeros(3))]
    for name in ("AdamW", "sgd", "Lamb", "RAdam", "Yogi"):
        opt = build_optimizer(params, OptimizerSettings(name=name, lr=0.1))
        assert isinstance(opt, torch.optim.Optimizer)
        opt.load_state_dict(opt.state_dict())
    with pytest.raises(NedsError, match="Lookahead is not supported: its state_dict"):
        build_optimizer(params, OptimizerSettings(name="Lookahead"))
    with pytest.raises(NedsError, match="did you mean 'AdamW'"):
        build_optimizer(params, OptimizerSettings(name="adamww"))
    with pytest.raises(NedsError, match="rejected the options"):
        build_optimizer(params, OptimizerSettings(name="AdamW", options={"nonsense": 1.0}))


def test_onecycle_follows_the_reference_shape():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    schedule = build_schedule(opt, ScheduleSettings(), total_steps=100)
    lrs = []
    for _ in range(100):
        lrs.append(schedule.get_last_lr()[0])
        opt.step()
        schedule.step()
    assert lrs[0] == pytest.approx(0.1)  # starts at max / 10
    assert max(lrs) == pytest.approx(1.0) and lrs.index(max(lrs)) == 15  # 15 % warm-up
    assert schedule.get_last_lr()[0] == pytest.approx(1e-5, rel=1e-3)  # ends at start / 1e4
    with pytest.raises(NedsError, match="unknown schedule"):
        build_schedule(opt, ScheduleSettings(name="zigzag"), 10)


def test_train_writes_a_run_record(tmp_path):
    recipe = tiny_recipe(tmp_path, epochs=2)
    assert cli.main([str(recipe)]) == 0
    assert torch.tensor(1e-40).item() != 0  # subnormals flushed during training only
    record = RunRecord.load(tmp_path / "runs" / "tiny")
    epochs = record.history["epoch"]
    assert len(epochs["train_loss"]) == 2 and len(epochs["val_loss"]) == 2
    assert {"loss_spikes", "loss_wheel", "lr", "step"} <= set(record.history["step"])
    assert set(record.checkpoints) == {"best", "last"}
    state = record.checkpoint("last")
    assert state["epoch"] == 2 and "tokenizers.spikes.layers" in " ".join(state["model"])
    assert "neds_multitask" in record.meta["recipe"] and record.meta["seed"] == "7"
    with h5py.File(record.path) as f:  # plain HDF5
        assert f["history/epoch/val_loss"].shape == (2,)


def _weights(run_dir: Path) -> dict:
    state = RunRecord.load(run_dir).checkpoint("last")
    return {**state["model"], **{f"train_model.{k}": v for k, v in state.get("train_model", {}).items()}}


@pytest.mark.parametrize("ema", ["0", "0.9"])
def test_killed_run_resumes_to_the_same_weights(tmp_path, ema):
    recipe = tiny_recipe(tmp_path, epochs=3)
    sets = ["--set", f"train.ema={ema}"]
    whole = subprocess.run([NEDS_RUN, str(recipe), "--set", "run.name=whole", *sets], capture_output=True, text=True)
    assert whole.returncode == 0, whole.stderr

    killed = tmp_path / "runs" / "killed"
    proc = subprocess.Popen([NEDS_RUN, str(recipe), "--set", "run.name=killed", *sets], stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while not (killed / "run.h5").exists():  # the first epoch's checkpoint has landed
        assert proc.poll() is None and time.time() < deadline, "training ended before it could be killed"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert RunRecord.load(killed).checkpoint("last")["epoch"] < 3

    resumed = subprocess.run([NEDS_RUN, str(recipe), "--resume", str(killed), *sets], capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    a, b = _weights(tmp_path / "runs" / "whole"), _weights(killed)
    assert a.keys() == b.keys() and any(k.startswith("train_model.") for k in a) == (ema != "0")
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert len(RunRecord.load(killed).history["epoch"]["train_loss"]) == 3


def test_resume_needs_a_run_record(tmp_path, capsys):
    recipe = tiny_recipe(tmp_path)
    assert cli.main([str(recipe), "--resume", str(tmp_path / "nothing")]) == 2
    assert "no run record" in capsys.readouterr().err


def test_loss_scales_come_from_the_training_split_only(tmp_path):
    """Every session's loss scales in the checkpoint are the heads' null losses of its training
    trials (never validation or test ones); val_metrics puts learning curves in the history."""
    import numpy as np

    from neds_framework.data.store import SessionStore
    from neds_modalities.heads import ClassificationHead, RegressionHead, SpikesHead

    recipe = tiny_recipe(tmp_path, epochs=1)
    assert cli.main([str(recipe), "--set", "train.val_metrics=true"]) == 0
    record = RunRecord.load(tmp_path / "runs" / "tiny")
    state = record.checkpoint("last")["model"]
    heads = {"spikes": SpikesHead("spikes", 16, 100), "wheel": RegressionHead("wheel", 16, 100),
             "whisker": RegressionHead("whisker", 16, 100),
             "choice": ClassificationHead("choice", 16, 100, ClassificationHead.Settings(2)),
             "block": ClassificationHead("block", 16, 100, ClassificationHead.Settings(3))}
    with SessionStore(tmp_path / "store.h5") as store:
        for eid in store.eids:
            scales = state[f"loss_scales.values.{eid}"].tolist()
            train, everything = store.split(eid, "train"), np.arange(store.info(eid).n_trials)
            for name, scale in zip(heads, scales):
                values = lambda trials: torch.from_numpy(np.asarray(store.read(eid, name, trials)))  # noqa: E731
                assert scale == pytest.approx(heads[name].null_loss(values(train)), rel=1e-5), name
                if name == "spikes":
                    assert scale != pytest.approx(heads[name].null_loss(values(everything)), rel=1e-5)
    epochs = record.history["epoch"]
    assert len(epochs["val_encoding_spikes_bps"]) == 1 and len(epochs["val_decoding_wheel_r2"]) == 1
    assert epochs["step"][0] > 0


def test_a_non_finite_loss_stops_training_naming_the_step(tmp_path, capsys, monkeypatch):
    """Issue #15: a NaN loss is a failed run (exit 1, one line naming the step), and the weights it
    would have produced are never saved."""
    from neds_framework.engine.stages import train as train_stage

    recipe = tiny_recipe(tmp_path, epochs=2)
    original = train_stage.Trainer._to_batch

    def poisoned(self, eid, values):  # in the second epoch, a NaN wheel value reaches the loss
        batch = original(self, eid, values)
        if self.epoch >= 1:
            batch.values["wheel"][0, 0] = float("nan")
        return batch

    monkeypatch.setattr(train_stage.Trainer, "_to_batch", poisoned)
    assert cli.main([str(recipe)]) == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("neds-run:")]
    assert len(errors) == 1 and re.search(r"the loss is nan at step \d+ \(epoch 2, session", errors[0]), errors
    assert "lower train.optimizer.lr" in errors[0]
    assert RunRecord.load(tmp_path / "runs" / "tiny").checkpoint("last")["epoch"] == 1  # the first epoch's, kept
