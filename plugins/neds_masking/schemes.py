"""Single masking schemes: temporal, random, causal, neuron, inter-region, intra-region.

Each hides part of the modalities it names (``modalities``, default spikes) and shows everything
else. Shapes follow `neds_framework.model.batch`: spikes masks are (B, T, N) element masks, other
binned modalities (B, T), per-trial ones (B,).

    temporal      whole bins (all neurons), Bernoulli(ratio) per bin; with ``expand_prob`` a
                  sample's masked bins grow into spans of up to ``max_span`` bins (the seed rate
                  is divided by the span so the masked share stays near ``ratio``)
    random        single elements (neuron x bin), Bernoulli(ratio)
    causal        every bin from a per-sample cut point on (the masked share is uniform in
                  [0, 2·ratio], so ``ratio`` on average); ``horizon: k`` masks exactly the last k bins
    neuron        whole neurons over all bins, Bernoulli(ratio) per neuron (co-smoothing)
    inter_region  every neuron of ``regions`` randomly chosen brain regions of the session
    intra_region  a ``ratio`` share of the neurons of one randomly chosen region (the rest of it,
                  and every other region, stay visible)

Every sample hides at least one unit of the scheme (bin, element, neuron, region) and shows at
least one: a draw that hid none or all has one random unit flipped, unless ``allow_degenerate``
is set. (Causal and region draws are never degenerate by construction; inter_region refuses a
session whose neurons all lie in one region.) Neuron and
region schemes need the spikes tokenizer's ``element_masks: true`` (a bin with some neurons
hidden stays a visible token whose hidden counts are zeroed and flagged); region schemes need the
batch's per-neuron region codes, which the engine attaches from the store.
"""

from __future__ import annotations

import attrs
import torch

from neds_framework.api import Batch, Masker, Masks, NedsError, is_static
from neds_masking import draw


@attrs.frozen
class SchemeSettings:
    ratio: float = attrs.field(default=0.3, validator=[attrs.validators.gt(0.0), attrs.validators.lt(1.0)])
    # What the scheme hides; every other modality is shown. Empty: the element-masked ones (spikes).
    modalities: tuple[str, ...] = ()
    allow_degenerate: bool = False  # allow samples that hide nothing or everything


