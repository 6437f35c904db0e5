"""train.ema: the moving average of the weights, what validation scores and what checkpoints hold."""

from __future__ import annotations

import pytest
import torch

from neds_framework import cli
from neds_framework.engine.averaging import WeightAverage
from neds_framework.engine.record import RunRecord
from neds_framework.engine.stages import train as train_stage
from tests import helpers

pytestmark = pytest.mark.usefixtures("fresh_plugins")


def _model() -> torch.nn.Module:
    model = torch.nn.Linear(3, 2)
    model.register_buffer("count", torch.tensor([5]))  # not floating: never averaged
    return model


def test_the_average_warms_up_then_follows_the_decay():
    model = _model()
    w0 = model.weight.detach().clone()
    average = WeightAverage(model, 0.5)
    with torch.no_grad():
        model.weight.add_(1.0)
    average.update(1)  # keep min(0.5, 2/11) of the old average
    expected = w0 + (1 - 2 / 11) * 1.0
    torch.testing.assert_close(average.model_state(model)["weight"], expected)
    with torch.no_grad():
        model.weight.add_(1.0)
    average.update(100)  # min(0.5, 101/110) = 0.5
    torch.testing.assert_close(average.model_state(model)["weight"], 0.5 * expected + 0.5 * (w0 + 2.0))
    assert torch.equal(average.model_state(model)["count"], torch.tensor([5]))


def test_swapping_in_holds_the_average_and_restores_the_weights_exactly():
    model = _model()
    average = WeightAverage(model, 0.9)
    with torch.no_grad():
        model.weight.mul_(3.0).add_(0.1)
    own = {k: v.clone() for k, v in model.state_dict().items()}
    average.update(50)
    with average.swapped_in():
        torch.testing.assert_close(model.weight.detach(), average.model_state(model)["weight"])
        assert not torch.equal(model.weight, own["weight"])
    for key, value in model.state_dict().items():
        assert torch.equal(value, own[key]), key


def test_loading_an_average_replaces_it():
    model, other = _model(), _model()
    average = WeightAverage(model, 0.9)
    average.load(other.state_dict())
    torch.testing.assert_close(average.model_state(model)["weight"], other.weight.detach())


def test_validation_scores_the_average_and_checkpoints_hold_it(tmp_path, monkeypatch):
    seen = []
    original = train_stage.Trainer.validate

    def validate(self):  # the weights each validation sees
        seen.append({k: v.detach().clone() for k, v in self.model.state_dict().items()})
        return original(self)

    monkeypatch.setattr(train_stage.Trainer, "validate", validate)
    recipe = helpers.tiny_recipe(tmp_path, stages="[prepare, train]", seed=7, epochs=2)
    assert cli.main([str(recipe), "--set", "train.ema=0.9"]) == 0
    state = RunRecord.load(tmp_path / "runs" / "tiny").checkpoint("last")
    assert len(seen) == 2 and set(state["train_model"]) == set(state["model"])
    floating = [k for k, v in state["model"].items() if v.is_floating_point()]
    for key in floating:
        assert torch.equal(seen[-1][key], state["model"][key]), key
    assert any(not torch.equal(state["model"][k], state["train_model"][k]) for k in floating)


@pytest.mark.parametrize("value", ["1.0", "-0.1"])
def test_an_ema_outside_zero_to_one_is_refused(tmp_path, value, capsys):
    recipe = helpers.tiny_recipe(tmp_path, stages="[prepare, train]", epochs=1)
    assert cli.main([str(recipe), "--set", f"train.ema={value}"]) == 2
    assert "train.ema" in capsys.readouterr().err
