"""The NEDS model: shapes, masking contract, losses, gradients, sessions, modes, plugins, overfitting."""

from __future__ import annotations

import textwrap

import attrs
import pytest
import torch

from neds_framework.api import ModalitySpec, hookimpl
from neds_framework.errors import NedsError
from neds_framework.model.batch import Batch, session_features
from neds_framework.model.build import build_model
from neds_framework.model.eval_masks import decoding_masks, encoding_masks, variable_decoding_masks
from neds_framework.model.interfaces import TRIAL_TIME, Head, Tokenizer
from neds_framework.model.nn.rotary import Rotary, apply_rotary
from neds_framework.model.nn.session_layers import SessionLayers
from neds_framework.recipe import load_recipe
from neds_masking.multitask import SCHEMES, NedsMultitaskMasker
from neds_modalities.heads import ClassificationHead, RegressionHead, SpikesHead
from neds_modalities.tokenizers import StaticTokenizer
from tests.model_helpers import (
    ALL_MODALITIES,
    BINS,
    CLASSES,
    HIDDEN,
    SPECS,
    make_batch,
    model_registries,
    tiny_model,
    with_session,
)

torch.set_num_threads(2)


def masks_for(batch, scheme=None, ratio=0.3, seed=0):
    schemes = {scheme: 1.0} if scheme else NedsMultitaskMasker.Settings().schemes
    masker = NedsMultitaskMasker(NedsMultitaskMasker.Settings(ratio=ratio, schemes=schemes))
    return masker(batch, torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------ shapes and sessions


@pytest.mark.parametrize("layout", ["compact", "expanded"])
def test_shapes_one_session(layout):
    model = tiny_model(layout=layout)
    batch = with_session(model, make_batch(trials=5, neurons=7))
    out = model(batch, masks_for(batch))
    assert out.predictions["spikes"].shape == (5, BINS, 7)
    assert out.predictions["lfp"].shape == (5, BINS, 3)
    assert out.predictions["wheel"].shape == out.predictions["whisker"].shape == (5, BINS)
    assert out.predictions["choice"].shape == (5, 2) and out.predictions["block"].shape == (5, 3)
    assert out.loss.ndim == 0 and torch.isfinite(out.loss)
    predicted = model.predict(out)
    assert (predicted["spikes"] > 0).all() and predicted["choice"].dtype == torch.int64
    static_tokens = 1 if layout == "compact" else BINS
    assert model.tokenizers["choice"].n_tokens() == static_tokens
    assert sum(t.n_tokens() for t in model.tokenizers.values()) == 4 * BINS + 2 * static_tokens


def test_shapes_several_sessions_with_different_neuron_counts():
    model = tiny_model()
    batches = [with_session(model, make_batch(session=f"s{i}", neurons=n, seed=i)) for i, n in enumerate((4, 9, 15))]
    assert model.sessions() == ["s0", "s1", "s2"]
    for batch in batches:
        out = model(batch, masks_for(batch))
        assert out.predictions["spikes"].shape == batch.values["spikes"].shape


def test_unknown_session_is_a_clear_error():
    model = tiny_model()
    with_session(model, make_batch(session="known"))
    batch = make_batch(session="new-eid")
    with pytest.raises(NedsError, match=r"no layers for session 'new-eid' \(known: known\); add it with model.add_session"):
        model(batch, masks_for(batch))
    with pytest.raises(NedsError, match="already has session 'known'"):
        model.add_session("known", {"spikes": 10})
    with pytest.raises(NedsError, match="cannot name a layer"):
        model.add_session("a.b", {"spikes": 10})


def test_session_layers_grow_and_keep_their_keys():
    layers = SessionLayers(lambda n: torch.nn.Linear(n, 2), "test layers")
    layers.add_session("a", 3)
    layers.add_session("b", 5)
    assert layers["b"].in_features == 5 and "a" in layers and "c" not in layers
    assert set(layers.state_dict()) == {"layers.a.weight", "layers.a.bias", "layers.b.weight", "layers.b.bias"}


@torch.no_grad()
def test_adding_a_session_to_a_trained_model_leaves_existing_outputs_unchanged():
    model = tiny_model()
    batch = with_session(model, make_batch(session="old"))
    with torch.enable_grad():
        train(model, batch, steps=3)
    model.eval()
    masks = masks_for(batch)
    before = model(batch, masks)
    model.add_session("new", {"spikes": 17, "lfp": 3, "wheel": 1, "whisker": 1, "choice": 1, "block": 1})
    after = model(batch, masks)
    for name in before.predictions:
        assert torch.equal(before.predictions[name], after.predictions[name])
    assert torch.equal(before.loss, after.loss)


@torch.no_grad()
def test_state_dict_round_trip_through_add_session():
    model = tiny_model()
    batch = with_session(model, make_batch())
    model.eval()
    fresh = tiny_model(seed=1).eval()
    fresh.add_session(batch.session, session_features(batch.values))
    fresh.load_state_dict(model.state_dict())
    masks = masks_for(batch)
    assert torch.equal(model(batch, masks).predictions["spikes"], fresh(batch, masks).predictions["spikes"])


# ------------------------------------------------------------------ masking contract


def perturb_masked(batch: Batch, masks, seed=1) -> Batch:
    """Every masked value replaced by something different; unmasked values kept."""
    g = torch.Generator().manual_seed(seed)
    values = {}
    for name, value in batch.values.items():
        mask = masks[name].reshape(masks[name].shape + (1,) * (value.dim() - masks[name].dim())).expand_as(value)
        if value.dtype == torch.int64:
            changed = (value + 1) % CLASSES[name]  # another valid class
        else:
            changed = value + 3.0 + torch.rand(value.shape, generator=g) * 10
        values[name] = torch.where(mask, changed, value)
        assert not torch.equal(values[name], value) or not mask.any()
    return batch.with_values(values)


@pytest.mark.parametrize("layout", ["compact", "expanded"])
@pytest.mark.parametrize("scheme", SCHEMES + (None,))
@torch.no_grad()
def test_masked_values_never_influence_the_output(scheme, layout):
    model = tiny_model(layout=layout).eval()
    batch = with_session(model, make_batch(trials=8))
    masks = masks_for(batch, scheme, ratio=0.5)
    assert any(m.any() for m in masks.values())
    out = model(batch, masks)
    out_perturbed = model(perturb_masked(batch, masks), masks)
    for name in out.predictions:
        assert torch.equal(out.predictions[name], out_perturbed.predictions[name]), name


@torch.no_grad()
def test_element_masks_hide_single_neurons_without_leaking():
    model = tiny_model(modalities=("spikes", "wheel"), element_masks=True).eval()
    batch = with_session(model, make_batch(modalities=("spikes", "wheel"), trials=4, neurons=8))
    g = torch.Generator().manual_seed(3)
    masks = {
        "spikes": torch.rand(batch.values["spikes"].shape, generator=g) < 0.3,
        "wheel": batch.full_mask("wheel", False),
    }
    out = model(batch, masks)
    perturbed = model(perturb_masked(batch, masks), masks)
    assert torch.equal(out.predictions["spikes"], perturbed.predictions["spikes"])
    # ...and the mask channel matters: hiding a neuron is not the same as showing 0 spikes.
    shown_zero = batch.with_values({**batch.values, "spikes": torch.where(masks["spikes"], 0.0, batch.values["spikes"])})
    no_mask = {**masks, "spikes": torch.zeros_like(masks["spikes"])}
    assert not torch.equal(model(shown_zero, no_mask).predictions["spikes"], out.predictions["spikes"])


def test_partial_spike_masks_need_element_masks():
    model = tiny_model(modalities=("spikes", "wheel"))
    batch = with_session(model, make_batch(modalities=("spikes", "wheel")))
    masks = {
        "spikes": torch.zeros(batch.values["spikes"].shape, dtype=torch.bool),
        "wheel": batch.full_mask("wheel", False),
    }
    masks["spikes"][0, 0, 0] = True
    with pytest.raises(NedsError, match="element_masks: true"):
        model(batch, masks)


# ------------------------------------------------------------------ losses


# head class, settings, input width, target maker, mask shape
HEAD_CASES = {
    "spikes": (SpikesHead, None, 6, lambda g: torch.poisson(torch.ones(4, BINS, 6), generator=g), (4, BINS, 6)),
    "wheel": (RegressionHead, None, 1, lambda g: torch.randn(4, BINS, generator=g), (4, BINS)),
    "lfp": (RegressionHead, None, 3, lambda g: torch.randn(4, BINS, 3, generator=g), (4, BINS)),
    "choice": (ClassificationHead, ClassificationHead.Settings(3, loss_on="masked"), 1, lambda g: torch.randint(0, 3, (4,), generator=g), (4,)),
}


@pytest.mark.parametrize("case", sorted(HEAD_CASES))
def test_losses_cover_masked_elements_only(case):
    head_cls, settings, n_features, make_target, mask_shape = HEAD_CASES[case]
    g = torch.Generator().manual_seed(0)
    head = head_cls(case, HIDDEN, BINS, settings)
    head.add_session("s", n_features)
    hidden = torch.randn(4, BINS, HIDDEN, generator=g)
    prediction = head(hidden, "s").detach().requires_grad_()
    target = make_target(g)
    mask = torch.rand(mask_shape, generator=g) < 0.5
    mask.view(-1)[0] = True
    loss, count = head.loss(prediction, target, mask)
    assert count == mask.sum() * (n_features if case == "lfp" else 1)

    # Changing unmasked targets changes nothing; unmasked predictions get no gradient.
    broadcast = mask.reshape(mask.shape + (1,) * (target.dim() - mask.dim())).expand_as(target)
    other = torch.where(broadcast, target, (target + 1) % 3 if target.dtype == torch.int64 else target + 5)
    assert torch.equal(head.loss(prediction, other, mask)[0], loss)
    loss.backward()
    grad_mask = broadcast if case != "choice" else mask.unsqueeze(-1).expand_as(prediction)
    assert (prediction.grad[~grad_mask] == 0).all() and (prediction.grad[grad_mask] != 0).any()


def test_static_loss_is_the_mean_over_masked_trials_or_all_of_them_while_training():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [5.0, -5.0]])
    target = torch.tensor([1, 1, 0])
    mask = torch.tensor([True, False, True])
    masked = torch.nn.functional.cross_entropy(logits[mask], target[mask])
    head = ClassificationHead("choice", HIDDEN, BINS, ClassificationHead.Settings(2, loss_on="masked"))
    loss, count = head.loss(logits, target, mask)
    assert count == 2 and torch.allclose(loss / count, masked)
    default = ClassificationHead("choice", HIDDEN, BINS, ClassificationHead.Settings(2))  # loss_on: all
    loss, count = default.loss(logits, target, mask)
    assert count == 3 and torch.allclose(loss / count, torch.nn.functional.cross_entropy(logits, target))
    loss, count = default.eval().loss(logits, target, mask)
    assert count == 2 and torch.allclose(loss / count, masked)


