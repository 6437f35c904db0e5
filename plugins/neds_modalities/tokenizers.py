"""Tokenizers: one token per time bin for binned modalities, one (or one per bin) for per-trial ones.

Every input layer is per session ("stitching", as the reference's StitchEncoder): a small MLP
Linear(F -> expansion·F) -> Softsign -> Linear(expansion·F -> hidden) from the F features of one
bin (F = neurons for spikes, bands for lfp, 1 for wheel or whisker) to one token.
"""

from __future__ import annotations

import attrs
import torch
from torch import nn

from neds_framework.api import NedsError, SessionLayers, TRIAL_TIME, Tokenizer


def stitcher(n_in: int, width: int, hidden: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(n_in, width), nn.Softsign(), nn.Linear(width, hidden))


class BinnedTokenizer(Tokenizer):
    """One token per time bin from (B, T) or (B, T, F) values; registered as `dynamic` and `lfp`.

    The mask is per bin (B, T): a masked bin is one masked token.
    """

    @attrs.frozen
    class Settings:
        expansion: int = attrs.field(default=2, validator=attrs.validators.ge(1))  # stitcher width / F (reference: 2)

    def __init__(self, modality: str, hidden: int, n_bins: int, settings: Settings | None = None):
        super().__init__(modality, hidden, n_bins, settings)
        self.layers = SessionLayers(self._build, f"{modality} tokenizer")
        self.register_buffer("times", torch.arange(n_bins), persistent=False)

    def _build(self, n_features: int) -> nn.Module:
        return stitcher(n_features, self.settings.expansion * n_features, self.hidden)

    def add_session(self, session: str, n_features: int) -> None:
        self.layers.add_session(session, n_features)

    def token_times(self) -> torch.Tensor:
        return self.times

    def _check_bins(self, values: torch.Tensor) -> None:
        if values.dim() < 2 or values.shape[1] != self.n_bins:
            raise NedsError(f"{self.modality}: expected {self.n_bins} time bins on axis 1, got shape {tuple(values.shape)}")

    def embed(self, values, mask, session):
        self._check_bins(values)
        features = values if values.dim() == 3 else values.unsqueeze(-1)
        return self.layers[session](features), mask


class SpikesTokenizer(BinnedTokenizer):
    """One token per time bin from the population vector of spike counts (B, T, N).

    The mask is per element (B, T, N). A bin whose neurons are all masked is a masked token. With
    ``element_masks`` on, a bin with only some neurons masked stays a visible token: the masked
    counts are zeroed and the mask itself is a second input channel (so the model can tell "0
    spikes" from "hidden"), at the price of a first layer twice as wide. Off (the default, enough
    for NEDS's time masks), such partial masks are an error rather than a silent leak of zeros.
    """

    @attrs.frozen
    class Settings:
        expansion: int = attrs.field(default=2, validator=attrs.validators.ge(1))
        element_masks: bool = False

    def _build(self, n_features: int) -> nn.Module:
        n_in = 2 * n_features if self.settings.element_masks else n_features
        return stitcher(n_in, self.settings.expansion * n_features, self.hidden)

    def embed(self, values, mask, session):
        self._check_bins(values)
        if values.dim() != 3 or mask.shape != values.shape:
            shapes = f"{tuple(values.shape)} and {tuple(mask.shape)}"
            raise NedsError(f"spikes: expected counts and mask of the same shape (B, T, N), got {shapes}")
        masked = mask.all(dim=-1)
        if self.settings.element_masks:
            values = torch.cat((values, mask.to(values.dtype)), dim=-1)
        elif not torch.equal(mask.any(dim=-1), masked):
            raise NedsError("spikes: the mask hides some neurons of a bin; set element_masks: true on the spikes tokenizer")
        return self.layers[session](values), masked


class StaticTokenizer(Tokenizer):
    """Tokens for a per-trial class variable (B,) int64 (choice, block).

    layout ``expanded`` (default): the reference's n_bins tokens, one per bin: the class index (as
    a number) goes through a per-session Linear(1 -> 2·n_bins), is cut into n_bins pairs, then
    Softsign and Linear(2 -> hidden).
    layout ``compact``: the same with one pair: one token per trial, at the trial-level time
    `TRIAL_TIME`. The NEDS step trains 1.8-2.0x as fast (302 instead of 500 tokens per trial at the
    reference's size; benchmarks/results/train_step.md), but on the layout quality benchmark
    (benchmarks/results/model_choices.md) it scored lower: encoding 0.029 vs 0.067 bits/spike and
    block accuracy 0.91 vs 0.95, a gap that longer training did not close. The default is
    therefore the reference's layout; compact is the fast option.
    """

    @attrs.frozen
    class Settings:
        layout: str = attrs.field(default="expanded", validator=attrs.validators.in_(("compact", "expanded")))

    def __init__(self, modality: str, hidden: int, n_bins: int, settings: Settings | None = None):
        super().__init__(modality, hidden, n_bins, settings)
        times = torch.arange(n_bins) if self.settings.layout == "expanded" else torch.tensor([TRIAL_TIME])
        self.register_buffer("times", times, persistent=False)
        self.layers = SessionLayers(self._build, f"{modality} tokenizer")

    def _build(self, n_features: int) -> nn.Module:
        if n_features != 1:
            raise NedsError(f"{self.modality}: a per-trial variable has 1 feature, got {n_features}")
        n = self.times.numel()
        return nn.Sequential(nn.Linear(1, 2 * n), nn.Unflatten(-1, (n, 2)), nn.Softsign(), nn.Linear(2, self.hidden))

    def add_session(self, session: str, n_features: int) -> None:
        self.layers.add_session(session, n_features)

    def token_times(self) -> torch.Tensor:
        return self.times

    def embed(self, values, mask, session):
        if values.dim() != 1:
            raise NedsError(f"{self.modality}: expected one class index per trial (B,), got shape {tuple(values.shape)}")
        embeddings = self.layers[session](values.to(torch.float32).unsqueeze(-1))
        return embeddings, mask.unsqueeze(-1).expand(-1, self.times.numel())
