"""What the model eats: a batch of trials of one session, and the masks drawn for it.

Shapes (B trials, T time bins, N neurons, F features):

    element-masked   (B, T, N) float32 (spike counts)
    per bin          (B, T, F) or (B, T) float32 (band power; wheel speed, any scalar per bin)
    per trial        (B,)      int64 class indices (or float32 values)

`Masks` hold one bool tensor per modality, True = hidden from the input AND a prediction target:
(B, T, N) for element-masked modalities (spikes: so neuron- and region-masking schemes fit the
same contract), (B,) for per-trial modalities, (B, T) for everything else. Which is which comes
from each modality's `ModalitySpec`, carried by the batch; `Batch.mask_from_time` builds the
right shape from a per-bin mask, so a masker never special-cases a modality by hand.
"""

from __future__ import annotations

from typing import Mapping

import attrs
import torch

from neds_framework.errors import NedsError
from neds_framework.modality import ModalitySpec

Masks = dict[str, torch.Tensor]


@attrs.frozen
class Batch:
    """Trials of ONE session (each session has its own input and output layers).

    values holds modalities only: ground truth or trial metadata travel elsewhere, since a
    masker or the model treats every key here as something to hide or show.
    specs: the `ModalitySpec` of each modality in values (what it is: neural or behaviour, per
    bin or per trial, token- or element-masked).
    regions: optional (N,) long, the brain region of each neuron as a code (0..R-1) within the
    session, for region-based masking and evaluation.
    """

    session: str
    values: dict[str, torch.Tensor]
    specs: Mapping[str, ModalitySpec]
    regions: torch.Tensor | None = None

    def __attrs_post_init__(self):
        missing = [name for name in self.values if name not in self.specs]
        if missing:
            raise NedsError(f"batch of session '{self.session}': no modality spec for {', '.join(missing)}; "
                            "a plugin declares each modality with neds_register_modalities")

    @property
    def size(self) -> int:
        return next(iter(self.values.values())).shape[0]

    @property
    def neural(self) -> tuple[str, ...]:
        """The batch's neural modalities (the rest is behaviour)."""
        return tuple(name for name in self.values if self.specs[name].neural)

    def with_values(self, values: dict[str, torch.Tensor]) -> "Batch":
        return Batch(session=self.session, values=values, specs=self.specs, regions=self.regions)

    def mask_from_time(self, name: str, time_mask: torch.Tensor) -> torch.Tensor:
        return mask_from_time(self.specs[name], self.values[name], time_mask)

    def full_mask(self, name: str, hidden: bool) -> torch.Tensor:
        return full_mask(self.specs[name], self.values[name], hidden)


def is_static(value: torch.Tensor) -> bool:
    """A per-trial modality: one value per trial, no time axis."""
    return value.dim() == 1


def n_features(value: torch.Tensor) -> int:
    """Input width of one time bin (what `add_session` needs): N or F for 3-D modalities, else 1."""
    return value.shape[-1] if value.dim() == 3 else 1


def session_features(values: dict[str, torch.Tensor]) -> dict[str, int]:
    """`n_features` of every modality of a batch (or of a session's trial-major arrays)."""
    return {name: n_features(value) for name, value in values.items()}


def mask_from_time(spec: ModalitySpec, value: torch.Tensor, time_mask: torch.Tensor) -> torch.Tensor:
    """The mask of a modality from a (B, T) mask over bins ((B,) for per-trial modalities).

    Element-masked modalities get the bin mask broadcast over their last axis as a view, so
    building a (B, T, N) spike mask costs no memory.
    """
    if spec.element_masked and value.dim() == 3:
        return time_mask.unsqueeze(-1).expand(value.shape)
    return time_mask


def full_mask(spec: ModalitySpec, value: torch.Tensor, hidden: bool) -> torch.Tensor:
    """A mask hiding all (hidden=True) or none (False) of a modality."""
    b = value.shape[0]
    shape = (b,) if is_static(value) else (b, value.shape[1])
    return mask_from_time(spec, value, torch.full(shape, hidden, dtype=torch.bool, device=value.device))
