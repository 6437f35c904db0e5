"""The public plugin API of the model: tokenizers, heads and maskers.

A modality reaches the transformer through a `Tokenizer` and leaves it through a `Head`; a
`Masker` decides, per sample, what is hidden. Plugins subclass these and register them under
the `tokenizers`, `heads` and `maskers` registries (`neds_framework.hookspecs`). The engine
constructs tokenizers and heads as ``factory(modality, hidden, n_bins, settings)`` and maskers as
``factory(settings)``, where ``settings`` is the plugin's attrs settings instance from the recipe.

Per-session layers ("stitching": sessions differ in neuron count) are added after construction
with ``add_session(session, n_features)``, any time, so a trained model can be finetuned on new
sessions. `neds_framework.model.nn.session_layers.SessionLayers` is the container for them.
"""

from __future__ import annotations

import abc
from typing import Any

import attrs
import torch
from torch import nn

from neds_framework.errors import NedsError
from neds_framework.modality import ModalitySpec
from neds_framework.model.batch import Batch, Masks

#: Time index of a trial-level token (one that stands for the whole trial, e.g. a compact
#: static token). The model gives it its own learned time embedding (row ``n_bins``) and rotary
#: position 0 (no rotation), so it is not tied to any one bin.
TRIAL_TIME = -1


@attrs.frozen(eq=False)
class Tokens:
    """What a tokenizer hands the transformer.

    embeddings: (B, L, H) one vector per token, masked tokens already replaced by the mask
                embedding.
    times:      (L,) long, the time bin of each token (0..n_bins-1), or `TRIAL_TIME`.
    masked:     (B, L) bool, which tokens are hidden (their embedding is the mask embedding).
    """

    embeddings: torch.Tensor
    times: torch.Tensor
    masked: torch.Tensor


def _settings_or_default(cls: type, settings: Any) -> Any:
    if settings is not None:
        return settings
    default = getattr(cls, "Settings", None)
    return default() if default is not None else None


