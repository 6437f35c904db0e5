"""Baselines fitted in closed form (stage `fit`), scored by the same evaluation as NEDS."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from neds_framework import cli
from neds_framework.engine.record import read_table
from neds_framework.engine.record import RunRecord
from neds_framework.model.batch import Batch
from neds_modalities.plugin import MODALITIES as SPECS

ROOT = Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.usefixtures("fresh_plugins")  # plugins loaded per test (conftest)


def test_ridge_decoder_fits_and_is_scored_like_any_model(tmp_path):
    path = tmp_path / "ridge.yaml"
    path.write_text(textwrap.dedent(f"""
        extends: {ROOT / 'recipes' / 'ridge_decoder.yaml'}
        run: {{dir: {tmp_path / 'runs'}}}
        data:
          store: {tmp_path / 'store.h5'}
          source:
            one: {{cache_dir: {tmp_path / 'cache'}}}
            synthesize: {{sessions: 2, seed: 1, trials: 80, units: 24}}
        fit: {{tasks: [encoding, decoding], figures: false}}
        """))
    assert cli.main([str(path)]) == 0
    record = RunRecord.load(tmp_path / "runs" / "ridge_decoder")
    assert record.meta["fitted_model"] == "ridge_decoder"
    rows = read_table(record)
    assert {r[0] for r in rows} and len({r[0] for r in rows}) == 2
    got = {(task, modality, metric): value for _, task, modality, metric, value in rows}
    assert not any(task == "encoding" for task, _, _ in got)  # a decoder predicts no spikes
    r2 = [v for (t, m, k), v in got.items() if t == "decoding" and m == "wheel" and k == "r2"]
    assert min(r2) > 0.1  # the generated wheel is decodable from the population
    for name in ("choice", "block"):
        assert ("decoding", name, "balanced_accuracy") in got


def test_ridge_decoder_predicts_only_hidden_behaviour_and_its_sessions():
    from neds_baselines.decoders import RidgeDecoder

    decoder = RidgeDecoder()
    rng = np.random.default_rng(0)
    k, t, n = 40, 6, 5
    spikes = rng.poisson(2.0, (k, t, n)).astype(np.float32)
    wheel = spikes @ rng.normal(size=n).astype(np.float32) + 0.01 * rng.normal(size=(k, t)).astype(np.float32)
    choice = (spikes.sum(axis=(1, 2)) > np.median(spikes.sum(axis=(1, 2)))).astype(np.int64)
    values = {"spikes": torch.from_numpy(spikes), "wheel": torch.from_numpy(wheel), "choice": torch.from_numpy(choice)}
    decoder.source = "spikes"
    decoder.sessions["s"] = decoder._fit_session(values)
    batch = Batch(session="s", values=values, specs=SPECS)
    hidden = {"spikes": torch.zeros(k, t, n, dtype=torch.bool), "wheel": torch.ones(k, t, dtype=torch.bool),
              "choice": torch.zeros(k, dtype=torch.bool)}
    out = decoder.predict(batch, hidden)
    assert set(out) == {"wheel"}
    assert np.corrcoef(out["wheel"].numpy().ravel(), wheel.ravel())[0, 1] > 0.99  # linear data, recovered
    from neds_framework.errors import NedsError

    with pytest.raises(NedsError, match="not fitted on session other"):
        decoder.predict(Batch(session="other", values=values, specs=SPECS), hidden)
    one_class = decoder._fit_classifier(spikes.reshape(k, -1), np.zeros(k, dtype=np.int64))
    assert one_class == 0


@pytest.mark.parametrize("name, options", [("rrr_encoder", ""), ("rrr_encoder", ", target: sqrt"), ("glm_encoder", "")])
def test_encoders_beat_the_mean_and_stay_under_the_oracle(tmp_path, name, options):
    path = tmp_path / "enc.yaml"
    path.write_text(textwrap.dedent(f"""
        extends: {ROOT / 'recipes' / 'ridge_decoder.yaml'}
        run: {{dir: {tmp_path / 'runs'}, name: {name}}}
        data:
          store: {tmp_path / 'store.h5'}
          source:
            one: {{cache_dir: {tmp_path / 'cache'}}}
            synthesize: {{sessions: 1, seed: 1, trials: 150, units: 24}}
        model: {{name: {name}{options}}}
        fit: {{tasks: [encoding, decoding], figures: false}}
        """))
    assert cli.main([str(path)]) == 0
    got = {(t, m, k): v for _, t, m, k, v in read_table(RunRecord.load(tmp_path / "runs" / name))}
    assert 0.0 < got[("encoding", "spikes", "bps")] < got[("oracle", "spikes", "bps")]
    assert not any(t == "decoding" for t, _, _ in got)  # an encoder predicts no behaviour


def test_rrr_on_square_roots_adds_the_residual_variance_when_squaring_back():
    from neds_baselines.encoders import RrrEncoder

    g = torch.Generator().manual_seed(0)
    x = torch.randn(20000, 3, generator=g, dtype=torch.float64)
    counts = torch.poisson(torch.full((20000, 2), 0.3, dtype=torch.float64), generator=g)  # behaviour-blind
    for target in ("counts", "sqrt"):
        model = RrrEncoder(RrrEncoder.Settings(rank=1, alpha=1.0, target=target))
        rates = model._rates(x, model._fit(x, counts))
        assert torch.allclose(rates.mean(dim=0), counts.mean(dim=0), rtol=0.05), target  # unbiased mean rate
    naive = model._fit(x, counts)[1].square()  # squaring the mean square root alone: far too low
    assert bool((naive < 0.6 * counts.mean(dim=0)).all())


def test_glm_recovers_known_poisson_weights():
    from neds_baselines.encoders import GlmEncoder, design

    g = torch.Generator().manual_seed(0)
    k, t, n = 2000, 10, 3
    values = {"wheel": torch.rand(k, t, generator=g), "choice": torch.randint(0, 2, (k,), generator=g)}
    x = design(values, SPECS, t)  # (K, T, F): wheel, choice one-hot, bin indicators
    true_w = torch.zeros(x.shape[-1], n, dtype=torch.float64)
    true_w[0] = torch.tensor([1.0, -1.0, 0.5], dtype=torch.float64)  # wheel gain per neuron
    rates = (x @ true_w - 1.0).exp()
    counts = torch.poisson(rates, generator=g)
    w, b = GlmEncoder(GlmEncoder.Settings(alpha=0.0))._fit(x.reshape(-1, x.shape[-1]), counts.reshape(-1, n))
    assert torch.allclose(w[0], true_w[0], atol=0.15)
