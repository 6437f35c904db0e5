"""The per-trial (classification) readout: how it pools the variable's output tokens."""

from __future__ import annotations

import pytest
import torch

from neds_framework.errors import NedsError
from neds_modalities.heads import ClassificationHead

HIDDEN, BINS = 8, 12


def _head(pool: str, n_classes: int = 3, loss_on: str = "all") -> ClassificationHead:
    head = ClassificationHead("block", HIDDEN, BINS, ClassificationHead.Settings(n_classes, pool=pool, loss_on=loss_on))
    head.add_session("s", 1)
    return head


def test_weighted_pool_starts_as_the_sum_of_the_tokens():
    head = _head("weighted")
    layer = head.layers["s"]
    assert torch.equal(layer.weights.detach(), torch.ones(BINS))
    tokens = torch.randn(4, BINS, HIDDEN)
    assert torch.allclose(head(tokens, "s"), layer.linear(tokens.sum(dim=1)), atol=1e-6)


def test_the_token_weights_learn():
    head = _head("weighted")
    tokens = torch.randn(4, BINS, HIDDEN)
    total, count = head.loss(head(tokens, "s"), torch.tensor([0, 1, 2, 1]), torch.ones(4, dtype=torch.bool))
    (total / count).backward()
    grad = head.layers["s"].weights.grad
    assert grad is not None and grad.abs().sum() > 0


def test_every_token_gets_the_whole_gradient_under_the_weighted_pool_and_a_share_under_the_mean():
    # the point of the weighted pool: the mean hands each token 1/T of its trial's gradient
    grads = {}
    for pool in ("mean", "weighted"):
        head = _head(pool)
        torch.manual_seed(0)
        linear = head.layers["s"] if pool == "mean" else head.layers["s"].linear
        torch.nn.init.normal_(linear.weight)
        torch.nn.init.zeros_(linear.bias)
        tokens = torch.zeros(2, BINS, HIDDEN, requires_grad=True)  # equal logits in both pools
        total, count = head.loss(head(tokens, "s"), torch.tensor([0, 2]), torch.ones(2, dtype=torch.bool))
        (total / count).backward()
        grads[pool] = tokens.grad
    assert torch.allclose(grads["weighted"], grads["mean"] * BINS, atol=1e-6)


def test_the_mean_pool_keeps_a_plain_linear_state_dict():
    assert set(_head("mean").layers["s"].state_dict()) == {"weight", "bias"}
    assert set(_head("weighted").layers["s"].state_dict()) == {"weights", "linear.weight", "linear.bias"}


@pytest.mark.parametrize("pool", ["mean", "weighted"])
def test_the_readout_start_sets_the_bias_to_the_centred_log_prior(pool):
    head = _head(pool)
    labels = torch.tensor([0] * 6 + [1] * 3 + [2] * 1)
    head.start_at_trivial("s", labels)
    prior = (torch.tensor([6.0, 3.0, 1.0]) + 1) / 13
    expected = prior.log() - prior.log().mean()
    assert torch.allclose(head.layers["s"].bias, expected, atol=1e-6)


def test_one_token_per_trial_with_the_weighted_pool_is_refused_with_the_fix():
    head = _head("weighted")
    with pytest.raises(NedsError, match="layout 'expanded'.*pool 'mean'"):
        head(torch.randn(4, 1, HIDDEN), "s")
    assert _head("mean")(torch.randn(4, 1, HIDDEN), "s").shape == (4, 3)


def test_an_unknown_pool_is_refused():
    with pytest.raises(ValueError, match="pool"):
        ClassificationHead.Settings(2, pool="max")


def test_the_defaults_are_the_mean_pool_and_the_loss_over_every_trial():
    assert (ClassificationHead.Settings(2).pool, ClassificationHead.Settings(2).loss_on) == ("mean", "all")


def _loss(head: ClassificationHead, mask: torch.Tensor) -> tuple[float, float]:
    torch.manual_seed(1)
    total, count = head.loss(head(torch.randn(4, BINS, HIDDEN), "s"), torch.tensor([0, 1, 2, 1]), mask)
    return float(total.detach()), float(count)


def test_loss_on_all_covers_the_visible_trials_while_training_only():
    mask = torch.tensor([True, False, False, True])
    every = _head("mean")
    masked = _head("mean", loss_on="masked")
    masked.load_state_dict(every.state_dict())
    for head in (every, masked):
        head.train()
    total_all, count_all = _loss(every, mask)
    total_masked, count_masked = _loss(masked, mask)
    assert (count_all, count_masked) == (4.0, 2.0)
    assert total_all > total_masked > 0
    assert total_all == pytest.approx(_loss(every, torch.ones(4, dtype=torch.bool))[0])
    every.eval()  # validation and evaluation score the hidden trials only
    assert _loss(every, mask) == pytest.approx((total_masked, count_masked))


def test_an_unknown_loss_on_is_refused():
    with pytest.raises(ValueError, match="loss_on"):
        ClassificationHead.Settings(2, loss_on="visible")


def test_the_mlp_readout_is_a_hidden_gelu_layer_over_the_mean_token():
    head = ClassificationHead("block", HIDDEN, BINS, ClassificationHead.Settings(3, mlp=5))
    head.add_session("s", 1)
    layer = head.layers["s"]
    assert set(layer.state_dict()) == {"hidden.weight", "hidden.bias", "linear.weight", "linear.bias"}
    tokens = torch.randn(4, BINS, HIDDEN)
    expected = layer.linear(torch.nn.functional.gelu(layer.hidden(tokens.mean(dim=1))))
    assert torch.allclose(head(tokens, "s"), expected, atol=1e-6)
    head.start_at_trivial("s", torch.tensor([0, 0, 1, 2]))  # the readout start sets the last bias
    prior = torch.tensor([3.0, 2.0, 2.0]) / 7
    assert torch.allclose(layer.linear.bias, prior.log() - prior.log().mean(), atol=1e-6)


def test_an_mlp_readout_with_the_weighted_pool_is_refused_with_the_fix():
    with pytest.raises(NedsError, match="use pool: mean with it, or mlp: 0"):
        ClassificationHead.Settings(3, pool="weighted", mlp=8)
    with pytest.raises(ValueError, match="mlp"):
        ClassificationHead.Settings(3, mlp=-1)
