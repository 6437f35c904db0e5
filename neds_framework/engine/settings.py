"""Settings of the engine's stages (attrs only: importing them costs no torch import).

Recipes are validated against these when a run starts and by `neds-run validate`, which must
stay fast.
"""

from __future__ import annotations

import math

import attrs

from neds_framework.errors import NedsError

_v = attrs.validators


def _within(low, high, low_open: bool = False):
    """attrs validators for low <= value <= high (low < value with ``low_open``); NaN fails both."""
    return [(_v.gt if low_open else _v.ge)(low), _v.le(high) if high != math.inf else _v.lt(math.inf)]


_POSITIVE = _within(0.0, math.inf, low_open=True)  # finite and > 0
_NON_NEGATIVE = _within(0.0, math.inf)  # finite and >= 0
_FRACTION = _within(0.0, 1.0)


@attrs.frozen
class OptimizerSettings:
    name: str = "AdamW"
    lr: float = attrs.field(default=2e-4, validator=_POSITIVE)  # the peak learning rate under a schedule with warm-up
    weight_decay: float = attrs.field(default=0.01, validator=_NON_NEGATIVE)
    options: dict[str, float] = attrs.field(factory=dict)  # other keyword arguments, e.g. {eps: 1.0e-8}


@attrs.frozen
class ScheduleSettings:
    name: str = "onecycle"
    warmup: float = attrs.field(default=0.15, validator=_FRACTION)  # share of all steps spent warming up
    start_factor: float = attrs.field(default=0.1, validator=_within(0.0, 1.0, low_open=True))  # onecycle starts at lr * start_factor (reference: div_factor 10)
    end_factor: float = attrs.field(default=1e-4, validator=_within(0.0, 1.0, low_open=True))  # onecycle ends at start * end_factor (reference: final_div_factor 1e4)


AMP_MODES = ("auto", "off", "bf16", "fp16")  # resolved per device by engine/precision.py


@attrs.frozen
class TrainSettings:
    """Settings of the train stage (recipe section `train:`)."""

    epochs: int = attrs.field(default=100, validator=_within(1, 10**7))
    batch_size: int = attrs.field(default=16, validator=_within(1, 2**20))
    max_steps: int = attrs.field(default=0, validator=_within(0, 10**12))  # stop after this many optimiser steps (0: no limit)
    optimizer: OptimizerSettings = OptimizerSettings()
    schedule: ScheduleSettings = ScheduleSettings()
    grad_clip: float = attrs.field(default=0.0, validator=_NON_NEGATIVE)  # clip the gradient norm at this value (0: off; the reference never clipped)
    accumulate: int = attrs.field(default=1, validator=_within(1, 2**20))  # batches per optimiser step
    # Validate, select and save an exponential moving average of the weights, with this decay per
    # optimiser step (0: off, the weights themselves); engine/averaging.py.
    ema: float = attrs.field(default=0.0, validator=[_v.ge(0.0), _v.lt(1.0)])
    amp: str = "auto"  # auto (bf16 where the device has it natively, else fp32) | off | bf16 | fp16 (GPU)
    compile: bool = False  # torch.compile the model
    validate_every: int = attrs.field(default=1, validator=_within(1, 10**7))  # epochs between validations
    # What picks the best checkpoint: val_loss (encoding + decoding loss on the validation split),
    # val_encoding_loss, val_decoding_loss, or a validation metric named
    # val_<task>_<modality>_<metric> (e.g. val_encoding_spikes_bps, val_decoding_choice_balanced_accuracy),
    # averaged over sessions; naming a metric makes validation score it.
    select: str = "val_loss"
    select_mode: str = "auto"  # min | max | auto (min for names ending in 'loss', else max)
    patience: int = attrs.field(default=0, validator=_within(0, 10**7))  # stop after this many validations without improvement (0: never)
    # Score the recipe's metrics on the validation split at every validation (learning curves in
    # the history and TensorBoard), not only when `select` names one.
    val_metrics: bool = False
    workers: int = attrs.field(default=0, validator=_within(0, 1024))  # DataLoader worker processes reading the store
    threads: int = attrs.field(default=0, validator=_within(0, 4096))  # torch CPU threads (0: torch's default)
    device: str = "auto"  # auto | cpu | cuda | cuda:N (under torchrun, auto is each rank's own GPU)
    # Learning rate under N processes (each takes batch_size trials per step, so the global batch
    # is N x batch_size): none keeps optimizer.lr, linear multiplies it by N, sqrt by sqrt(N).
    # The reference multiplied it by N without saying so; here it is a choice.
    lr_scaling: str = "none"
    # Treat subnormal floats (< 1.2e-38) as 0 on CPU: attention softmax tails underflow into
    # them and x86 computes with them ~100x slower (an 11x slower training step was measured).
    flush_denormal: bool = True
    progress: bool = True
    tensorboard: bool = True  # write TensorBoard events (per-step loss and lr, per-epoch summaries)
    # Keep whole sessions' arrays in memory, up to this many MiB (least recently used evicted),
    # so batches are sliced from RAM instead of decompressed from the store (0: always read).
    cache_mb: int = attrs.field(default=2048, validator=_within(0, 2**30))

    def check(self) -> None:
        if self.amp not in AMP_MODES:
            raise NedsError(f"train.amp: expected one of {', '.join(AMP_MODES)}, got {self.amp!r}")
        if min(self.epochs, self.batch_size, self.accumulate, self.validate_every) < 1:
            raise NedsError("train: epochs, batch_size, accumulate and validate_every must be at least 1")
        if self.select_mode not in ("auto", "min", "max"):
            raise NedsError(f"train.select_mode: expected auto, min or max, got {self.select_mode!r}")
        if self.lr_scaling not in ("none", "linear", "sqrt"):
            raise NedsError(f"train.lr_scaling: expected none, linear or sqrt, got {self.lr_scaling!r}")
        if self.amp == "fp16" and self.device == "cpu":
            raise NedsError("train.amp: fp16 autocast is for GPUs; on CPU use amp: bf16 (or auto)")
        if not self.select.startswith("val_"):
            raise NedsError(f"train.select: expected a validation score (val_loss, val_encoding_spikes_bps, ...), got {self.select!r}")

    @property
    def minimise(self) -> bool:
        return self.select.endswith("loss") if self.select_mode == "auto" else self.select_mode == "min"