def test_total_loss_is_the_weighted_sum_of_per_modality_means():
    model = tiny_model(modalities=("spikes", "wheel", "choice"))
    model.weights = {"spikes": 1.0, "wheel": 2.5, "choice": 0.5}
    batch = with_session(model, make_batch(modalities=("spikes", "wheel", "choice")))
    masks = masks_for(batch, "cross_modality", ratio=0.5)
    masks["wheel"] = torch.zeros_like(masks["wheel"])  # nothing masked: contributes 0, not NaN
    masks["choice"] = torch.zeros_like(masks["choice"])  # shown, yet scored while training (loss_on: all)
    out = model(batch, masks)
    expected = sum(model.weights[m] * s / c for m, (s, c) in out.losses.items() if c > 0)
    assert out.losses["wheel"][1] == 0 and out.losses["choice"][1] == batch.values["choice"].shape[0]
    assert torch.allclose(out.loss, expected)


# ------------------------------------------------------------------ gradients and modes


def gradless(model):
    return [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]


@pytest.mark.parametrize("mode", ["mm", "encoding", "decoding"])
@pytest.mark.parametrize("layout", ["compact", "expanded"])
def test_every_parameter_receives_a_gradient(mode, layout):
    model = tiny_model(mode=mode, layout=layout)
    for i, neurons in enumerate((5, 8)):  # two sessions: both sets of per-session layers must train
        batch = with_session(model, make_batch(session=f"s{i}", trials=12, neurons=neurons, seed=i))
        masks = masks_for(batch, "cross_modality", ratio=0.5) if mode == "mm" else None
        if mode == "mm":  # some trials' statics hidden, some shown: mask embedding and input layers both used
            masks["choice"] = masks["block"] = torch.arange(12) % 2 == 0
        model(batch, masks).loss.backward()
    assert gradless(model) == []


