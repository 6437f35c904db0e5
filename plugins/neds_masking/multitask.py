"""NEDS multi-task masking: per sample, one of five schemes decides what is hidden.

    encoding        all neural modalities hidden, behaviour shown
    decoding        all behaviour hidden, neural modalities shown
    self_spike      each neural modality hidden at its own random bins, behaviour shown
    self_behaviour  each behaviour hidden at its own random bins, neural modalities shown
    cross_modality  one set of random bins hidden in every dynamic modality at once

Random bins are independent Bernoulli(ratio) draws per bin. A per-trial variable (choice, block)
has no bins: where a scheme hides random bins of it, the variable is hidden with probability
``ratio``, independently per trial. Masks are drawn on the generator's device and moved to the
batch's.

Everything is drawn for the whole batch at once (no loop over samples) and each sample's masks
come from its own scheme and draws, so no sample can share another's mask (the reference used
sample 0's mask for all samples of a scheme). The ratio is the recipe's (the reference ignored
the command line's).
"""

from __future__ import annotations

import attrs
import torch

from neds_framework.model.batch import NEURAL_MODALITIES, Batch, Masks, is_static, mask_from_time
from neds_framework.model.interfaces import Masker

SCHEMES = ("encoding", "decoding", "self_spike", "self_behaviour", "cross_modality")


def _ratio(instance, attribute, value):
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{attribute.name} must be in [0, 1], got {value}")


def _schemes(instance, attribute, value):
    unknown = sorted(set(value) - set(SCHEMES))
    if unknown:
        raise ValueError(f"unknown scheme(s) {', '.join(unknown)}; known: {', '.join(SCHEMES)}")
    if any(p < 0 for p in value.values()) or sum(value.values()) <= 0:
        raise ValueError(f"scheme probabilities must be >= 0 and not all 0, got {dict(value)}")


@attrs.frozen
class MultitaskSettings:
    ratio: float = attrs.field(default=0.3, validator=_ratio)  # reference YAML: 0.3
    # Relative probabilities (normalised); schemes left out are never drawn. Default: uniform.
    schemes: dict[str, float] = attrs.field(factory=lambda: {s: 1.0 for s in SCHEMES}, validator=_schemes)
    neural: tuple[str, ...] = NEURAL_MODALITIES  # every other modality is behaviour


class NedsMultitaskMasker(Masker):
    Settings = MultitaskSettings

    def __init__(self, settings: MultitaskSettings | None = None):
        super().__init__(settings)
        self._probs = torch.tensor([self.settings.schemes.get(s, 0.0) for s in SCHEMES], dtype=torch.float64)

    def draw_schemes(self, size: int, generator: torch.Generator) -> torch.Tensor:
        """(size,) index into SCHEMES per sample."""
        return torch.multinomial(self._probs, size, replacement=True, generator=generator)

    def __call__(self, batch: Batch, generator: torch.Generator) -> Masks:
        b = batch.size
        scheme = self.draw_schemes(b, generator)
        picked = {name: (scheme == i).unsqueeze(-1) for i, name in enumerate(SCHEMES)}  # (B, 1)
        ratio = self.settings.ratio

        def bernoulli(shape):
            return torch.rand(shape, generator=generator) < ratio

        bins = {v.shape[1] for v in batch.values.values() if not is_static(v)}
        if len(bins) > 1:
            raise ValueError(f"modalities of one batch disagree on the number of bins: {sorted(bins)}")
        shared = bernoulli((b, bins.pop())) if bins else None  # the cross-modality bins

        masks = {}
        for name, value in batch.values.items():  # a loop over modalities, not samples
            neural = name in self.settings.neural
            everything = picked["encoding"] if neural else picked["decoding"]
            within = picked["self_spike"] if neural else picked["self_behaviour"]
            shape = (b, 1) if is_static(value) else (b, value.shape[1])
            cross = bernoulli(shape) if is_static(value) else shared
            hidden = everything | (within & bernoulli(shape)) | (picked["cross_modality"] & cross)
            hidden = (hidden.squeeze(-1) if is_static(value) else hidden).to(value.device)
            masks[name] = mask_from_time(name, value, hidden)
        return masks
