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

from neds_framework.api import Batch, Masker, Masks, is_static

SCHEMES = ("encoding", "decoding", "self_spike", "self_behaviour", "cross_modality")


def _schemes(instance, attribute, value):
    unknown = sorted(set(value) - set(SCHEMES))
    if unknown:
        raise ValueError(f"unknown scheme(s) {', '.join(unknown)}; known: {', '.join(SCHEMES)}")
    if any(p < 0 for p in value.values()) or sum(value.values()) <= 0:
        raise ValueError(f"scheme probabilities must be >= 0 and not all 0, got {dict(value)}")


@attrs.frozen
class MultitaskSettings:
    ratio: float = attrs.field(default=0.3, validator=[attrs.validators.ge(0.0), attrs.validators.le(1.0)])  # reference YAML: 0.3
    # Relative probabilities (normalised); schemes left out are never drawn. Default: uniform.
    schemes: dict[str, float] = attrs.field(factory=lambda: {s: 1.0 for s in SCHEMES}, validator=_schemes)
    # The modalities treated as neural (every other one is behaviour); empty: those whose spec says so.
    neural: tuple[str, ...] = ()


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
        neural_names = self.settings.neural or batch.neural
        for name, value in batch.values.items():  # a loop over modalities, not samples
            neural = name in neural_names
            everything = picked["encoding"] if neural else picked["decoding"]
            within = picked["self_spike"] if neural else picked["self_behaviour"]
            shape = (b, 1) if is_static(value) else (b, value.shape[1])
            cross = bernoulli(shape) if is_static(value) else shared
            hidden = everything | (within & bernoulli(shape)) | (picked["cross_modality"] & cross)
            hidden = (hidden.squeeze(-1) if is_static(value) else hidden).to(value.device)
            masks[name] = batch.mask_from_time(name, hidden)
        return masks