TRAIN_ONLY = ("all", "new")


@attrs.frozen
class FinetuneSettings(TrainSettings):
    """The train stage's settings, plus where the pretrained model comes from (section ``finetune:``)."""

    pretrained: str = ""  # run folder of the pretrained run (holding run.h5 and recipe.yaml), or a .safetensors weights file
    checkpoint: str = "best"  # best | last
    train_only: str = "all"  # all | new (only the layers of sessions the pretrained model lacks)

    def check(self) -> None:
        super().check()
        if not self.pretrained:
            raise NedsError("finetune.pretrained: missing; give the run folder of the pretrained model, e.g. runs/mm_single, or a .safetensors weights file")
        if self.train_only not in TRAIN_ONLY:
            raise NedsError(f"finetune.train_only: expected all or new, got {self.train_only!r}")


#: Evaluation tasks a recipe can name (`variables`: one decoding task per behaviour variable).
TASKS = ("encoding", "decoding", "variables", "co_smoothing", "forward", "inter_region", "intra_region")


@attrs.frozen
class EvalSettings:
    """Settings of the eval stage (recipe section ``eval:``)."""

    split: str = "test"
    checkpoint: str = "best"  # best | last (best falls back to last when the run never validated)
    run: str = ""  # evaluate the model of this run folder (or .safetensors weights file) instead of this run's own
    # encoding, decoding, variables (one decoding task per behaviour); and the evaluations that
    # match the masking schemes: co_smoothing (held-out neurons), forward (last bins),
    # inter_region (each region from the others), intra_region (part of a region from the rest).
    tasks: tuple[str, ...] = ("encoding", "decoding")
    heldout_fraction: float = attrs.field(default=0.2, validator=_within(0.0, 1.0, low_open=True))  # co_smoothing: share of each session's neurons held out (fixed per session)
    forward_bins: int = attrs.field(default=20, validator=_within(1, 10**6))  # forward: how many final bins are predicted
    intra_fraction: float = attrs.field(default=0.5, validator=_within(0.0, 1.0, low_open=True))  # intra_region: share of a region hidden in each pass
    # Trial fields whose unique combinations are the PSTH conditions; empty: the ones the data
    # source recorded in the store (session meta `psth_conditions`; ibl: block, choice, reward).
    conditions: tuple[str, ...] = ()
    batch_size: int = attrs.field(default=64, validator=_within(1, 2**20))
    save_predictions: bool = True
    # What the evaluation writes beside run.h5, in order: registered reporters (neds_register_reporters).
    reporters: tuple[str, ...] = ("figures", "tensorboard", "card")  # card: MODEL_CARD.md + bwb_metadata.json (neds_export)
    figures: bool = True  # false: skip the figures reporter
    figure_sessions: int = attrs.field(default=2, validator=_within(0, 10**6))  # sessions that get per-session figures (the first ones)
    top_neurons: int = attrs.field(default=6, validator=_within(1, 10**6))  # neurons shown in the PSTH figure
    tensorboard: bool = True  # false: skip the tensorboard reporter
    threads: int = 0
    device: str = "auto"
    amp: str = "auto"  # as train.amp: auto (bf16 where the device has it natively) | off | bf16 | fp16 (GPU)

    def check(self) -> None:
        if self.amp not in AMP_MODES:
            raise NedsError(f"eval.amp: expected one of {', '.join(AMP_MODES)}, got {self.amp!r}")
        if self.amp == "fp16" and self.device == "cpu":
            raise NedsError("eval.amp: fp16 autocast is for GPUs; on CPU use amp: bf16 (or auto)")
        bad = [t for t in self.tasks if t not in TASKS]
        if bad:
            raise NedsError(f"eval.tasks: unknown task '{bad[0]}'; choose from {', '.join(TASKS)}")
        if self.split not in ("train", "val", "test"):
            raise NedsError(f"eval.split: expected train, val or test, got {self.split!r}")
        if self.batch_size < 1:
            raise NedsError("eval.batch_size: must be at least 1")

    def check_nested(self, registries) -> None:
        """Every reporter is registered (called by the recipe, so `validate` reports it)."""
        from neds_framework.recipe import SettingsError

        for i, name in enumerate(self.reporters):
            if name not in registries.reporters:
                raise SettingsError(registries.reporters.unknown_message(name), ("reporters", i))


