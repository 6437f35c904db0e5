"""The single masking schemes and the mixture: ratios, structure, seeding, no leaks (property-based)."""

from __future__ import annotations

import textwrap

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from neds_framework.errors import NedsError
from neds_framework.model.batch import Batch
from neds_masking.mixture import MixtureMasker
from neds_masking.schemes import (
    CausalMasker,
    InterRegionMasker,
    IntraRegionMasker,
    NeuronMasker,
    RandomMasker,
    TemporalMasker,
)
from tests.model_helpers import make_batch, model_registries, tiny_model, with_session
from tests.test_model import perturb_masked

SCHEMES = {
    "temporal": TemporalMasker,
    "random": RandomMasker,
    "causal": CausalMasker,
    "neuron": NeuronMasker,
    "inter_region": InterRegionMasker,
    "intra_region": IntraRegionMasker,
}
PER_NEURON = ("neuron", "inter_region", "intra_region", "random")


def regional_batch(trials=8, neurons=12, bins=20, regions=3, seed=0, modalities=("spikes", "wheel", "choice")) -> Batch:
    batch = make_batch(trials=trials, neurons=neurons, bins=bins, modalities=modalities, seed=seed)
    codes = torch.arange(neurons) % regions
    return Batch(session=batch.session, values=batch.values, specs=batch.specs, regions=codes)


def draw(name, batch, seed=0, **options):
    cls = SCHEMES[name]
    return cls(cls.Settings(**options))(batch, torch.Generator().manual_seed(seed))


shapes = st.fixed_dictionaries({
    "trials": st.integers(1, 12),
    "neurons": st.integers(2, 16),
    "bins": st.integers(3, 24),
    "regions": st.integers(1, 4),
    "seed": st.integers(0, 10_000),
})
ratios = st.floats(0.05, 0.9)


@pytest.mark.parametrize("name", list(SCHEMES))
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(shape=shapes, ratio=ratios)
def test_every_sample_hides_something_and_shows_something(name, shape, ratio):
    if name == "inter_region":
        shape = {**shape, "regions": max(2, shape["regions"])}  # one region: refused (tested below)
    batch = regional_batch(**shape)
    masks = draw(name, batch, seed=shape["seed"], ratio=ratio)
    spikes = masks["spikes"]
    assert spikes.shape == batch.values["spikes"].shape and spikes.dtype == torch.bool
    per_sample = spikes.reshape(spikes.shape[0], -1)
    assert per_sample.any(dim=1).all() and (~per_sample).any(dim=1).all()
    assert not masks["wheel"].any() and not masks["choice"].any()  # only the named modalities are hidden
    again = draw(name, batch, seed=shape["seed"], ratio=ratio)
    assert torch.equal(again["spikes"], spikes)  # reproducible from the seed


@pytest.mark.parametrize("name", list(SCHEMES))
@settings(max_examples=15, deadline=None)
@given(shape=shapes, ratio=ratios)
def test_structure_of_each_scheme(name, shape, ratio):
    if name == "inter_region":
        shape = {**shape, "regions": max(2, shape["regions"])}
    batch = regional_batch(**shape)
    m = draw(name, batch, seed=shape["seed"], ratio=ratio)["spikes"]
    b, t, n = m.shape
    if n < 2 or t < 2:
        return
    if name == "temporal" and not _flipped(m):
        assert torch.equal(m, m[..., :1].expand_as(m))  # whole bins
    if name == "causal":
        bins = m[..., 0]
        assert torch.equal(m, bins.unsqueeze(-1).expand_as(m))
        assert (bins[:, 1:].int() >= bins[:, :-1].int()).all()  # a suffix of the trial
        assert bins[:, -1].all() and not bins[:, 0].any()
    if name in ("neuron", "inter_region", "intra_region"):
        assert torch.equal(m, m[:, :1].expand_as(m))  # whole neurons over all bins
        neurons, codes = m[:, 0], batch.regions
        if name == "inter_region" and len(torch.unique(codes)) > 1:
            for region in torch.unique(codes):
                members = neurons[:, codes == region]
                assert (members.all(dim=1) | ~members.any(dim=1)).all()  # a region is hidden whole or not at all
            assert not neurons.all(dim=1).any()  # some region stays visible
        if name == "intra_region":
            hidden_regions = [torch.unique(codes[row]) for row in neurons]
            assert all(len(r) == 1 for r in hidden_regions)  # all hidden neurons in one region
            for row, region in zip(neurons, hidden_regions):
                members = codes == region
                size = int(members.sum())
                expected = min(max(1, round(size * ratio)), max(size - 1, 1))
                assert int(row.sum()) == expected  # the ratio of the region, the rest of it visible


