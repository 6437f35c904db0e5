"""Loss balancing and readout starts: each modality's loss over its trivial predictor's."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tests.model_helpers import make_batch, tiny_model, with_session
from neds_framework.model.eval_masks import decoding_masks, encoding_masks
from neds_modalities.heads import ClassificationHead, RegressionHead, SpikesHead

MODS = ("spikes", "wheel", "choice", "block")


def test_spikes_null_loss_is_half_the_null_deviance_per_element():
    counts = torch.poisson(torch.full((40, 12, 5), 0.3) * torch.arange(1, 6), generator=torch.Generator().manual_seed(0))
    y = counts.double().numpy().reshape(-1, 5)
    rate = y.mean(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        dev = np.where(y > 0, y * np.log(y / rate), 0.0) - (y - rate)
    assert SpikesHead("spikes", 8, 12).null_loss(counts) == pytest.approx(dev.mean(), rel=1e-9)
    # the same number as (NLL of the mean-rate predictor) - (NLL of lambda = y), both without Stirling
    nll = lambda lam: lam - y * np.log(np.where(lam > 0, lam, 1.0))  # noqa: E731
    assert dev.mean() == pytest.approx((nll(np.broadcast_to(rate, y.shape)) - nll(y)).mean(), rel=1e-9)


def test_regression_and_classification_null_losses():
    values = torch.randn(30, 12) * 0.2 + 0.5
    assert RegressionHead("wheel", 8, 12).null_loss(values) == pytest.approx(float(values.double().var(unbiased=False)), rel=1e-9)
    labels = torch.tensor([0] * 30 + [1] * 10)
    prior = torch.tensor([31 / 42, 11 / 42], dtype=torch.float64)  # add-one smoothed
    expected = float(-(30 * prior[0].log() + 10 * prior[1].log()) / 40)
    assert ClassificationHead("choice", 8, 12, ClassificationHead.Settings(2)).null_loss(labels) == pytest.approx(expected)


def test_a_constant_target_is_not_scaled():
    assert RegressionHead("wheel", 8, 12).null_loss(torch.full((10, 12), 0.3)) == 1.0


def test_calibrate_starts_readouts_at_the_trivial_predictor_and_sets_the_scales():
    model = tiny_model(modalities=MODS)
    batch = with_session(model, make_batch(trials=40, modalities=MODS))
    scales = model.calibrate(batch.session, batch.values)
    assert set(scales) == set(MODS)
    spikes = model.heads["spikes"].layers[batch.session]
    assert torch.allclose(spikes.bias, batch.values["spikes"].reshape(-1, 10).mean(0).clamp(min=1e-3).log())
    wheel = model.heads["wheel"].layers[batch.session]
    assert torch.allclose(wheel.bias, batch.values["wheel"].mean().reshape(1))
    stored = model.loss_scales[batch.session]
    assert stored.tolist() == pytest.approx([scales[m] for m in model.outputs])
    # the total is the weighted sum of each modality's mean loss over its scale
    out = model(batch, encoding_masks(batch))
    expected = sum(s / c / scales[m] for m, (s, c) in out.losses.items() if c > 0)
    assert torch.allclose(out.loss, expected.float())


def test_without_balance_the_scales_stay_one_and_biases_can_stay_put():
    model = tiny_model(modalities=MODS, loss_balance="none", start_at_trivial=False)
    batch = with_session(model, make_batch(trials=20, modalities=MODS))
    before = model.heads["spikes"].layers[batch.session].bias.clone()
    assert model.calibrate(batch.session, batch.values) == {}
    assert model.loss_scales[batch.session].tolist() == [1.0] * len(model.outputs)
    assert torch.equal(model.heads["spikes"].layers[batch.session].bias, before)


def test_loss_scales_travel_with_the_state_dict():
    model = tiny_model(modalities=MODS)
    batch = with_session(model, make_batch(trials=20, modalities=MODS))
    model.calibrate(batch.session, batch.values)
    other = tiny_model(modalities=MODS, seed=1)
    with_session(other, make_batch(trials=20, modalities=MODS))
    other.load_state_dict(model.state_dict())
    assert torch.equal(other.loss_scales[batch.session], model.loss_scales[batch.session])


def test_uncertainty_weights_learn_and_reach_the_loss():
    model = tiny_model(modalities=MODS, loss_balance="uncertainty")
    batch = with_session(model, make_batch(trials=20, modalities=MODS))
    model.calibrate(batch.session, batch.values)
    out = model(batch, decoding_masks(batch))
    out.loss.backward()
    assert model.log_variance.grad is not None and model.log_variance.grad.abs().sum() > 0


def test_trivial_start_predicts_the_training_mean_rate():
    """Zero readout weights: a calibrated model predicts each neuron's training mean rate exactly."""
    model = tiny_model(modalities=MODS)
    batch = with_session(model, make_batch(trials=30, modalities=MODS))
    model.calibrate(batch.session, batch.values)
    with torch.no_grad():
        model.heads["spikes"].layers[batch.session].weight.zero_()
    model.eval()
    with torch.no_grad():
        rates = model.predict(model(batch, encoding_masks(batch)))["spikes"]
    mean = batch.values["spikes"].reshape(-1, 10).mean(0).clamp(min=1e-3)
    assert torch.allclose(rates.mean(dim=(0, 1)), mean, rtol=1e-5)
    assert math.isclose(float(rates.std(dim=(0, 1)).max()), 0.0, abs_tol=1e-6)


def test_spikes_rows_start_random_or_at_zero():
    counts = torch.poisson(torch.full((20, 12, 5), 0.3), generator=torch.Generator().manual_seed(0))
    heads = {}
    for start in ("random", "zero"):
        torch.manual_seed(0)
        head = SpikesHead("spikes", 8, 12, SpikesHead.Settings(start_rows=start))
        head.add_session("s", 5)
        before = head.layers["s"].weight.detach().clone()
        head.start_at_trivial("s", counts)
        heads[start] = (head, before)
    random_head, before = heads["random"]
    assert torch.equal(random_head.layers["s"].weight, before) and before.abs().sum() > 0
    zero_head, _ = heads["zero"]
    assert not zero_head.layers["s"].weight.any()
    log_mean = counts.reshape(-1, 5).mean(0).clamp(min=1e-3).log()
    for head, _ in heads.values():
        assert torch.allclose(head.layers["s"].bias, log_mean.float())
    # zero rows: the mean-rate predictor exactly, whatever the hidden state
    assert torch.allclose(zero_head(torch.randn(3, 12, 8), "s"), log_mean.float().expand(3, 12, 5))
    assert SpikesHead.Settings().start_rows == "random"