def test_encoding_and_decoding_models_hold_and_register_only_their_output_heads():
    enc, dec = tiny_model(mode="encoding"), tiny_model(mode="decoding")
    assert set(enc.heads) == {"spikes", "lfp"} and set(dec.heads) == {"wheel", "whisker", "choice", "block"}
    for model in (enc, dec):
        batch = with_session(model, make_batch())
        names = set(dict(model.named_parameters()))
        assert all(any(n.startswith(f"heads.{m}.") for n in names) for m in model.heads)
        out = model(batch)
        assert set(out.predictions) == set(model.heads)
        for name, mask in out.masks.items():
            assert bool(mask.all()) == (name in model.outputs) and bool(mask.any()) == (name in model.outputs)
    with pytest.raises(NedsError, match="needs neural"):
        tiny_model(modalities=("wheel", "choice"), mode="encoding")


def test_mm_mode_needs_masks():
    model = tiny_model()
    batch = with_session(model, make_batch())
    with pytest.raises(NedsError, match="needs masks"):
        model(batch)


# ------------------------------------------------------------------ evaluation masks, rotary


def test_evaluation_masks():
    batch = make_batch()
    enc, dec = encoding_masks(batch), decoding_masks(batch)
    for name in ALL_MODALITIES:
        neural = name in ("spikes", "lfp")
        assert bool(enc[name].all()) == neural and bool(enc[name].any()) == neural
        assert bool(dec[name].all()) != neural and bool(dec[name].any()) != neural
    assert enc["spikes"].shape == batch.values["spikes"].shape and enc["lfp"].shape == batch.values["wheel"].shape
    one = variable_decoding_masks(batch, "block")
    assert [n for n, m in one.items() if m.any()] == ["block"] and one["block"].all()
    with pytest.raises(NedsError, match="cannot decode 'spikes'"):
        variable_decoding_masks(batch, "spikes")