def _flipped(m):
    """A degenerate draw repaired by flipping one element breaks whole-bin structure (tiny shapes)."""
    return m.shape[1] * m.shape[2] <= 4


@pytest.mark.parametrize("name,expected", [("temporal", 0.3), ("random", 0.3), ("causal", 0.3), ("neuron", 0.3)])
def test_mask_ratio_is_the_recipes(name, expected):
    batch = regional_batch(trials=256, neurons=40, bins=100)
    share = draw(name, batch, ratio=expected)["spikes"].float().mean().item()
    assert share == pytest.approx(expected, abs=0.03)


def test_temporal_spans_keep_the_ratio_and_make_runs():
    batch = regional_batch(trials=256, neurons=4, bins=100)
    plain = draw("temporal", batch, ratio=0.3)["spikes"][..., 0]
    spans = draw("temporal", batch, ratio=0.3, expand_prob=1.0, max_span=8)["spikes"][..., 0]
    assert spans.float().mean().item() == pytest.approx(0.3, abs=0.06)

    def mean_run(bins):
        starts = (bins[:, 1:] & ~bins[:, :-1]).sum() + bins[:, 0].sum()
        return bins.sum() / starts

    assert mean_run(spans) > 2 * mean_run(plain)


def test_causal_horizon_masks_exactly_the_last_bins():
    batch = regional_batch(trials=5, bins=30)
    m = draw("causal", batch, horizon=7)["spikes"][..., 0]
    assert m[:, -7:].all() and not m[:, :-7].any()
    with pytest.raises(NedsError, match="horizon 30 leaves no visible bin"):
        draw("causal", batch, horizon=30)


def test_region_schemes_need_region_labels_and_neurons():
    batch = make_batch(trials=3, neurons=6, modalities=("spikes", "wheel"))
    with pytest.raises(NedsError, match="needs the region of each neuron"):
        draw("inter_region", batch)
    single = Batch(session="s0", values=batch.values, specs=batch.specs, regions=torch.zeros(6, dtype=torch.long))
    with pytest.raises(NedsError, match="has neurons in one region only"):
        draw("inter_region", single)
    assert draw("inter_region", single, allow_degenerate=True)["spikes"].all()
    with pytest.raises(NedsError, match="hides neurons; modality 'wheel' has no neuron axis"):
        draw("neuron", batch, modalities=("wheel",))


def test_time_schemes_apply_to_behaviour_too():
    batch = regional_batch(trials=64, bins=50)
    masks = draw("temporal", batch, ratio=0.4, modalities=("spikes", "wheel"))
    assert masks["wheel"].shape == batch.values["wheel"].shape and masks["wheel"].any()
    assert not torch.equal(masks["wheel"], masks["spikes"][..., 0])  # each modality its own bins
    causal = draw("causal", batch, ratio=0.3, modalities=("wheel",))
    assert causal["wheel"][:, -1].all() and not causal["spikes"].any()


@pytest.mark.parametrize("name", list(SCHEMES))
@torch.no_grad()
def test_no_masked_value_reaches_the_model(name):
    model = tiny_model(modalities=("spikes", "wheel", "choice"), element_masks=True).eval()
    batch = with_session(model, regional_batch(trials=6, neurons=10, bins=model.n_bins))
    masks = draw(name, batch, ratio=0.4)
    assert masks["spikes"].any()
    out = model(batch, masks)
    perturbed = model(perturb_masked(batch, masks), masks)
    for key in out.predictions:
        assert torch.equal(out.predictions[key], perturbed.predictions[key]), key


