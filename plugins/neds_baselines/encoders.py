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

from neds_framework.api import BatchKey, NedsError, StoreBatches

MIN_RATE = 1e-6


def counts_modality(specs: dict, who: str) -> str:
    """The (first) neural spike-count modality of the specs: what the baselines read or predict."""
    for name, spec in specs.items():
        if spec.neural and spec.values == "counts" and spec.element_masked:
            return name
    raise NedsError(f"{who} needs a neural count modality (spikes); the recipe's modalities have none")


def behaviour_specs(specs: dict) -> dict:
    return {name: spec for name, spec in specs.items() if not spec.neural}


def design(values: dict, specs: dict, n_bins: int) -> torch.Tensor:
    """(K, T, F) float64 behaviour features per trial and bin (see the module docstring): each
    per-bin behaviour as it is, each class variable one-hot, each per-trial value repeated, then
    one indicator per bin."""
    k = len(next(iter(values.values())))
    parts = []
    for name, spec in specs.items():
        if name not in values or spec.neural:
            continue
        if not spec.per_trial:
            parts.append(values[name].double().reshape(k, n_bins, -1))
        elif spec.values == "classes":
            onehot = torch.nn.functional.one_hot(values[name].long(), spec.n_classes).double()
            parts.append(onehot.unsqueeze(1).expand(k, n_bins, spec.n_classes))
        else:
            parts.append(values[name].double().reshape(k, 1, 1).expand(k, n_bins, 1))
    parts.append(torch.eye(n_bins, dtype=torch.float64).unsqueeze(0).expand(k, n_bins, n_bins))
    return torch.cat(parts, dim=-1)


class _Encoder:
    def __init__(self, settings=None):
        self.settings = settings or self.Settings()
        self.sessions: dict[str, object] = {}
        self.specs: dict = {}
        self.target = ""

    def fit(self, store, eids, specs) -> None:
        self.target = counts_modality(specs, self.name)
        self.specs = {self.target: specs[self.target], **behaviour_specs(specs)}
        reader = StoreBatches(store, self.specs)
        for eid in eids:
            trials = store.split(eid, "train")
            if len(trials) < 2:
                raise NedsError(f"{self.name}: session {eid} has {len(trials)} train trial(s); it needs at least 2")
            _, values = reader[BatchKey(eid, tuple(int(t) for t in trials))]
            counts = values.pop(self.target).double()
            x = design(values, self.specs, counts.shape[1])
            # Every (trial, bin) is one sample: (K*T, F) features, (K*T, N) counts.
            self.sessions[eid] = self._fit(x.reshape(-1, x.shape[-1]), counts.reshape(-1, counts.shape[-1]))

    def predict(self, batch, masks) -> dict:
        target = self.target
        if target not in masks or not bool(masks[target].any()):
            return {}
        params = self.sessions.get(batch.session)
        if params is None:
            raise NedsError(f"{self.name} was not fitted on session {batch.session}")
        behaviour = {k: v.cpu() for k, v in batch.values.items() if k in self.specs and k != target}
        x = design(behaviour, self.specs, batch.values[target].shape[1])
        return {target: self._rates(x, params).float()}


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
