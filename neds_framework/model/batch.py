"""What the model eats: a batch of trials of one session, and the masks drawn for it.

Shapes (B trials, T time bins, N neurons, F features):

    spikes           (B, T, N) float32 spike counts
    lfp              (B, T, F) float32 band-power features
    wheel, whisker   (B, T)    float32 (and any other scalar-per-bin behaviour)
    choice, block    (B,)      int64 class indices (and any other per-trial variable)

`Masks` hold one bool tensor per modality, True = hidden from the input AND a prediction target:
(B, T, N) for spikes (element masks, so neuron- and region-masking schemes fit the same
contract), (B,) for per-trial modalities, (B, T) for everything else. `mask_from_time` builds
the right shape from a per-bin mask, so a masker never special-cases a modality by hand.
"""

from __future__ import annotations

import attrs
import torch

Masks = dict[str, torch.Tensor]

#: Neural modalities (everything else is behaviour). Encoding predicts these from behaviour;
#: decoding predicts behaviour from these. Maskers, the model's modes and the evaluation masks
#: take this as their default.
NEURAL_MODALITIES = ("spikes", "lfp")

#: Modalities masked per element (B, T, N) rather than per token (B, T).
ELEMENT_MASKED = ("spikes",)


@attrs.frozen
class Batch:
    """Trials of ONE session (each session has its own input and output layers).

    values holds modalities only: ground truth or trial metadata travel elsewhere, since a
    masker or the model treats every key here as something to hide or show.
    regions: optional (N,) long, the brain region of each neuron as a code (0..R-1) within the
    session, for region-based masking and evaluation.
    """

    session: str
    values: dict[str, torch.Tensor]
    regions: torch.Tensor | None = None

    @property
    def size(self) -> int:
        return next(iter(self.values.values())).shape[0]

    def with_values(self, values: dict[str, torch.Tensor]) -> "Batch":
        return Batch(session=self.session, values=values, regions=self.regions)


def is_static(value: torch.Tensor) -> bool:
    """A per-trial modality: one value per trial, no time axis."""
    return value.dim() == 1


def n_features(value: torch.Tensor) -> int:
    """Input width of one time bin (what `add_session` needs): N or F for 3-D modalities, else 1."""
    return value.shape[-1] if value.dim() == 3 else 1


def session_features(values: dict[str, torch.Tensor]) -> dict[str, int]:
    """`n_features` of every modality of a batch (or of a session's trial-major arrays)."""
    return {name: n_features(value) for name, value in values.items()}


def mask_from_time(name: str, value: torch.Tensor, time_mask: torch.Tensor) -> torch.Tensor:
    """The mask of modality `name` from a (B, T) mask over bins ((B,) for per-trial modalities).

    Element-masked modalities get the bin mask broadcast over their last axis as a view, so
    building a (B, T, N) spike mask costs no memory.
    """
    if is_static(value):
        return time_mask
    if name in ELEMENT_MASKED:
        return time_mask.unsqueeze(-1).expand(value.shape)
    return time_mask


def full_mask(name: str, value: torch.Tensor, hidden: bool) -> torch.Tensor:
    """A mask hiding all (hidden=True) or none (False) of modality `name`."""
    b = value.shape[0]
    shape = (b,) if is_static(value) else (b, value.shape[1])
    return mask_from_time(name, value, torch.full(shape, hidden, dtype=torch.bool, device=value.device))