#: Distributions a search space may use, as `{kind: arguments}` (Ray Tune's sampling functions).
SPACE_KINDS = {"uniform": 2, "loguniform": 2, "randint": 2, "choice": None, "grid": None}


def _check_space(instance, attribute, value):
    for key, spec in value.items():
        if not isinstance(spec, dict) or len(spec) != 1:
            raise ValueError(f"{key}: expected one of {{{', '.join(SPACE_KINDS)}}}: [...], e.g. {{loguniform: [1.0e-4, 1.0e-3]}}")
        (kind, args), = spec.items()
        if kind not in SPACE_KINDS:
            raise ValueError(f"{key}: unknown distribution '{kind}'; known: {', '.join(SPACE_KINDS)}")
        if not isinstance(args, list) or not args or (SPACE_KINDS[kind] and len(args) != SPACE_KINDS[kind]):
            raise ValueError(f"{key}: {kind} takes a list of {SPACE_KINDS[kind] or 'one or more'} values, got {args!r}")
        if key.split(".")[0] in ("stages", "run", "search", "data"):
            raise ValueError(f"{key}: the search cannot vary '{key.split('.')[0]}'")


@attrs.frozen
class SearchSettings:
    """The `search` stage (Ray Tune): which recipe keys to vary and how to compare trials."""

    # recipe key path -> {uniform|loguniform|randint: [low, high]} or {choice|grid: [values...]}
    space: dict[str, dict[str, list]] = attrs.field(factory=dict, validator=_check_space)
    samples: int = 10  # trials (each grid point counts `samples` times, as in Ray Tune)
    metric: str = "val_loss"  # a validation score (see train.select); reported after every validation
    mode: str = "auto"  # min | max | auto (min for names ending in 'loss')
    scheduler: str = "asha"  # asha (stops poor trials early) | fifo (runs every trial to the end)
    grace_period: int = 1  # ASHA: validations before a trial may be stopped
    reduction_factor: int = 2  # ASHA
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    max_concurrent: int = 0  # 0: as many as the CPUs allow
    seed: int = 0  # of the sampler

    def check(self) -> None:
        if not self.space:
            raise NedsError("search.space: empty; name the recipe keys to vary, e.g. train.optimizer.lr: {loguniform: [1.0e-4, 1.0e-3]}")
        if self.scheduler not in ("asha", "fifo"):
            raise NedsError(f"search.scheduler: expected asha or fifo, got {self.scheduler!r}")
        if self.mode not in ("auto", "min", "max"):
            raise NedsError(f"search.mode: expected auto, min or max, got {self.mode!r}")
        if self.samples < 1:
            raise NedsError("search.samples: must be at least 1")

    @property
    def resolved_mode(self) -> str:
        return ("min" if self.metric.endswith("loss") else "max") if self.mode == "auto" else self.mode


@attrs.frozen
class FitSettings(EvalSettings):
    """The `fit` stage: fit the recipe's closed-form model (a baseline) on the train split, then
    evaluate it exactly as the eval stage evaluates a trained model (same tasks, metrics, record)."""