def test_rotary_scores_depend_on_time_differences_only():
    rotary = Rotary(8)
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(1, 1, 1, 8, generator=g), torch.randn(1, 1, 1, 8, generator=g)

    def score(tq, tk):
        cq, sq = rotary(torch.tensor([tq]))
        ck, sk = rotary(torch.tensor([tk]))
        return (apply_rotary(q, cq, sq) * apply_rotary(k, ck, sk)).sum()

    assert torch.allclose(score(3, 7), score(10, 14), atol=1e-5)
    assert not torch.allclose(score(3, 7), score(3, 9), atol=1e-3)
    cos, sin = rotary(torch.tensor([0]))
    assert torch.equal(apply_rotary(q, cos, sin), q)  # position 0 (trial-level tokens): no rotation


def test_compact_static_tokens_are_trial_level():
    tokenizer = StaticTokenizer("choice", HIDDEN, BINS, StaticTokenizer.Settings(layout="compact"))
    assert tokenizer.token_times().tolist() == [TRIAL_TIME]
    expanded = StaticTokenizer("choice", HIDDEN, BINS)  # the default: the reference's layout
    assert expanded.token_times().tolist() == list(range(BINS))


# ------------------------------------------------------------------ building from a recipe


def test_build_model_from_a_recipe(tmp_path):
    path = tmp_path / "recipe.yaml"
    path.write_text(textwrap.dedent("""
        stages: []
        model: {name: neds, layers: 1, hidden: 16, heads: 2, ffn: 32, dropout: 0.1}
        masker: {name: neds_multitask, ratio: 0.2}
        modalities:
          spikes: {tokenizer: spikes, head: spikes}
          wheel: {tokenizer: dynamic, head: regression, weight: 2.0}
          choice:
            tokenizer: {name: static, layout: expanded}
            head: {name: classification, n_classes: 2}
    """))
    regs = model_registries()
    recipe = load_recipe(path, registries=regs)
    batch = make_batch(session="eid-1", modalities=("spikes", "wheel", "choice"))
    model = build_model(recipe, regs, {"eid-1": session_features(batch.values)}, n_bins=BINS)
    assert model.settings.hidden == 16 and model.weights["wheel"] == 2.0
    assert model.tokenizers["choice"].n_tokens() == BINS
    masker = regs.maskers.get(recipe.masker.name).factory(recipe.masker.config)
    out = model(batch, masker(batch, torch.Generator().manual_seed(0)))
    assert torch.isfinite(out.loss)

    path.write_text(path.read_text().replace("{name: classification, n_classes: 2}", "classification"))
    with pytest.raises(NedsError, match="n_classes"):
        load_recipe(path, registries=regs)