class _Scheme(Masker):
    """Shared frame: shown modalities get all-visible masks; `_draw` makes the hidden ones."""

    Settings = SchemeSettings
    #: Whether the scheme hides parts of a bin (needs element masks on spikes).
    per_neuron = False

    def __call__(self, batch: Batch, generator: torch.Generator) -> Masks:
        masks = {}
        hidden = self.settings.modalities or tuple(n for n in batch.values if batch.specs[n].element_masked)
        for name, value in batch.values.items():
            if name not in hidden:
                masks[name] = batch.full_mask(name, False)
                continue
            masks[name] = self._draw(name, value, batch, generator).to(value.device)
        return masks

    def _repair(self, units: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Flip one unit (bin, neuron, element) of samples that hide none or all of theirs, at the
        scheme's own level, so the repaired mask keeps the scheme's structure."""
        return units if self.settings.allow_degenerate else draw.ensure_some_masked_and_visible(units, generator)

    def _draw(self, name: str, value: torch.Tensor, batch: Batch, generator: torch.Generator) -> torch.Tensor:
        raise NotImplementedError

    @staticmethod
    def _expand_time(batch: Batch, name: str, time_mask: torch.Tensor) -> torch.Tensor:
        """A (B, T) bin mask in the modality's shape (materialised: later fix-ups write to it)."""
        mask = batch.mask_from_time(name, time_mask)
        return mask.clone() if mask is not time_mask else mask

    def _need_neurons(self, name: str, value: torch.Tensor) -> None:
        if value.dim() != 3:
            raise NedsError(f"masker '{self.name}' hides neurons; modality '{name}' has no neuron axis (shape {tuple(value.shape)})")


# --------------------------------------------------------------------------- time schemes


@attrs.frozen
class TemporalSettings(SchemeSettings):
    expand_prob: float = attrs.field(default=0.0, validator=attrs.validators.ge(0))  # share of samples whose bins grow into spans
    max_span: int = attrs.field(default=5, validator=attrs.validators.ge(1))


class TemporalMasker(_Scheme):
    name = "temporal"
    Settings = TemporalSettings

    def _draw(self, name, value, batch, generator):
        b = value.shape[0]
        if is_static(value):
            return draw.bernoulli((b,), self.settings.ratio, generator)  # a per-trial variable: hidden or not
        t = value.shape[1]
        s = self.settings
        expand = draw.bernoulli((b,), s.expand_prob, generator) if s.expand_prob > 0 else torch.zeros(b, dtype=torch.bool)
        lengths = torch.where(expand, torch.randint(1, s.max_span + 1, (b,), generator=generator), 1)
        seeds = torch.rand((b, t), generator=generator) < (s.ratio / lengths).unsqueeze(1)
        return self._expand_time(batch, name, self._repair(draw.spans(seeds, lengths), generator))


class RandomMasker(_Scheme):
    name = "random"

    def _draw(self, name, value, batch, generator):
        # Spikes per element; other modalities per bin (lfp's bands share their bin's token).
        shape = value.shape if batch.specs[name].element_masked or value.dim() <= 2 else value.shape[:2]
        mask = draw.bernoulli(shape, self.settings.ratio, generator)
        return mask if is_static(value) else self._repair(mask, generator)


@attrs.frozen
class CausalSettings(SchemeSettings):
    horizon: int = attrs.field(default=0, validator=attrs.validators.ge(0))  # > 0: always the last `horizon` bins


class CausalMasker(_Scheme):
    name = "causal"
    Settings = CausalSettings

    def _draw(self, name, value, batch, generator):
        if is_static(value):
            raise NedsError(f"masker 'causal' hides bins; '{name}' is a per-trial variable with none")
        b, t = value.shape[:2]
        if self.settings.horizon:
            if self.settings.horizon >= t:
                raise NedsError(f"masker 'causal': horizon {self.settings.horizon} leaves no visible bin of {t}")
            hidden = torch.full((b,), self.settings.horizon)
        else:
            share = torch.rand(b, generator=generator) * 2 * self.settings.ratio
            hidden = (share * t).round().long().clamp(1, t - 1)
        cut = (t - hidden).unsqueeze(1)
        return self._expand_time(batch, name, torch.arange(t).unsqueeze(0) >= cut)


# --------------------------------------------------------------------------- neuron schemes


class NeuronMasker(_Scheme):
    name = "neuron"
    per_neuron = True

    def _draw(self, name, value, batch, generator):
        self._need_neurons(name, value)
        b, t, n = value.shape
        neurons = self._repair(draw.bernoulli((b, n), self.settings.ratio, generator), generator)
        return neurons.unsqueeze(1).expand(b, t, n).clone()


def _regions_of(batch: Batch, masker: str, n: int) -> tuple[torch.Tensor, int]:
    codes = batch.regions
    if codes is None:
        raise NedsError(f"masker '{masker}' needs the region of each neuron; the batch of session '{batch.session}' has none")
    codes = codes.cpu().long()
    if codes.shape != (n,):
        raise NedsError(f"masker '{masker}': {codes.shape[0]} region labels for {n} neurons in session '{batch.session}'")
    return codes, int(codes.max()) + 1 if n else 0


@attrs.frozen
class InterRegionSettings(SchemeSettings):
    regions: int = attrs.field(default=1, validator=attrs.validators.ge(1))  # regions hidden per sample


class InterRegionMasker(_Scheme):
    name = "inter_region"
    Settings = InterRegionSettings
    per_neuron = True

    def _draw(self, name, value, batch, generator):
        self._need_neurons(name, value)
        b, t, n = value.shape
        codes, n_regions = _regions_of(batch, self.name, n)
        present = torch.bincount(codes, minlength=n_regions) > 0
        n_present = int(present.sum())
        if n_present < 2 and not self.settings.allow_degenerate:
            raise NedsError(
                f"masker 'inter_region': session '{batch.session}' has neurons in one region only, so hiding a "
                f"region hides every neuron; use intra_region for it, or set allow_degenerate: true"
            )
        k = min(self.settings.regions, max(n_present - 1, 1))  # at least one region stays visible
        chosen = draw.choose_k((b, n_regions), torch.full((b,), k), generator, present.expand(b, n_regions))
        return chosen[:, codes].unsqueeze(1).expand(b, t, n).clone()


class IntraRegionMasker(_Scheme):
    name = "intra_region"
    per_neuron = True

    def _draw(self, name, value, batch, generator):
        self._need_neurons(name, value)
        b, t, n = value.shape
        codes, n_regions = _regions_of(batch, self.name, n)
        sizes = torch.bincount(codes, minlength=n_regions)
        region = draw.choose_k((b, n_regions), torch.ones(b, dtype=torch.long), generator, (sizes > 0).expand(b, n_regions))
        region = region.float().argmax(dim=1)  # (B,) the chosen region
        members = codes.unsqueeze(0) == region.unsqueeze(1)  # (B, N)
        size = sizes[region]
        # ratio of the region, at least one neuron, and one left visible when the region has two or more.
        k = (size.float() * self.settings.ratio).round().long().clamp(min=1)
        k = torch.where(size > 1, k.minimum(size - 1), k)
        hidden = draw.choose_k((b, n), k, generator, members)
        return hidden.unsqueeze(1).expand(b, t, n).clone()
