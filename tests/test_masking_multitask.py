"""NEDS multi-task masking: per-sample schemes, the ratio, shapes, seeding, settings."""

from __future__ import annotations

import textwrap

import pytest
import torch

from neds_framework.errors import NedsError
from neds_framework.recipe import load_recipe
from neds_masking.multitask import SCHEMES, NedsMultitaskMasker
from tests.model_helpers import ALL_MODALITIES, model_registries, make_batch

NEURAL = ("spikes", "lfp")
BEHAVIOUR = ("wheel", "whisker", "choice", "block")


def masker(ratio=0.3, **schemes):
    settings = NedsMultitaskMasker.Settings(ratio=ratio, schemes=schemes or NedsMultitaskMasker.Settings().schemes)
    return NedsMultitaskMasker(settings)


def draw(m, batch, seed=0):
    return m(batch, torch.Generator().manual_seed(seed))


def bins_of(mask):
    """(B, T) per-bin view of a modality mask (spike masks are constant over neurons)."""
    return mask[..., 0] if mask.dim() == 3 else mask


def test_mask_shapes_and_dtypes():
    batch = make_batch(trials=5, neurons=7)
    masks = draw(masker(), batch)
    assert set(masks) == set(ALL_MODALITIES)
    assert masks["spikes"].shape == (5, batch.values["spikes"].shape[1], 7)
    for name in ("lfp", "wheel", "whisker"):
        assert masks[name].shape == batch.values["wheel"].shape
    assert masks["choice"].shape == masks["block"].shape == (5,)
    assert all(m.dtype == torch.bool for m in masks.values())


def test_each_scheme_hides_what_it_says():
    batch = make_batch(trials=64, bins=40)
    enc = draw(masker(encoding=1), batch)
    assert all(enc[n].all() for n in NEURAL) and not any(enc[n].any() for n in BEHAVIOUR)
    dec = draw(masker(decoding=1), batch)
    assert not any(dec[n].any() for n in NEURAL) and all(dec[n].all() for n in BEHAVIOUR)
    own = draw(masker(ratio=0.5, self_spike=1), batch)
    assert own["spikes"].any() and not own["spikes"].all() and not any(own[n].any() for n in BEHAVIOUR)
    assert not torch.equal(bins_of(own["spikes"]), own["lfp"])  # each neural modality its own bins
    beh = draw(masker(ratio=0.5, self_behaviour=1), batch)
    assert not any(beh[n].any() for n in NEURAL) and not torch.equal(beh["wheel"], beh["whisker"])
    assert beh["choice"].any() and not beh["choice"].all()
    cross = draw(masker(ratio=0.5, cross_modality=1), batch)
    shared = cross["wheel"]
    assert shared.any() and not shared.all()
    for name in ("spikes", "lfp", "whisker"):
        assert torch.equal(bins_of(cross[name]), shared)  # the same bins in every dynamic modality


def test_masks_are_per_sample():
    batch = make_batch(trials=16, bins=30)
    for scheme in ("self_spike", "cross_modality"):
        rows = bins_of(draw(masker(ratio=0.5, **{scheme: 1}), batch)["spikes"])
        # No sample shares sample 0's mask (the reference's leak gave all of them sample 0's).
        assert all(not torch.equal(rows[i], rows[0]) for i in range(1, 16))
    schemes = draw(masker(), batch)
    hidden_spikes = schemes["spikes"].flatten(1).float().mean(1)
    assert len(set(hidden_spikes.tolist())) > 2  # mixed schemes inside one batch


@pytest.mark.parametrize("ratio", [0.1, 0.3, 0.6])
def test_the_ratio_is_used(ratio):
    batch = make_batch(trials=200, bins=50, modalities=("spikes", "wheel", "choice"))
    own = draw(masker(ratio=ratio, self_spike=1), batch)
    assert abs(bins_of(own["spikes"]).float().mean().item() - ratio) < 0.02
    beh = draw(masker(ratio=ratio, self_behaviour=1), batch)
    assert abs(beh["wheel"].float().mean().item() - ratio) < 0.02
    assert abs(beh["choice"].float().mean().item() - ratio) < 0.1


def test_scheme_probabilities_are_followed():
    m = masker(encoding=3, decoding=1)
    drawn = m.draw_schemes(4000, torch.Generator().manual_seed(0))
    counts = torch.bincount(drawn, minlength=len(SCHEMES)).float() / 4000
    assert abs(counts[SCHEMES.index("encoding")] - 0.75) < 0.03 and counts[2:].sum() == 0


def test_seeded_masks_repeat_and_differ_across_seeds():
    batch = make_batch(trials=8)
    a, b, c = draw(masker(), batch, 1), draw(masker(), batch, 1), draw(masker(), batch, 2)
    assert all(torch.equal(a[n], b[n]) for n in a)
    assert any(not torch.equal(a[n], c[n]) for n in a)


def test_settings_from_a_recipe_and_their_errors(tmp_path):
    regs = model_registries()
    path = tmp_path / "r.yaml"
    path.write_text(textwrap.dedent("""
        stages: []
        masker: {name: neds_multitask, ratio: 0.1, schemes: {encoding: 1, cross_modality: 2}}
    """))
    recipe = load_recipe(path, registries=regs)
    assert recipe.masker.config.ratio == 0.1 and recipe.masker.config.schemes == {"encoding": 1.0, "cross_modality": 2.0}
    cases = (
        ("ratio: 1.5", r"masker.ratio: .ratio. must be <= 1"),
        ("schemes: {encodng: 1}", "unknown scheme"),
        ("schemes: {encoding: 0}", "not all 0"),
    )
    for bad, message in cases:
        path.write_text(f"stages: []\nmasker: {{name: neds_multitask, {bad}}}\n")
        with pytest.raises(NedsError, match=message):
            load_recipe(path, registries=regs)
