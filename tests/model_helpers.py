"""Tiny models, hand-made batches and plugin registries for the model and masking tests."""

from __future__ import annotations

import torch

from neds_framework.contracts import CHECKS
from neds_framework.model import registration
from neds_framework.model.batch import Batch, session_features
from neds_framework.model.neds import Neds
from neds_framework.registry import REGISTRY_NAMES, Provider, Registries
from neds_masking import plugin as masking_plugin
from neds_modalities import plugin as modalities_plugin
from neds_modalities.parts import builtin_parts
from neds_modalities.plugin import MODALITIES as SPECS

HIDDEN, BINS = 32, 12
ALL_MODALITIES = ("spikes", "lfp", "wheel", "whisker", "choice", "block")
CLASSES = {"choice": 2, "block": 3}


def registries_with(*plugins: tuple[str, object]) -> Registries:
    """Registries filled by calling each (name, plugin)'s hooks, as the plugin manager does
    (until pyproject declares the built-ins' entry points, tests cannot load them by entry point)."""
    regs = Registries(CHECKS)
    for name, plugin in plugins:
        for kind in REGISTRY_NAMES:
            hook = getattr(plugin, f"neds_register_{kind}", None)
            if hook is not None:
                hook(regs.register_function(kind, Provider(plugin=name)))
    return regs


def model_registries(*extra: tuple[str, object]) -> Registries:
    return registries_with(
        ("neds_model", registration),
        ("neds_modalities", modalities_plugin),
        ("neds_masking", masking_plugin),
        *extra,
    )


def tiny_parts(modalities=ALL_MODALITIES, hidden=HIDDEN, bins=BINS, layout="compact", element_masks=False) -> dict:
    return builtin_parts(modalities, hidden, bins, layout=layout, element_masks=element_masks)


def tiny_model(modalities=ALL_MODALITIES, mode="mm", layout="compact", element_masks=False, seed=0, bins=BINS, **settings) -> Neds:
    torch.manual_seed(seed)
    defaults = dict(layers=2, hidden=HIDDEN, heads=4, ffn=64, mode=mode)
    parts = tiny_parts(modalities, bins=bins, layout=layout, element_masks=element_masks)
    return Neds(Neds.Settings(**{**defaults, **settings}), parts)


def make_batch(session="s0", trials=6, neurons=10, bins=BINS, modalities=ALL_MODALITIES, bands=3, seed=0) -> Batch:
    """A hand-made batch: Poisson counts from known rates that follow a latent drive, a wheel
    signal correlated with it, and choice/block that set its sign and size."""
    g = torch.Generator().manual_seed(seed)
    choice = torch.randint(0, 2, (trials,), generator=g)
    block = torch.randint(0, 3, (trials,), generator=g)
    t = torch.linspace(0, 1, bins)
    drive = (2.0 * choice - 1).unsqueeze(-1) * torch.sin(3 * t) * (1 + block.unsqueeze(-1) / 2)  # (B, T)
    tuning = torch.randn(neurons, generator=g)
    rates = torch.exp(-0.5 + 0.6 * drive.unsqueeze(-1) * tuning)  # (B, T, N) expected counts
    values = {
        "spikes": torch.poisson(rates, generator=g),
        "lfp": drive.unsqueeze(-1) * torch.randn(bands, generator=g) + 0.1 * torch.randn(trials, bins, bands, generator=g),
        "wheel": drive + 0.1 * torch.randn(trials, bins, generator=g),
        "whisker": drive.abs() + 0.1 * torch.randn(trials, bins, generator=g),
        "choice": choice,
        "block": block,
    }
    return Batch(session=session, values={name: values[name] for name in modalities}, specs=SPECS)


def with_session(model: Neds, batch: Batch) -> Batch:
    model.add_session(batch.session, session_features(batch.values))
    return batch