# ------------------------------------------------------------------ training


def train(model, batch, steps, lr=3e-3, masks=None, seed=0):
    """Adam steps on one batch; fresh multi-task masks per step unless `masks` is given."""
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)
    masker = NedsMultitaskMasker()
    losses = []
    for _ in range(steps):
        out = model(batch, masks if masks is not None else masker(batch, generator))
        optimiser.zero_grad()
        out.loss.backward()
        optimiser.step()
        losses.append(out)
    return losses


def excess_loss(out, batch) -> float:
    """The total loss less its floor: the spike term minus the Poisson NLL of a perfect prediction
    (λ = the counts themselves), so that a memorised batch scores 0 (MSE and CE floors are 0)."""
    total = out.loss.detach()
    if "spikes" in out.losses:
        counts, mask = batch.values["spikes"], out.masks["spikes"]
        floor = torch.where(mask & (counts > 0), counts - counts * counts.clamp(min=1).log(), 0.0).sum()
        total = total - floor / out.losses["spikes"][1].clamp(min=1)
    return float(total)


def overfit_batch(tmp_path) -> Batch:
    """The one batch the overfitting test memorises: 4 trials of a generated IBL session, read
    through ONE and brainbox and prepared as the ibl data source does."""
    from neds_ibl.one_connect import OneSettings
    from neds_ibl.source import IblSettings, IblSource
    from neds_ibl.synth import SynthSettings, generate

    (eid,) = generate(tmp_path, SynthSettings(sessions=1, seed=5, trials=40, units=16))
    data = IblSource(IblSettings(one=OneSettings(mode="local", cache_dir=str(tmp_path)))).prepare(eid)
    names = ("spikes", "wheel", "whisker", "choice", "block")
    values = {
        name: torch.from_numpy(data.modalities[name][:4].astype("int64" if name in ("choice", "block") else "float32"))
        for name in names
    }
    return Batch(session=eid, values=values, specs=SPECS)


