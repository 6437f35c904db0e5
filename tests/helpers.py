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


def tiny_recipe(folder, name: str = "tiny", *, stages: str = "[prepare, train, eval]", seed: int = 3, epochs: int = 2,
                sessions: int = 2, synth_seed: int = 1, trials: int = 60, units: int = 24, lab: str = "synthlab",
                cache: str = "cache", store: str = "store.h5", model: str = "{layers: 1, hidden: 16, heads: 2, ffn: 32}",
                base=None, extra: str = ""):
    """The tests' tiny run: generated IBL sessions through the real ONE-api, a 1-layer NEDS, a few
    epochs on one thread; ``extra`` is more YAML (sections replace or merge as in any recipe)."""
    import textwrap
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    folder = Path(folder)
    path = folder / f"{name}.yaml"
    body = textwrap.dedent(f"""\
        extends: {base or root / 'recipes' / 'common' / 'neds_mm.yaml'}
        stages: {stages}
        run: {{dir: {folder / 'runs'}, name: {name}, seed: {seed}}}
        data:
          store: {folder / store}
          source:
            name: ibl
            one: {{mode: local, cache_dir: {folder / cache}}}
            synthesize: {{sessions: {sessions}, seed: {synth_seed}, trials: {trials}, units: {units}, lab: {lab}}}
        model: {model}
        train: {{epochs: {epochs}, batch_size: 16, threads: 1, progress: false, optimizer: {{lr: 3.0e-3}}}}
        """)
    path.write_text(body + textwrap.dedent(extra))
    return path


def tiny_recipe_text(folder, name: str = "tiny", **options) -> str:
    """The YAML `tiny_recipe` writes (for tests that edit it before writing)."""
    return tiny_recipe(folder, name, **options).read_text()