def _broadcast_mask(mask: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """A (B, T) mask over (B, T, F) values hides every feature of the bin."""
    return mask.reshape(mask.shape + (1,) * (values.dim() - mask.dim()))


class _ModalityModule(nn.Module, metaclass=abc.ABCMeta):
    """What tokenizers and heads share: the engine builds both as ``factory(modality, hidden,
    n_bins, settings)``, settings defaulting to the class's ``Settings()``."""

    def __init__(self, modality: str, hidden: int, n_bins: int, settings: Any = None):
        super().__init__()
        self.modality = modality
        self.hidden = hidden
        self.n_bins = n_bins
        self.settings = _settings_or_default(type(self), settings)


class Tokenizer(_ModalityModule):
    """Turns one modality of a batch into tokens.

    Subclasses implement `add_session`, `token_times` and `embed`. The base class guarantees the
    masking contract, so a subclass cannot break it by accident: `forward` zeroes every masked
    input value before `embed` sees it, then puts the learned `mask_embedding` in place of every
    token `embed` reports as masked. A masked value therefore influences nothing downstream.
    """

    def __init__(self, modality: str, hidden: int, n_bins: int, settings: Any = None):
        super().__init__(modality, hidden, n_bins, settings)
        # Zeros, as the reference's mask token: the modality/time/session embeddings added by the
        # model are what tell masked tokens apart at the start of training.
        self.mask_embedding: nn.Parameter | None = nn.Parameter(torch.zeros(hidden))

    @abc.abstractmethod
    def add_session(self, session: str, n_features: int) -> None:
        """Add the input layers of one session; ``n_features`` is the input width of a bin
        (neurons for spikes, bands for lfp, 1 for scalar and per-trial modalities)."""

    @abc.abstractmethod
    def token_times(self) -> torch.Tensor:
        """(L,) long: the time index of each token this tokenizer makes (see `TRIAL_TIME`)."""

    @abc.abstractmethod
    def embed(self, values: torch.Tensor, mask: torch.Tensor, session: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(embeddings (B, L, H), token mask (B, L) bool) from values whose masked entries are 0.

        ``mask`` is the element mask of the modality (see `neds_framework.model.batch`). A token
        whose inputs are all masked must be reported masked; a token with only some masked inputs
        (element masks) may stay visible, if the tokenizer tells the model which inputs are gone.
        """

    def n_tokens(self) -> int:
        return int(self.token_times().numel())

    def forward(self, values: torch.Tensor, mask: torch.Tensor, session: str) -> Tokens:
        visible = values.masked_fill(_broadcast_mask(mask, values), 0)
        embeddings, masked = self.embed(visible, mask, session)
        if self.mask_embedding is not None:
            embeddings = torch.where(masked.unsqueeze(-1), self.mask_embedding, embeddings)
        elif bool(masked.any()):
            raise NedsError(f"tokenizer of '{self.modality}' was told it is never masked, but got a mask hiding some of it")
        return Tokens(embeddings=embeddings, times=self.token_times(), masked=masked)

    def mask_tokens(self, batch_size: int) -> Tokens:
        """All tokens hidden, without reading values or per-session layers (an output-only
        modality: spikes in an encoding-only model)."""
        times = self.token_times()
        embeddings = self.mask_embedding.expand(batch_size, times.numel(), self.hidden)
        masked = torch.ones(batch_size, times.numel(), dtype=torch.bool, device=times.device)
        return Tokens(embeddings=embeddings, times=times, masked=masked)

    def drop_mask_embedding(self) -> None:
        """The model calls this for a modality it never masks (the inputs of encoding-only and
        decoding-only models), so that every parameter it holds is one that trains."""
        self.mask_embedding = None


class Head(_ModalityModule):
    """Reads one modality out of the transformer's output tokens of that modality.

    Predictions: spikes (B, T, N) log-rates; dynamic (B, T) values ((B, T, F) when a bin has F
    features); static (B, C) logits. Losses cover the masked elements (a head may also cover visible ones
    while ``self.training``, never in evaluation) and are returned as (sum, count) so the model
    can normalise per modality and weight modalities.
    """

    @abc.abstractmethod
    def add_session(self, session: str, n_features: int) -> None:
        """Add the output layers of one session (``n_features`` as for `Tokenizer.add_session`)."""

    @abc.abstractmethod
    def forward(self, hidden: torch.Tensor, session: str) -> torch.Tensor:
        """Prediction from the (B, L, H) output tokens of this modality."""

    @abc.abstractmethod
    def loss(self, prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(summed loss, number of elements summed) over the elements where ``mask`` is True."""

    @abc.abstractmethod
    def predict(self, prediction: torch.Tensor) -> torch.Tensor:
        """What metrics consume: spike rates λ per bin, behaviour values, or class labels."""

    # Both below get one session's training-split values of this modality, batch-shaped
    # ((K, T, N), (K, T) or (K,)); the model calls them once per session before training.

    def null_loss(self, values: torch.Tensor) -> float:
        """The loss per element of the trivial predictor (mean rate, mean value, class prior)
        less that of a perfect one. The model divides this modality's loss by it, so that every
        modality's loss starts near 1 whatever its units. The default, 1.0, leaves it as it is."""
        return 1.0

    def start_at_trivial(self, session: str, values: torch.Tensor) -> None:
        """Start this session's readout at the trivial predictor (its bias), so training begins
        at the mean instead of climbing to it. The default changes nothing."""


class Masker(metaclass=abc.ABCMeta):
    """Draws, per sample, which inputs are hidden (and become prediction targets).

    Must be vectorised over samples (no Python loop over the batch) and draw every random number
    from ``generator``, so a seeded run draws the same masks again.
    """

    def __init__(self, settings: Any = None):
        self.settings = _settings_or_default(type(self), settings)

    @abc.abstractmethod
    def __call__(self, batch: Batch, generator: torch.Generator) -> Masks:
        """One mask per modality of the batch, shaped as `neds_framework.model.batch` says."""


@attrs.frozen(eq=False)
class ModalityParts:
    """One modality of a model as the engine built it from the recipe."""

    tokenizer: Tokenizer
    head: Head
    spec: ModalitySpec  # what the modality is (its plugin's declaration)
    weight: float = 1.0


@attrs.frozen(eq=False)
class ModelOutput:
    """What a model's forward returns.

    predictions: raw head outputs per output modality (`Head.forward`).
    losses:      per output modality, (summed loss, count) over masked elements.
    loss:        Σ weight · sum / count over the modalities (a modality with count 0 adds 0).
    masks:       the masks the model actually used (in encoding/decoding modes, the role masks).
    """

    predictions: dict[str, torch.Tensor]
    losses: dict[str, tuple[torch.Tensor, torch.Tensor]]
    loss: torch.Tensor
    masks: Masks
