"""`mixture`: per sample, one of several registered maskers, drawn with the recipe's probabilities.

    masker:
      name: mixture
      schemes: {neds_multitask: 0.5, neuron: 0.25, inter_region: 0.25}   # relative probabilities
      options: {neuron: {ratio: 0.2}}                                    # settings of any of them

Every listed masker (built-in or from another plugin) draws masks for the whole batch; each
sample then keeps the masks of its own drawn masker. The loop is over maskers, never samples.
"""

from __future__ import annotations

from typing import Any

import attrs
import torch

from neds_framework.api import Batch, Masker, Masks, NedsError, SettingsError, get_plugins, structure_settings


def _probabilities(instance, attribute, value):
    if not value:
        raise ValueError("name at least one masker, e.g. {neds_multitask: 0.5, neuron: 0.5}")
    if any(p < 0 for p in value.values()) or sum(value.values()) <= 0:
        raise ValueError(f"probabilities must be >= 0 and not all 0, got {dict(value)}")
    if "mixture" in value:
        raise ValueError("a mixture cannot contain itself")


@attrs.frozen
class MixtureSettings:
    schemes: dict[str, float] = attrs.field(factory=lambda: {"neds_multitask": 1.0}, validator=_probabilities)
    options: dict[str, dict[str, Any]] = attrs.field(factory=dict)  # masker name -> its settings

    def check_nested(self, registries) -> None:
        """Every member is a registered masker and its options structure into its settings,
        as `MixtureMasker` will build them (called by the recipe, so `validate` sees it)."""
        for name in self.schemes:
            if name not in registries.maskers:
                raise SettingsError(registries.maskers.unknown_message(name), ("schemes", name))
        for name, options in self.options.items():
            if name not in self.schemes:
                raise SettingsError(f"not among the mixture's schemes ({', '.join(self.schemes)})", ("options", name))
            member_settings(name, options, registries)


def member_settings(name: str, options: dict[str, Any], registries):
    """A member masker's settings from its options mapping (key paths under ``options.<name>``)."""
    entry = registries.maskers.get(name)
    if entry.settings is None:
        if options:
            raise SettingsError(f"masker '{name}' takes no settings", ("options", name))
        return None
    return structure_settings(options or {}, entry.settings, registries, ("options", name))


def _registries():
    return get_plugins().registries


def build_masker(name: str, options: dict[str, Any], registries) -> Masker:
    """A registered masker with its settings structured from a plain mapping."""
    try:
        settings = member_settings(name, options, registries)
    except SettingsError as exc:
        raise NedsError(f"masker.{'.'.join(str(k) for k in exc.keypath)}: {exc}") from None
    return registries.maskers.get(name).factory(settings)


class MixtureMasker(Masker):
    Settings = MixtureSettings

    def __init__(self, settings: MixtureSettings | None = None, registries=None):
        super().__init__(settings)
        registries = registries or _registries()
        try:
            self.settings.check_nested(registries)
        except SettingsError as exc:
            raise NedsError(f"masker.{'.'.join(str(k) for k in exc.keypath)}: {exc}") from None
        self.names = list(self.settings.schemes)
        self.maskers = [build_masker(n, self.settings.options.get(n, {}), registries) for n in self.names]
        self._probs = torch.tensor([float(self.settings.schemes[n]) for n in self.names], dtype=torch.float64)

    def __call__(self, batch: Batch, generator: torch.Generator) -> Masks:
        b = batch.size
        pick = torch.multinomial(self._probs, b, replacement=True, generator=generator)
        drawn = [masker(batch, generator) for masker in self.maskers]
        rows = torch.arange(b)
        masks = {}
        for name, value in batch.values.items():
            stacked = torch.stack([d[name].to(value.device) for d in drawn])  # (K, B, ...)
            masks[name] = stacked[pick.to(value.device), rows.to(value.device)]
        return masks