def test_a_tiny_model_overfits_one_batch_of_generated_data(tmp_path):
    from neds_framework.engine.stages.train import flushed_denormals

    with flushed_denormals(True):  # as the train stage runs on CPU
        _overfit(overfit_batch(tmp_path))


def _overfit(batch: Batch) -> None:
    bins = batch.values["spikes"].shape[1]
    model = tiny_model(modalities=tuple(batch.values), dropout=0.0, embed_dropout=0.0, layers=2, bins=bins)
    with_session(model, batch)
    masks = masks_for(batch, seed=1, ratio=0.5)
    outs = train(model, batch, steps=150, lr=1e-2, masks=masks)
    first, last = excess_loss(outs[0], batch), excess_loss(outs[-1], batch)
    assert last < 0.1 * first, (first, last)


# ------------------------------------------------------------------ a new modality from a plugin


class PupilTokenizer(Tokenizer):
    """A made-up scalar-per-bin modality written from scratch against the public API."""

    def __init__(self, modality, hidden, n_bins, settings=None):
        super().__init__(modality, hidden, n_bins, settings)
        self.layers = SessionLayers(lambda n: torch.nn.Linear(n, hidden), f"{modality} tokenizer")
        self.register_buffer("times", torch.arange(n_bins), persistent=False)

    def add_session(self, session, n_features):
        self.layers.add_session(session, n_features)

    def token_times(self):
        return self.times

    def embed(self, values, mask, session):
        return self.layers[session](values.unsqueeze(-1)), mask


class PupilHead(Head):
    @attrs.frozen
    class Settings:
        delta: float = 1.0  # Huber loss threshold

    def __init__(self, modality, hidden, n_bins, settings=None):
        super().__init__(modality, hidden, n_bins, settings)
        self.layers = SessionLayers(lambda n: torch.nn.Linear(hidden, 1), f"{modality} head")

    def add_session(self, session, n_features):
        self.layers.add_session(session, n_features)

    def forward(self, hidden, session):
        return self.layers[session](hidden).squeeze(-1)

    def loss(self, prediction, target, mask):
        huber = torch.nn.functional.huber_loss(prediction, target, reduction="none", delta=self.settings.delta)
        return torch.where(mask, huber, 0.0).sum(), mask.sum().float()

    def predict(self, prediction):
        return prediction


class PupilPlugin:
    @hookimpl
    def neds_register_modalities(self, register):
        register("pupil", ModalitySpec(role="behaviour", timing="per_bin", values="continuous"))

    @hookimpl
    def neds_register_tokenizers(self, register):
        register("pupil", PupilTokenizer)

    @hookimpl
    def neds_register_heads(self, register):
        register("pupil_huber", PupilHead)


def test_a_new_modality_from_a_plugin_trains(tmp_path):
    regs = model_registries(("pupil_plugin", PupilPlugin()))
    assert regs.tokenizers.get("pupil").provider.plugin == "pupil_plugin"
    path = tmp_path / "recipe.yaml"
    path.write_text(textwrap.dedent("""
        stages: []
        model: {name: neds, layers: 1, hidden: 32, heads: 4, ffn: 64, dropout: 0.0, embed_dropout: 0.0}
        modalities:
          spikes: {tokenizer: spikes, head: spikes}
          pupil: {tokenizer: pupil, head: {name: pupil_huber, delta: 0.5}}
    """))
    recipe = load_recipe(path, registries=regs)
    base = make_batch(session="p", trials=8, modalities=("spikes", "wheel"))
    # Pupil size follows the same drive as the wheel: a real signal to learn from the spikes.
    specs = {"spikes": SPECS["spikes"], "pupil": regs.modalities.get("pupil").factory}
    batch = Batch("p", {"spikes": base.values["spikes"], "pupil": 1.0 + 0.5 * base.values["wheel"]}, specs)
    model = build_model(recipe, regs, {"p": session_features(batch.values)}, n_bins=BINS)
    outs = train(model, batch, steps=60, lr=1e-2)
    pupil_first = outs[0].losses["pupil"][0] / outs[0].losses["pupil"][1].clamp(min=1)
    masks = decoding_masks(batch)  # predict pupil from spikes only
    with torch.no_grad():
        out = model.eval()(batch, masks)
    assert out.predictions["pupil"].shape == (8, BINS)
    assert out.losses["pupil"][0] / out.losses["pupil"][1] < 0.5 * pupil_first


