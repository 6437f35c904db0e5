"""NEDS: one transformer over the tokens of every modality, read out per modality.

Each modality's tokenizer turns its values into tokens (masked ones replaced by its mask
embedding); the model adds a modality embedding, a learned time embedding and a session
embedding, runs the shared pre-LN transformer with rotary positions on the time index, and hands
each output modality's own output tokens to its head. Which modalities are inputs and outputs
depends on ``mode``:

    mm        every modality is an input and an output; a masker decides what is hidden
    encoding  neural modalities are outputs only (always hidden), behaviour inputs only
    decoding  behaviour is output only (always hidden), neural modalities inputs only

A model holds exactly the parameters its mode trains: heads of output modalities only, per-
session input layers of input modalities only, and mask embeddings only for modalities it hides.
"""

from __future__ import annotations

import attrs
import torch
from torch import nn

from neds_framework.errors import NedsError
from neds_framework.model.batch import Batch, Masks
from neds_framework.model.interfaces import TRIAL_TIME, ModalityParts, ModelOutput, Tokens
from neds_framework.model.nn.dropout import Dropout
from neds_framework.model.nn.rotary import Rotary
from neds_framework.model.nn.session_layers import SessionScalars, SessionVectors, check_session_name
from neds_framework.model.nn.transformer import Transformer

MODES = ("mm", "encoding", "decoding")
LOSS_BALANCES = ("trivial", "none", "uncertainty")


