"""Encoding baselines: spikes from behaviour, per session, fitted on the train split.

Both use the same design matrix per trial and bin: wheel and whisker at that bin, one-hot choice
and block, and one indicator per time bin (so a neuron's mean time course, its PSTH, is
representable). Behaviours a session lacks are left out.

- `rrr_encoder`: reduced-rank Gaussian regression: ridge solution B (penalty ``alpha``), then
  projected on the top ``rank`` directions of the fitted values (B_r = B V_r V_r^T). ``target``
  says what is regressed:
    counts (default)  the counts themselves; the rate is the fitted count, floored at 1e-6 per bin.
    sqrt              square-root counts, which steadies the variance of Poisson counts; the rate is
                      E[y] = E[sqrt y]^2 + Var[sqrt y]: the fit squared plus each neuron's residual
                      variance on the train split. Squaring the fit alone underestimates low rates
                      badly (at 0.3 spikes per bin by a factor of about 4; bits per spike fell to -1).
- `glm_encoder`: a Poisson GLM per neuron, log rate = X w_n + b_n with an L2 penalty ``alpha``,
  all neurons fitted at once (one L-BFGS problem over the (features x neurons) weight matrix;
  no loop over neurons).
"""

from __future__ import annotations

import attrs
import torch

from neds_framework.data.batches import BatchKey, StoreBatches
from neds_framework.errors import NedsError

NEURAL = ("spikes", "lfp")
CLASSES = {"choice": 2, "block": 3}
MIN_RATE = 1e-6


def design(values: dict, n_bins: int) -> torch.Tensor:
    """(K, T, F) float64 behaviour features per trial and bin (see the module docstring)."""
    k = len(next(iter(values.values())))
    parts = []
    for name in ("wheel", "whisker"):
        if name in values:
            parts.append(values[name].double().reshape(k, n_bins, 1))
    for name, n in CLASSES.items():
        if name in values:
            onehot = torch.nn.functional.one_hot(values[name].long(), n).double()
            parts.append(onehot.unsqueeze(1).expand(k, n_bins, n))
    parts.append(torch.eye(n_bins, dtype=torch.float64).unsqueeze(0).expand(k, n_bins, n_bins))
    return torch.cat(parts, dim=-1)


class _Encoder:
    neural = NEURAL

    def __init__(self, settings=None):
        self.settings = settings or self.Settings()
        self.sessions: dict[str, object] = {}

    def fit(self, store, eids, modalities) -> None:
        if "spikes" not in modalities:
            raise NedsError(f"{self.name} predicts spikes; the recipe's modalities lack them")
        reader = StoreBatches(store, [m for m in modalities if m == "spikes" or m not in NEURAL])
        for eid in eids:
            trials = store.split(eid, "train")
            if len(trials) < 2:
                raise NedsError(f"{self.name}: session {eid} has {len(trials)} train trial(s); it needs at least 2")
            _, values = reader[BatchKey(eid, tuple(int(t) for t in trials))]
            counts = values.pop("spikes").double()
            x = design(values, counts.shape[1])
            # Every (trial, bin) is one sample: (K*T, F) features, (K*T, N) counts.
            self.sessions[eid] = self._fit(x.reshape(-1, x.shape[-1]), counts.reshape(-1, counts.shape[-1]))

    def predict(self, batch, masks) -> dict:
        if "spikes" not in masks or not bool(masks["spikes"].any()):
            return {}
        params = self.sessions.get(batch.session)
        if params is None:
            raise NedsError(f"{self.name} was not fitted on session {batch.session}")
        behaviour = {k: v.cpu() for k, v in batch.values.items() if k not in NEURAL}
        x = design(behaviour, batch.values["spikes"].shape[1])
        return {"spikes": self._rates(x, params).float()}


@attrs.frozen
class RrrSettings:
    rank: int = 4
    alpha: float = 1.0
    target: str = attrs.field(default="counts", validator=attrs.validators.in_(("counts", "sqrt")))


class RrrEncoder(_Encoder):
    name = "rrr_encoder"
    Settings = RrrSettings

    def _fit(self, a, y):
        f = a.shape[1]
        if self.settings.target == "sqrt":
            y = y.sqrt()
        mean = y.mean(dim=0)
        gram = a.T @ a + self.settings.alpha * torch.eye(f, dtype=a.dtype)
        b = torch.linalg.solve(gram, a.T @ (y - mean))
        _, _, vh = torch.linalg.svd(a @ b, full_matrices=False)
        v = vh[: self.settings.rank].T  # (N, rank)
        b = b @ v @ v.T
        residual_var = (y - mean - a @ b).square().mean(dim=0)
        return b, mean, residual_var

    def _rates(self, x, params):
        b, mean, residual_var = params
        fitted = (x @ b) + mean
        if self.settings.target == "sqrt":  # back to counts: E[y] = E[sqrt y]^2 + Var[sqrt y]
            return (fitted.clamp(min=0).square() + residual_var).clamp(min=MIN_RATE)
        return fitted.clamp(min=MIN_RATE)


@attrs.frozen
class GlmSettings:
    alpha: float = 1e-3  # L2 penalty on the weights, per neuron, scaled by the number of samples
    max_iter: int = 200


class GlmEncoder(_Encoder):
    name = "glm_encoder"
    Settings = GlmSettings

    def _fit(self, a, y):
        f, n = a.shape[1], y.shape[1]
        w = torch.zeros(f, n, dtype=torch.float64, requires_grad=True)
        b = torch.log(y.mean(dim=0).clamp(min=MIN_RATE)).clone().requires_grad_(True)
        optimiser = torch.optim.LBFGS([w, b], max_iter=self.settings.max_iter, line_search_fn="strong_wolfe")

        def closure():
            optimiser.zero_grad()
            eta = a @ w + b
            loss = (eta.exp() - y * eta).mean(dim=0).sum() + self.settings.alpha * w.square().sum()
            loss.backward()
            return loss

        optimiser.step(closure)
        return w.detach(), b.detach()

    def _rates(self, x, params):
        w, b = params
        return (x @ w + b).clamp(max=20).exp().clamp(min=MIN_RATE)