def test_training_is_reproducible():
    batch = make_batch()
    a = tiny_model()
    with_session(a, batch)
    b = tiny_model()
    with_session(b, batch)
    torch.manual_seed(0)  # dropout draws
    loss_a = train(a, batch, steps=2)[-1].loss
    torch.manual_seed(0)
    assert torch.equal(loss_a, train(b, batch, steps=2)[-1].loss)


# ------------------------------------------------------------------ dropout and attention paths


def test_dropout_keeps_one_minus_p_and_rescales():
    from neds_framework.model.nn.dropout import Dropout

    x = torch.ones(200_000)
    layer = Dropout(0.4)
    y = layer(x)
    assert abs((y == 0).float().mean().item() - 0.4) < 0.01
    assert torch.allclose(y[y != 0], torch.full_like(y[y != 0], 256 / 154))  # p quantised: 102/256
    assert torch.equal(layer.eval()(x), x)


def _attention_by_the_formula(q, k, v, keep):
    a = (q @ k.transpose(-2, -1) / q.shape[-1] ** 0.5).softmax(-1)
    return (a if keep is None else a * keep) @ v


@pytest.mark.parametrize("p", [0.0, 0.4])
def test_buffered_attention_matches_the_formula_and_its_gradients(p):
    """Forward and every gradient equal softmax(q kᵀ/√d)·mask·v with the same mask, in float64."""
    from neds_framework.model.nn import attention_dropout as ad
    from neds_framework.model.nn.dropout import keep_mask

    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 7, 4, generator=g, dtype=torch.float64, requires_grad=True) for _ in range(3))
    buffers = ad.AttentionBuffers()
    state = torch.get_rng_state()
    y = ad.attention_with_dropout(q, k, v, p, buffers)
    grads = torch.autograd.grad((y * torch.arange(4.0, dtype=torch.float64)).sum(), (q, k, v))
    torch.set_rng_state(state)
    keep = keep_mask(torch.Size([2, 3, 7, 7]), p, torch.float64) if p else None
    q2, k2, v2 = (t.detach().clone().requires_grad_() for t in (q, k, v))
    y2 = _attention_by_the_formula(q2, k2, v2, keep)
    grads2 = torch.autograd.grad((y2 * torch.arange(4.0, dtype=torch.float64)).sum(), (q2, k2, v2))
    assert torch.allclose(y, y2, atol=1e-12)
    assert all(torch.allclose(a, b, atol=1e-12) for a, b in zip(grads, grads2))


def test_buffered_attention_stays_right_with_two_forwards_before_a_backward():
    """The layer's buffers are reused only once their backward has run: a second forward first
    (gradient accumulation over two batches) gets its own, and both gradients are exact."""
    from neds_framework.model.nn import attention_dropout as ad

    g = torch.Generator().manual_seed(1)
    buffers = ad.AttentionBuffers()
    inputs = [[torch.randn(1, 2, 5, 4, generator=g, dtype=torch.float64, requires_grad=True) for _ in range(3)]
              for _ in range(2)]
    outputs = [ad.attention_with_dropout(*qkv, 0.0, buffers) for qkv in inputs]
    for qkv, y in zip(inputs, outputs):
        got = torch.autograd.grad(y.sum(), qkv)
        want = torch.autograd.grad(_attention_by_the_formula(*qkv, None).sum(), qkv)
        assert all(torch.allclose(a, b, atol=1e-12) for a, b in zip(got, want))
    y = ad.attention_with_dropout(*inputs[0], 0.0, buffers)  # after both: the kept buffer again
    assert y.grad_fn is not None and buffers.probs is not None