def mixture(schemes, options=None):
    registries = model_registries()
    return MixtureMasker(MixtureMasker.Settings(schemes=schemes, options=options or {}), registries=registries)


def test_mixture_draws_each_sample_from_one_masker():
    batch = regional_batch(trials=400, neurons=10, bins=20, modalities=("spikes", "wheel", "choice"))
    m = mixture({"neds_multitask": 0.5, "neuron": 0.25, "inter_region": 0.25}, {"neuron": {"ratio": 0.5}})
    masks = m(batch, torch.Generator().manual_seed(0))
    spikes = masks["spikes"]
    whole_bins = (spikes == spikes[..., :1]).all(dim=(1, 2))  # multitask: whole bins only
    whole_neurons = (spikes == spikes[:, :1]).all(dim=(1, 2)) & ~spikes.all(dim=(1, 2))
    assert (whole_bins | whole_neurons).all()
    share_neuron_like = (whole_neurons & ~whole_bins).float().mean().item()
    assert share_neuron_like == pytest.approx(0.5, abs=0.08)
    behaviour_hidden = masks["wheel"].any(dim=1) | masks["choice"]
    assert not behaviour_hidden[whole_neurons & ~whole_bins].any()  # neuron/region schemes hide spikes only
    again = m(batch, torch.Generator().manual_seed(0))
    assert all(torch.equal(again[k], masks[k]) for k in masks)


def test_mixture_errors_name_the_masker():
    with pytest.raises(NedsError, match="no masker 'nope'|unknown.*nope|nope"):
        mixture({"nope": 1.0})
    with pytest.raises(NedsError, match="masker.options.neuron"):
        mixture({"neuron": 1.0}, {"neuron": {"ratio": "lots"}})
    with pytest.raises(NedsError, match="not among the mixture's schemes"):
        mixture({"neuron": 1.0}, {"temporal": {"ratio": 0.2}})
    with pytest.raises(ValueError, match="cannot contain itself"):
        MixtureMasker.Settings(schemes={"mixture": 1.0})


THIRD_PARTY = '''
    """A third-party masker: hide the first `bins` time bins of the spikes (a backward-prediction task)."""

    import attrs
    import torch

    from neds_framework.api import Masker, hookimpl


    class FirstBins(Masker):
        @attrs.frozen
        class Settings:
            bins: int = 5

        def __call__(self, batch, generator):
            masks = {name: batch.full_mask(name, False) for name in batch.values}
            spikes = batch.values["spikes"]
            hidden = torch.arange(spikes.shape[1], device=spikes.device) < self.settings.bins
            masks["spikes"] = hidden.view(1, -1, 1).expand(spikes.shape)
            return masks


    @hookimpl
    def neds_register_maskers(register):
        register("first_bins", FirstBins)
'''


def test_a_third_party_masker_in_twenty_lines_mixes_with_the_built_in_ones(tmp_path, monkeypatch):
    source = textwrap.dedent(THIRD_PARTY)
    assert len([line for line in source.splitlines() if line.strip()]) <= 20
    (tmp_path / "first_bins_masker.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    import importlib

    module = importlib.import_module("first_bins_masker")
    registries = model_registries(("first_bins_masker", module))
    m = MixtureMasker(MixtureMasker.Settings(schemes={"first_bins": 1.0, "neuron": 1.0}, options={"first_bins": {"bins": 3}}),
                      registries=registries)
    batch = regional_batch(trials=50, bins=20)
    spikes = m(batch, torch.Generator().manual_seed(1))["spikes"]
    first = spikes[:, :3].all(dim=(1, 2)) & ~spikes[:, 3:].any(dim=(1, 2))
    assert 0 < first.sum() < 50