@attrs.frozen
class NedsSettings:
    """Sizes and regularisation of the NEDS transformer (recipe section ``model``).

    Defaults are the reference's single-session size (5 layers; its medium and large models use
    16 and 22). One deliberate difference: ``attention_dropout`` defaults to 0, not the reference's
    0.4: on CPU any attention dropout takes PyTorch off its fused attention kernel and makes the
    training step 1.9-2.5x (compact static tokens) to 2.7-3.2x (expanded) slower
    (benchmarks/results/train_step.md), and on the quality benchmark it did not help
    (benchmarks/results/model_choices.md: encoding 0.012 vs 0.029 bits/spike, block accuracy 0.94
    vs 0.91 with a spread of 0.05, choice and wheel equal). Residual/MLP and token dropout default
    to 0.1, not the reference's 0.4 and 0.2: with an exp link, a log-rate trained under heavy
    dropout noise gives rates biased low once dropout is off (Jensen), and the lower values scored
    better on encoding and decoding alike (benchmarks/results/loss_balance.md). Set
    ``dropout: 0.4, embed_dropout: 0.2, attention_dropout: 0.4, loss_balance: none,
    start_at_trivial: false`` for the reference's behaviour.
    """

    layers: int = attrs.field(default=5, validator=[attrs.validators.ge(1), attrs.validators.le(1000)])
    hidden: int = attrs.field(default=256, validator=[attrs.validators.ge(1), attrs.validators.le(65536)])
    heads: int = attrs.field(default=8, validator=[attrs.validators.ge(1), attrs.validators.le(1024)])
    ffn: int = attrs.field(default=512, validator=[attrs.validators.ge(1), attrs.validators.le(1048576)])
    dropout: float = attrs.field(default=0.1, validator=[attrs.validators.ge(0.0), attrs.validators.lt(1.0)])
    attention_dropout: float = attrs.field(default=0.0, validator=[attrs.validators.ge(0.0), attrs.validators.lt(1.0)])
    embed_dropout: float = attrs.field(default=0.1, validator=[attrs.validators.ge(0.0), attrs.validators.lt(1.0)])
    rope: bool = True
    time_embedding: bool = True
    mode: str = attrs.field(default="mm", validator=attrs.validators.in_(MODES))
    # How modality losses are put on one scale before their recipe `weight`s multiply them:
    #   trivial      each divided by its session's null loss (the trivial predictor's: mean
    #                rate, mean value, class prior; `Head.null_loss` on the training split)
    #   none         as they come (per masked element; the reference's scale, roughly)
    #   uncertainty  trivial, then learned per-modality log-variances s: exp(-s)·L + s (Kendall et al. 2018)
    loss_balance: str = attrs.field(default="trivial", validator=attrs.validators.in_(LOSS_BALANCES))
    # Start each session's readouts at the trivial predictor (`Head.start_at_trivial`): log mean
    # rates, mean values, log class priors.
    start_at_trivial: bool = True
    # Which modalities are neural comes from their specs. Run folders written before kept the list
    # here (`[spikes, lfp]`); it is still read, and must agree with the specs.
    neural: tuple[str, ...] = ()

    def __attrs_post_init__(self):
        if self.hidden % self.heads:
            raise ValueError(f"hidden ({self.hidden}) must be a multiple of heads ({self.heads})")
        if self.rope and (self.hidden // self.heads) % 2:
            raise ValueError(f"rope needs an even head size; hidden/heads = {self.hidden // self.heads}")
        need, have = training_bytes(self), machine_memory_bytes()
        if have and need > have:
            raise ValueError(
                f"layers {self.layers}, hidden {self.hidden}, ffn {self.ffn} make about {core_parameters(self) / 1e9:.1f} "
                f"billion parameters, whose weights, gradients and optimiser state alone need {need / 2**30:.0f} GiB, "
                f"more than this machine's {have / 2**30:.0f} GiB; choose a smaller model"
            )


def core_parameters(settings) -> int:
    """The transformer's parameters (attention and feed-forward; embeddings and per-session layers
    add little at sane sizes): a lower bound used to refuse models no machine here can hold."""
    h = settings.hidden
    return settings.layers * (4 * h * h + 2 * h * settings.ffn)


def training_bytes(settings) -> int:
    """fp32 weights, gradients and two Adam moments: 16 bytes per parameter, before activations."""
    return 16 * core_parameters(settings)


def machine_memory_bytes() -> int:
    """Physical memory of this machine (0 when the platform does not say)."""
    import os

    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 0


class Neds(nn.Module):
    """The NEDS model. Build with `neds_framework.model.build.build_model`, or by hand::

        model = Neds(Neds.Settings(), {"spikes": ModalityParts(tokenizer, head, spec), ...})
        model.add_session(eid, {"spikes": n_neurons, "wheel": 1, ...})
        out = model(batch, masks)          # ModelOutput; out.loss to backpropagate
        model.predict(out)                 # rates, values, labels per output modality

    ``inputs`` and ``outputs`` name the modalities the mode reads and predicts; ``specs`` holds
    each modality's `ModalitySpec` (its role decides the encoding and decoding modes' roles).
    """

    Settings = NedsSettings

    def __init__(self, settings: NedsSettings, modalities: dict[str, ModalityParts]):
        super().__init__()
        if not modalities:
            raise NedsError("a NEDS model needs at least one modality")
        self.settings = settings
        bins = {parts.tokenizer.n_bins for parts in modalities.values()}
        if len(bins) != 1:
            raise NedsError(f"all tokenizers must use the same number of time bins; got {sorted(bins)}")
        self.n_bins = bins.pop()
        self.specs = {name: parts.spec for name, parts in modalities.items()}
        self.neural = tuple(name for name, spec in self.specs.items() if spec.neural)
        stated = tuple(n for n in settings.neural if n in self.specs)
        if settings.neural and set(stated) != set(self.neural):
            raise NedsError(f"model.neural: {', '.join(settings.neural)} disagrees with the modality specs "
                            f"(neural: {', '.join(self.neural) or 'none'}); remove model.neural, the specs decide")
        self.inputs, self.outputs = self._roles(settings, list(modalities), self.neural)

        self.tokenizers = nn.ModuleDict({name: parts.tokenizer for name, parts in modalities.items()})
        for name in self.tokenizers:
            if name not in self.outputs:  # never hidden, so its mask embedding would never train
                self.tokenizers[name].drop_mask_embedding()
        self.heads = nn.ModuleDict({name: modalities[name].head for name in self.outputs})
        self.weights = {name: float(parts.weight) for name, parts in modalities.items()}
        # Per session, the null loss of each output modality (in `outputs` order), set by `calibrate`.
        self.loss_scales = SessionScalars(len(self.outputs), "loss scales")
        self.log_variance = (
            nn.Parameter(torch.zeros(len(self.outputs))) if settings.loss_balance == "uncertainty" else None
        )

        hidden = settings.hidden
        self.modality_index = {name: i for i, name in enumerate(modalities)}
        self.modality_embedding = nn.Embedding(len(modalities), hidden)
        # Row n_bins is the trial-level slot (TRIAL_TIME tokens).
        self.time_embedding = nn.Embedding(self.n_bins + 1, hidden) if settings.time_embedding else None
        self.session_embedding = SessionVectors(hidden)
        self.embed_dropout = Dropout(settings.embed_dropout)
        self.rotary = Rotary(hidden // settings.heads) if settings.rope else None
        self.encoder = Transformer(
            settings.layers, hidden, settings.heads, settings.ffn, settings.dropout, settings.attention_dropout
        )
        for table in (self.modality_embedding, self.time_embedding):
            if table is not None:  # small, like the projections they are added to
                nn.init.normal_(table.weight, std=0.02)

    @staticmethod
    def _roles(settings: NedsSettings, names: list[str], neural_names: tuple[str, ...]) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(inputs, outputs) for the mode."""
        neural = tuple(n for n in names if n in neural_names)
        behaviour = tuple(n for n in names if n not in neural_names)
        if settings.mode == "mm":
            return tuple(names), tuple(names)
        inputs, outputs = (behaviour, neural) if settings.mode == "encoding" else (neural, behaviour)
        if not inputs or not outputs:
            raise NedsError(
                f"a {settings.mode} model needs neural and behaviour modalities; got neural: "
                f"{', '.join(neural) or '(none)'}, behaviour: {', '.join(behaviour) or '(none)'}"
            )
        return inputs, outputs

    # ------------------------------------------------------------------ sessions

    def add_session(self, session: str, n_features: dict[str, int]) -> None:
        """Add one session's input/output layers and session embedding.

        n_features: input width per modality the session has (`batch.session_features`);
        modalities the model does not use are ignored, ones the session lacks get no layers.
        Existing sessions are untouched, so their outputs do not change.
        """
        check_session_name(session)
        if session in self.session_embedding:
            raise NedsError(f"the model already has session '{session}'")
        for name, tokenizer in self.tokenizers.items():
            if name in self.inputs and name in n_features:
                tokenizer.add_session(session, n_features[name])
        for name, head in self.heads.items():
            if name in n_features:
                head.add_session(session, n_features[name])
        self.session_embedding.add_session(session)
        self.loss_scales.add_session(session)

    def calibrate(self, session: str, values: dict[str, torch.Tensor]) -> dict[str, float]:
        """Before training: from one session's training-split values (modality -> batch-shaped
        tensor), set its loss scales (`loss_balance: trivial | uncertainty`) and start its readouts at
        the trivial predictor (`start_at_trivial`). Returns the loss scales it set."""
        scales = {}
        for name in self.outputs:
            if name not in values:
                continue
            head = self.heads[name]
            if self.settings.loss_balance != "none":
                scales[name] = float(head.null_loss(values[name]))
            if self.settings.start_at_trivial:
                head.start_at_trivial(session, values[name])
        current = self.loss_scales[session].tolist()
        self.loss_scales.set(session, [scales.get(name, current[i]) for i, name in enumerate(self.outputs)])
        return scales

    def sessions(self) -> list[str]:
        return self.session_embedding.sessions()

    # ------------------------------------------------------------------ forward

    def role_masks(self, batch: Batch, masks: Masks | None) -> Masks:
        """The masks this model uses: the given ones in mm mode; in encoding and decoding modes
        the role masks (outputs all hidden, inputs all shown), whatever was given."""
        present = [name for name in self.tokenizers if name in batch.values]
        if self.settings.mode != "mm":
            return {name: batch.full_mask(name, name in self.outputs) for name in present}
        if masks is None:
            raise NedsError("an mm-mode model needs masks: draw them with a masker or an evaluation mask")
        missing = [name for name in present if name not in masks]
        if missing:
            raise NedsError(f"no mask for modalit{'y' if len(missing) == 1 else 'ies'} {', '.join(missing)}")
        return {name: masks[name] for name in present}

    def forward(self, batch: Batch, masks: Masks | None = None) -> ModelOutput:
        masks = self.role_masks(batch, masks)
        if not masks:
            known = ", ".join(self.tokenizers)
            raise NedsError(f"the batch of session '{batch.session}' holds none of the model's modalities ({known})")
        tokens = {name: self._tokens(name, batch, masks[name]) for name in masks}
        hidden = self._encode(tokens, batch.session)

        # Readouts and losses in fp32 even under autocast: bf16 log-rates would put about 1 % noise
        # on every predicted rate, and sums over thousands of masked elements would lose digits.
        with torch.autocast(hidden.device.type, enabled=False):
            return self._readout(tokens, hidden.float(), batch, masks)

    def _readout(self, tokens: dict, hidden: torch.Tensor, batch: Batch, masks: Masks) -> ModelOutput:
        predictions, losses = {}, {}
        total = hidden.new_zeros(())
        scales = self.loss_scales[batch.session]
        for name, states in zip(tokens, hidden.split([t.times.numel() for t in tokens.values()], dim=1)):
            if name not in self.heads:
                continue
            head = self.heads[name]
            predictions[name] = head(states, batch.session)
            loss_sum, count = head.loss(predictions[name], batch.values[name], masks[name])
            losses[name] = (loss_sum, count)
            # A modality with nothing masked sums to 0; clamping the count avoids a data-dependent branch.
            i = self.outputs.index(name)
            loss = loss_sum / count.clamp(min=1) / scales[i]
            if self.log_variance is not None:
                loss = torch.exp(-self.log_variance[i]) * loss + self.log_variance[i] * (count > 0)
            total = total + self.weights[name] * loss
        return ModelOutput(predictions=predictions, losses=losses, loss=total, masks=masks)

    def _tokens(self, name: str, batch: Batch, mask) -> Tokens:
        tokenizer = self.tokenizers[name]
        if name in self.inputs:
            return tokenizer(batch.values[name], mask, batch.session)
        return tokenizer.mask_tokens(batch.size)

    def _encode(self, tokens: dict[str, Tokens], session: str) -> torch.Tensor:
        """Embeddings of all tokens -> transformer output (B, L, H), tokens in modality order."""
        x = self.embed_dropout(torch.cat([t.embeddings for t in tokens.values()], dim=1))
        times = torch.cat([t.times for t in tokens.values()])
        modality = torch.cat(
            [torch.full_like(t.times, self.modality_index[name]) for name, t in tokens.items()]
        )
        # All additive embeddings are per token, not per sample: sum them once as (L, H).
        added = self.modality_embedding(modality) + self.session_embedding[session]
        if self.time_embedding is not None:
            added = added + self.time_embedding(torch.where(times == TRIAL_TIME, self.n_bins, times))
        rope = self.rotary(times.clamp(min=0)) if self.rotary is not None else None
        return self.encoder(x + added, rope)

    def predict(self, output: ModelOutput) -> dict[str, torch.Tensor]:
        """What metrics consume, per output modality (`Head.predict`)."""
        return {name: self.heads[name].predict(pred) for name, pred in output.predictions.items()}