def test_the_cpu_dropout_rate_is_quantised_to_1_over_256():
    from neds_framework.model.nn.dropout import keep_mask, quantised_rate

    assert quantised_rate(0.4) == 102 / 256 and quantised_rate(0.1) == 26 / 256
    mask = keep_mask(torch.Size([1_000_000]), 0.4, torch.float32)
    dropped = (mask == 0).float().mean().item()
    assert abs(dropped - 102 / 256) < 0.003
    assert torch.allclose(mask[mask != 0], torch.full((int((mask != 0).sum()),), 256 / 154))
    assert abs(mask.mean().item() - 1.0) < 0.005  # unbiased


def test_attention_paths_agree_and_dropout_only_trains():
    from neds_framework.model.nn.attention import SelfAttention

    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 9, 32, generator=g)
    attention = SelfAttention(32, 4, dropout=0.0).train()
    fused = attention(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # bf16 takes the buffered path
        buffered = attention(x)
    assert buffered.dtype == torch.bfloat16 and torch.allclose(buffered.float(), fused, atol=0.05)
    attention = SelfAttention(32, 4, dropout=0.4)
    assert not torch.equal(attention.train()(x), attention(x))  # dropout draws differ
    assert torch.equal(attention.eval()(x), attention(x))


def test_bf16_inference_takes_the_fused_kernel_and_agrees_with_training_path(monkeypatch):
    """Forward only, bf16 runs the fused kernel (faster without a backward); with grad it is buffered."""
    from neds_framework.model.nn import attention as module

    calls = []
    real = module.attention_with_dropout
    monkeypatch.setattr(module, "attention_with_dropout", lambda *a: calls.append(1) or real(*a))
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 9, 32, generator=g)
    layer = module.SelfAttention(32, 4, dropout=0.0).eval()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        with_grad = layer(x)
        assert calls == [1]
        with torch.no_grad():
            inference = layer(x)
        assert calls == [1]
    assert torch.allclose(inference.float(), with_grad.float(), atol=0.03)
    assert not module.buffered_path(torch.device("cpu"), torch.bfloat16, 0.0, backward=False)
    assert module.buffered_path(torch.device("cpu"), torch.bfloat16, 0.4, backward=False)


def test_readouts_and_losses_stay_fp32_under_bf16_autocast():
    mods = ("spikes", "wheel", "choice")
    model = tiny_model(modalities=mods)
    batch = with_session(model, make_batch(modalities=mods))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(batch, encoding_masks(batch))
    assert out.loss.dtype == torch.float32
    assert all(p.dtype == torch.float32 for p in out.predictions.values())
    plain = model(batch, encoding_masks(batch))
    assert torch.allclose(out.loss, plain.loss, rtol=0.05)


def test_model_neural_from_older_run_folders_must_agree_with_the_specs():
    """Recipes dumped before the specs carried `model.neural: [spikes, lfp]`; it still loads."""
    assert tiny_model(modalities=("spikes", "wheel"), neural=("spikes", "lfp")).neural == ("spikes",)
    with pytest.raises(NedsError, match="model.neural: wheel disagrees with the modality specs"):
        tiny_model(modalities=("spikes", "wheel"), neural=("wheel",))


def test_a_heads_class_count_must_match_its_modality(tmp_path):
    regs = model_registries()
    path = tmp_path / "recipe.yaml"
    path.write_text(textwrap.dedent("""
        stages: []
        model: {name: neds, layers: 1, hidden: 32, heads: 4, ffn: 64}
        modalities:
          spikes: {tokenizer: spikes, head: spikes}
          block: {tokenizer: static, head: {name: classification, n_classes: 4}}
    """))
    recipe = load_recipe(path, registries=regs)
    with pytest.raises(NedsError, match=r"modalities.block.head.n_classes: 4, but modality 'block' has 3 classes"):
        build_model(recipe, regs, {}, n_bins=BINS)
