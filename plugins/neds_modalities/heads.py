"""Heads: per-session linear readouts and their losses, over masked elements.

Each loss returns (sum over the elements it covers, their number); the model divides per
modality, so one modality's loss is the mean over them, never diluted by the others. The
covered elements are the masked ones, except for the per-trial classification loss, which while
training covers every trial, as the reference's (``ClassificationHead.Settings.loss_on``).
"""

from __future__ import annotations

import attrs
import torch
import torch.nn.functional as F
from torch import nn

from neds_framework.api import Head, NedsError, SessionLayers


def _masked_sum(elements: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    # where, not multiply: an unmasked element (even an inf or NaN) adds exactly 0 and no gradient.
    return torch.where(mask, elements, 0.0).sum(), mask.sum().to(elements.dtype)


def _scale(null_loss: float) -> float:
    """The loss scale of a modality; 1.0 when there is nothing to learn (a constant target),
    where dividing by ~0 would only amplify noise."""
    return float(null_loss) if null_loss > 1e-8 else 1.0


class SpikesHead(Head):
    """Per-session Linear(hidden -> N): log-rates (B, T, N); Poisson NLL with λ = exp(log-rate).

    The loss is `poisson_nll_loss(log_input=True, full=False)` per element (exp(x) - y·x, no
    Stirling term, as the reference), summed over masked elements.

    ``start_rows`` (with the model's ``start_at_trivial``; the biases start at the log mean rates
    either way): ``random`` keeps each neuron's readout row at PyTorch's random start, ``zero``
    starts it at 0, so the model starts exactly at the mean-rate predictor. A random row keeps its
    random part in the directions the data never moves, which buries the tuning that the rows
    learn: on a pool of 8 generated sessions the region probe read 0.55 from random rows and 0.74
    from zero ones (chance 0.39). On single sessions zero rows cost bits per spike (0.003–0.014 in
    3 matched runs), so ``random`` is the default and the pretraining recipes use ``zero``
    (benchmarks/results/region_probe.md).
    """

    @attrs.frozen
    class Settings:
        start_rows: str = attrs.field(default="random", validator=attrs.validators.in_(("random", "zero")))

    def __init__(self, modality, hidden, n_bins, settings=None):
        super().__init__(modality, hidden, n_bins, settings)
        self.layers = SessionLayers(lambda n: nn.Linear(hidden, n), f"{modality} head")

    def add_session(self, session, n_features):
        self.layers.add_session(session, n_features)

    def forward(self, hidden, session):
        return self.layers[session](hidden)

    def loss(self, prediction, target, mask):
        nll = F.poisson_nll_loss(prediction, target, log_input=True, full=False, reduction="none")
        return _masked_sum(nll, mask)

    def predict(self, prediction):
        return prediction.exp()

    @staticmethod
    def _rates(values):
        counts = values.to(torch.float64).reshape(-1, values.shape[-1])
        return counts, torch.nanmean(counts, dim=0).nan_to_num(0.0).clamp(min=1e-3)  # silent: 0.05 Hz at 20 ms

    def null_loss(self, values):
        """The mean-rate predictor's Poisson NLL less the saturated one's (λ = y): half the null
        deviance per element (the Poisson NLL itself is not 0 for a perfect prediction)."""
        y, rate = self._rates(values)
        deviance = torch.where(y > 0, y * torch.log(y.clamp(min=1e-12) / rate), 0.0) - (y - rate)
        return _scale(float(torch.nanmean(deviance)))

    def start_at_trivial(self, session, values):
        with torch.no_grad():
            if self.settings.start_rows == "zero":
                self.layers[session].weight.zero_()
            self.layers[session].bias.copy_(self._rates(values)[1].log())


class RegressionHead(Head):
    """Per-session Linear(hidden -> F) per bin; MSE. (B, T) predictions when F = 1 (wheel,
    whisker), (B, T, F) otherwise (lfp). A (B, T) mask covers every feature of the bin."""

    def __init__(self, modality, hidden, n_bins, settings=None):
        super().__init__(modality, hidden, n_bins, settings)
        self.layers = SessionLayers(lambda n: nn.Linear(hidden, n), f"{modality} head")

    def add_session(self, session, n_features):
        self.layers.add_session(session, n_features)

    def forward(self, hidden, session):
        out = self.layers[session](hidden)
        return out.squeeze(-1) if out.shape[-1] == 1 else out

    def loss(self, prediction, target, mask):
        if target.dim() > mask.dim():
            mask = mask.unsqueeze(-1).expand_as(target)
        return _masked_sum((prediction - target) ** 2, mask)

    def predict(self, prediction):
        return prediction

    @staticmethod
    def _features(values):
        values = values.to(torch.float64)
        flat = values.reshape(-1, values.shape[-1]) if values.dim() == 3 else values.reshape(-1, 1)
        return flat, torch.nanmean(flat, dim=0).nan_to_num(0.0)

    def null_loss(self, values):
        """The mean predictor's MSE: the variance."""
        flat, mean = self._features(values)
        return _scale(float(torch.nanmean((flat - mean) ** 2)))

    def start_at_trivial(self, session, values):
        with torch.no_grad():
            self.layers[session].bias.copy_(self._features(values)[1])


class _WeightedPool(nn.Module):
    """Logits from a learned weighting of the variable's output tokens, one weight per bin, as the
    reference reads its static variables. The weights start at 1 (a sum; the reference draws them
    from U(0, 1)), so every token's output gets the whole gradient of its trial's loss rather than
    1/T of it, and are free (not normalised) from there."""

    def __init__(self, hidden: int, n_bins: int, n_classes: int):
        super().__init__()
        self.weights = nn.Parameter(torch.ones(n_bins))
        self.linear = nn.Linear(hidden, n_classes)

    @property
    def bias(self) -> torch.Tensor:
        return self.linear.bias

    def forward(self, hidden):
        if hidden.shape[1] != self.weights.numel():
            raise NedsError(f"classification head pool 'weighted' needs one token per bin ({self.weights.numel()}), "
                            f"got {hidden.shape[1]}: use the static tokenizer's layout 'expanded', or the head's pool 'mean'")
        return self.linear(torch.einsum("btd,t->bd", hidden, self.weights))


class _MeanPool(nn.Linear):
    """Linear(hidden -> n_classes) of the mean output token (the state-dict keys of a plain Linear)."""

    def forward(self, hidden):
        return super().forward(hidden.mean(dim=1))


class _MeanPoolMLP(nn.Module):
    """The mean output token -> Linear(hidden -> width) -> GELU -> Linear(width -> n_classes): a
    non-linear readout, so a per-trial variable can be carved out of the shared representation by
    the head's own capacity instead of by a larger gradient into the shared layers."""

    def __init__(self, hidden: int, width: int, n_classes: int):
        super().__init__()
        self.hidden = nn.Linear(hidden, width)
        self.linear = nn.Linear(width, n_classes)

    @property
    def bias(self) -> torch.Tensor:
        return self.linear.bias

    def forward(self, hidden):
        return self.linear(F.gelu(self.hidden(hidden.mean(dim=1))))


class ClassificationHead(Head):
    """The variable's output tokens pooled -> per-session Linear(hidden -> n_classes) -> logits;
    cross-entropy averaged over the trials (all of them while training, see ``loss_on``; the
    masked ones in validation and evaluation).

    pool ``mean`` (default): the mean token, which fits both static token layouts (one token, or
    one per bin). pool ``weighted``: a per-session learned weight per token, started at 1, the
    reference's readout. On two generated sessions it traded encoding and wheel/whisker decoding
    for choice and block, or the other way, depending on the static weight and gradient clipping,
    and no setting beat the mean on every metric (benchmarks/results/loss_balance.md, "Per-trial
    readouts"). Under it the readout start sets only the bias; the random weights dominate the
    first logits.

    ``mlp: N`` (with the mean pool) adds a GELU layer of width N before the logits: on the quality
    suite's 4 reference pairs, width 128 on choice and block lifted block balanced accuracy from 0.90
    to 0.96 with the other metrics level or up (the same file, "Weight averaging, the last
    checkpoint and a hidden layer in the per-trial readout").
    """

    @attrs.frozen
    class Settings:
        n_classes: int = attrs.field(validator=attrs.validators.ge(2))  # choice: 2, block: 3
        pool: str = attrs.field(default="mean", validator=attrs.validators.in_(("mean", "weighted")))
        # Which trials the cross-entropy covers while training: `all` (the reference's static loss:
        # visible trials too; better choice decoding in 3 matched runs, block in 2, the rest within
        # the run-to-run spread: benchmarks/results/loss_balance.md) or `masked` (only where the variable is hidden
        # from the input). Validation and evaluation always score the masked trials only, so
        # val_loss keeps its meaning.
        loss_on: str = attrs.field(default="all", validator=attrs.validators.in_(("masked", "all")))
        # Width of a hidden GELU layer between the mean token and the logits (0: the linear readout).
        mlp: int = attrs.field(default=0, validator=attrs.validators.ge(0))

        def __attrs_post_init__(self):
            if self.mlp and self.pool != "mean":
                raise NedsError(f"classification head: mlp {self.mlp} reads the mean token; use pool: mean with it, or mlp: 0")

    def __init__(self, modality, hidden, n_bins, settings: Settings):
        super().__init__(modality, hidden, n_bins, settings)
        n = self.settings.n_classes
        if self.settings.pool == "weighted":
            self.layers = SessionLayers(lambda _: _WeightedPool(hidden, n_bins, n), f"{modality} head")
        elif self.settings.mlp:
            width = self.settings.mlp
            self.layers = SessionLayers(lambda _: _MeanPoolMLP(hidden, width, n), f"{modality} head")
        else:
            self.layers = SessionLayers(lambda _: _MeanPool(hidden, n), f"{modality} head")

    def add_session(self, session, n_features):
        self.layers.add_session(session, n_features)

    def forward(self, hidden, session):
        return self.layers[session](hidden)

    def loss(self, prediction, target, mask):
        if self.training and self.settings.loss_on == "all":
            mask = torch.ones_like(mask)
        return _masked_sum(F.cross_entropy(prediction, target, reduction="none"), mask)

    def predict(self, prediction):
        return prediction.argmax(dim=-1)

    def _prior(self, values):
        n = self.settings.n_classes
        labels = values.reshape(-1).long()
        labels = labels[(labels >= 0) & (labels < n)]
        return labels, (torch.bincount(labels, minlength=n).to(torch.float64) + 1.0) / (labels.numel() + n)  # add-one

    def null_loss(self, values):
        """The class prior's cross-entropy."""
        labels, prior = self._prior(values)
        return _scale(float(-prior.log()[labels].mean())) if labels.numel() else 1.0

    def start_at_trivial(self, session, values):
        log_prior = self._prior(values)[1].log()
        with torch.no_grad():
            self.layers[session].bias.copy_(log_prior - log_prior.mean())
