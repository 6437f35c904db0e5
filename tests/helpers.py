"""Small builders shared by the tests."""

from __future__ import annotations

import attrs

from neds_framework.registry import Provider, Registries

TEST_PROVIDER = Provider(plugin="tests", distribution="tests", version="0")


@attrs.frozen
class FakeOptimiser:
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)


@attrs.frozen
class FakeTrainSettings:
    epochs: int = 1
    optimizer: FakeOptimiser = FakeOptimiser()
    amp: bool = False


class FakeMasker:
    @attrs.frozen
    class Settings:
        ratio: float = 0.3
        expand_prob: float = 0.0


def fake_registries() -> Registries:
    """Registries holding one thing of each kind the recipe tests need."""
    from neds_modalities.plugin import MODALITIES

    regs = Registries()
    for name, spec in MODALITIES.items():
        regs.modalities.add(name, spec, TEST_PROVIDER)
    regs.stages.add("prepare", lambda ctx: None, TEST_PROVIDER)
    regs.stages.add("train", lambda ctx: None, TEST_PROVIDER, settings=FakeTrainSettings)
    regs.maskers.add("temporal", FakeMasker, TEST_PROVIDER)
    regs.maskers.add("random", FakeMasker, TEST_PROVIDER)
    regs.metrics.add("bits_per_spike", lambda: None, TEST_PROVIDER)
    regs.data_sources.add("ibl", lambda: None, TEST_PROVIDER)
    return regs
