"""The `train` stage: the recipe's model, masker and optimiser over session-grouped batches.

One epoch is a plan of batches fixed by (seed, epoch) (`neds_framework.data.batches`); masks are
drawn from a generator whose state is checkpointed, as are the model, optimiser, schedule and
torch's RNG. A checkpoint is written to the run record after every epoch, so a run killed at any
point resumes from its last completed epoch and, on CPU, ends with exactly the weights of an
uninterrupted run.

Validation (every `validate_every` epochs) scores the evaluation tasks, not the training masks:
the encoding loss (all neural activity hidden) and the decoding loss (all behaviour hidden) on
the validation split; their sum is `val_loss`, the default selection score (the reference
selected on an average of bits per spike, accuracies and R², which mixes units). `train.select`
may name any other validation score, including a metric (`val_encoding_spikes_bps`), which then
gets computed on the validation split; the best checkpoint is the one with the best score.
"""

from __future__ import annotations

import contextlib
import math
import shutil
import sys
import time
from pathlib import Path

import attrs
import numpy as np
import torch
from tqdm import tqdm

from neds_framework import __version__
from neds_framework.data.batches import StoreBatches, batch_loader, plan_epoch, region_codes, shard
from neds_framework.data.store import SessionStore
from neds_framework.engine import distributed
from neds_framework.engine.averaging import WeightAverage
from neds_framework.engine.calibrate import calibrate_sessions
from neds_framework.engine.optim import build_optimizer, build_schedule
from neds_framework.engine.precision import autocast_factory, resolve_amp
from neds_framework.engine.stages.prepare import store_path
from neds_framework.engine.record import RunRecord
from neds_framework.engine.settings import TrainSettings
from neds_framework.engine.tensorboard import NullWriter, open_writer
from neds_framework.errors import NedsError, NedsRunError
from neds_framework.model.batch import Batch
from neds_framework.model.build import build_model, component_settings
from neds_framework.modality import modality_specs
from neds_framework.model.eval_masks import decoding_masks, encoding_masks
from neds_framework.recipe import dump_recipe

def session_features(store: SessionStore, modalities: list[str]) -> dict[str, dict[str, int]]:
    """eid -> modality -> input width of a bin, for the modalities the model uses."""
    out = {}
    for eid in store.eids:
        info = store.info(eid)
        widths = {}
        for name in modalities:
            if name in info.modalities:
                shape = store.read(eid, name, np.array([0])).shape
                widths[name] = shape[-1] if len(shape) == 3 else 1
        out[eid] = widths
    return out


@attrs.define
class Trainer:
    """Everything a training run holds; built from the run context."""

    context: object
    settings: TrainSettings
    store: SessionStore
    model: torch.nn.Module
    masker: object
    optimizer: torch.optim.Optimizer
    schedule: object
    device: torch.device
    record: RunRecord
    generator: torch.Generator
    # fp16 autocast needs loss scaling against gradient underflow; a disabled scaler is a no-op.
    scaler: torch.amp.GradScaler = attrs.field(default=None)
    epoch: int = 0
    step: int = 0
    best: float = float("inf")
    stale: int = 0
    writer: object = attrs.Factory(NullWriter)
    world: distributed.World = attrs.Factory(distributed.World)
    forward: object = None  # the DDP wrapper under torchrun; None: call the model itself
    on_validate: object = None  # called with each validated epoch's row (rank 0)
    batches: StoreBatches | None = None
    regions: dict = attrs.Factory(dict)  # eid -> (N,) region codes of its neurons
    specs: dict = attrs.Factory(dict)  # modality -> ModalitySpec, the recipe's modalities
    amp: str = "off"  # train.amp resolved for the device: off | bf16 | fp16
    average: WeightAverage | None = None  # train.ema: the weights' moving average, the run's model

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_context(cls, context, settings: TrainSettings | None = None, model: torch.nn.Module | None = None) -> "Trainer":
        """A trainer for the recipe; ``model`` (already holding every store session) replaces the
        recipe-built one (finetuning), and its frozen parameters stay out of the optimiser."""
        recipe = context.recipe
        settings = settings or recipe.section("train") or TrainSettings()
        settings.check()
        if recipe.masker is None:
            raise NedsError(f"{recipe.path}: masker: missing; the train stage needs one, e.g. masker: {{name: neds_multitask}}")
        if settings.threads:
            torch.set_num_threads(settings.threads)
        world = distributed.setup()
        torch.manual_seed(recipe.run.seed)
        store = SessionStore(store_path(recipe))
        n_bins = store.info(store.eids[0]).n_bins
        registries = context.plugins.registries
        features = session_features(store, list(recipe.modalities))
        specs = modality_specs(recipe.modalities, registries)
        if model is None:
            model = build_model(recipe, registries, features, n_bins)
            calibrate_sessions(model, store, store.eids, specs)
        device = distributed.pick_device(settings.device, "train.device")
        model.to(device)
        if settings.compile:
            model.compile()  # in place: state_dict keys stay those of the plain model
        masker = registries.maskers.get(recipe.masker.name).factory(component_settings(recipe.masker, registries))
        optimizer, schedule, lr = _optimisation(model, settings, store, recipe.run.seed, world)
        amp, amp_reason = resolve_amp(settings.amp, device)
        record = _new_record(context, store, model, features, n_bins, world, lr)
        record.meta.update(amp=amp, amp_reason=amp_reason)
        # Each rank draws its own masks; rank 0's stream is the single-process one.
        generator = torch.Generator().manual_seed(recipe.run.seed + 1_000_003 * world.rank)
        scaler = torch.amp.GradScaler(device.type, enabled=amp == "fp16")
        trainer = cls(context, settings, store, model, masker, optimizer, schedule, device, record, generator, scaler)
        trainer.best = float("inf") if settings.minimise else float("-inf")
        trainer.world = world
        trainer.specs = specs
        trainer.amp = amp
        if settings.ema:
            trainer.average = WeightAverage(model, settings.ema)
        if settings.progress and world.main:
            print(amp_reason, file=sys.stderr, flush=True)
        if world.distributed:
            trainer.forward = _distributed(model, device)
        return trainer

    # ------------------------------------------------------------------ checkpoints

    def state(self) -> dict:
        # Every rank's random streams, so a resumed multi-process run draws what it would have.
        generators = distributed.gather_objects((self.generator.get_state(), torch.get_rng_state()))
        state = {
            # Under train.ema the model is the average (what evaluation, finetuning and export read)
            # and the weights being trained travel beside it, for resuming.
            "model": self.average.model_state(self.model) if self.average else self.model.state_dict(),
            **({"train_model": self.model.state_dict()} if self.average else {}),
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(),
            "scaler": self.scaler.state_dict(),
            "generator": self.generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "rank_generators": [g for g, _ in generators],
            "rank_torch_rng": [r for _, r in generators],
            "epoch": self.epoch,
            "step": self.step,
            "best": self.best,
            "stale": self.stale,
        }
        return state

    def restore(self, record: RunRecord) -> None:
        state = record.checkpoint("last")
        self.model.load_state_dict(state.get("train_model", state["model"]))
        if self.average is not None:  # the saved average, or (a run saved without one) the weights
            self.average.load(state["model"] if "train_model" in state else self.model.state_dict())
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        generators, rngs = state.get("rank_generators") or [], state.get("rank_torch_rng") or []
        if len(generators) == self.world.size and len(rngs) == self.world.size:
            self.generator.set_state(generators[self.world.rank])
            torch.set_rng_state(rngs[self.world.rank])
        else:  # a checkpoint from another number of processes: rank 0's streams, offset per rank
            if self.world.distributed and self.world.main:
                print(f"resume: checkpoint from {len(generators) or 1} process(es), now {self.world.size}; "
                      "batches continue, random draws will differ from an uninterrupted run", file=sys.stderr)
            self.generator.set_state(state["generator"])
            torch.set_rng_state(state["torch_rng"])
        self.epoch, self.step = int(state["epoch"]), int(state["step"])
        self.best, self.stale = float(state["best"]), int(state["stale"])
        self.record.history = record.history
        self.record.checkpoints = record.checkpoints

    # ------------------------------------------------------------------ the loop

    def _autocast(self):
        return autocast_factory(self.amp, self.device)()

    def _batches(self, split: str, epoch: int, shuffle: bool):
        if self.batches is None:  # one reader for the run, so its session cache lasts across epochs
            self.batches = StoreBatches(self.store, self.specs, cache_bytes=self.settings.cache_mb * 2**20)
        keys = plan_epoch(self.store, split, self.settings.batch_size, self.context.recipe.run.seed, epoch, shuffle=shuffle)
        keys = shard(keys, self.world.rank, self.world.size)
        return keys, batch_loader(self.batches, keys, workers=self.settings.workers)

    def _to_batch(self, eid: str, values: dict) -> Batch:
        if eid not in self.regions:
            self.regions[eid] = region_codes(self.store, eid)[1].to(self.device)
        values = {k: v.to(self.device, non_blocking=True) for k, v in values.items()}
        return Batch(session=eid, values=values, specs=self.specs, regions=self.regions[eid])

    def train_epoch(self) -> dict[str, float]:
        s = self.settings
        self.model.train()
        keys, loader = self._batches("train", self.epoch, shuffle=True)
        bar = tqdm(total=len(keys), desc=f"epoch {self.epoch + 1}/{s.epochs}", disable=None if s.progress and self.world.main else True, file=sys.stderr, leave=False)
        totals: dict[str, float] = {}
        waited = busy = 0.0
        n_trials = 0
        tick = time.perf_counter()
        for i, (eid, values) in enumerate(loader):
            got = time.perf_counter()
            waited += got - tick
            batch = self._to_batch(eid, values)
            masks = self.masker(batch, self.generator)
            with self._autocast():
                out = self.forward(batch, masks)[1] if self.forward is not None else self.model(batch, masks)
            loss = float(out.loss.detach())
            if not math.isfinite(loss) and not self.world.distributed:  # before it reaches the weights
                raise NonFiniteLoss(f"train: the loss is {loss} at step {self.step + 1} (epoch {self.epoch + 1}, "
                                    f"session {eid}); lower train.optimizer.lr or set train.grad_clip. The run stopped "
                                    "there: its best and last checkpoints are from before")
            self.scaler.scale(out.loss / s.accumulate).backward()
            if (i + 1) % s.accumulate == 0 or i + 1 == len(keys):
                if s.grad_clip:
                    self.scaler.unscale_(self.optimizer)
                    torch.nn.utils.clip_grad_norm_(self.model.parameters(), s.grad_clip)
                self.scaler.step(self.optimizer)
                self.scaler.update()
                self.schedule.step()
                self.optimizer.zero_grad(set_to_none=True)
                self.step += 1
                if self.average is not None:
                    self.average.update(self.step)
            tick = time.perf_counter()
            busy += tick - got
            n_trials += batch.size
            row = {"loss": loss}
            row.update({f"loss_{k}": float(v[0].detach() / v[1].clamp(min=1)) for k, v in out.losses.items()})
            for k, v in row.items():
                totals[k] = totals.get(k, 0.0) + v * batch.size
            lr = self.schedule.get_last_lr()[0]
            self.record.log("step", {**row, "step": self.step, "epoch": self.epoch, "lr": lr})
            for key, value in row.items():
                self.writer.add_scalar(f"train/{key}", value, self.step)
            self.writer.add_scalar("train/lr", lr, self.step)
            bar.set_postfix(loss=f"{row['loss']:.4f}", trials_s=f"{n_trials / max(waited + busy, 1e-9):.1f}")
            bar.update()
            if s.max_steps and self.step >= s.max_steps:
                break
        bar.close()
        names = sorted(totals)
        summed = distributed.all_sum([totals[k] for k in names] + [n_trials], self.device)
        all_trials = summed[-1]
        summary = {f"train_{k}": v / max(all_trials, 1) for k, v in zip(names, summed)}
        if not math.isfinite(summary.get("train_loss", 0.0)):  # several processes: every rank sees the same sum
            raise NonFiniteLoss(f"train: the loss went non-finite in epoch {self.epoch + 1} (step {self.step}); lower "
                                "train.optimizer.lr or set train.grad_clip. This epoch's weights were not saved")
        # Throughput of the whole job; the wait share is this rank's.
        summary.update(trials_per_s=all_trials / max(waited + busy, 1e-9), data_wait_share=waited / max(waited + busy, 1e-9))
        return summary

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        self.model.eval()
        _, loader = self._batches("val", 0, shuffle=False)
        sums = {"encoding": 0.0, "decoding": 0.0}
        count = 0
        for eid, values in loader:
            batch = self._to_batch(eid, values)
            for task, make in (("encoding", encoding_masks), ("decoding", decoding_masks)):
                with self._autocast():
                    out = self.model(batch, make(batch))
                sums[task] += float(out.loss) * batch.size
            count += batch.size
        enc, dec, count = distributed.all_sum([sums["encoding"], sums["decoding"], count], self.device)
        result = {"val_encoding_loss": enc / max(count, 1), "val_decoding_loss": dec / max(count, 1)}
        result["val_loss"] = result["val_encoding_loss"] + result["val_decoding_loss"]
        if self.settings.select not in result or self.settings.val_metrics:
            if self.world.main:  # metrics on rank 0 over every session; the score is then shared
                result.update(self.validation_metrics())
            if self.settings.select not in result and self.world.main:
                known = ", ".join(sorted(result))
                raise NedsError(f"train.select: validation produced no '{self.settings.select}'; it produced: {known}")
            result[self.settings.select] = distributed.broadcast_value(result.get(self.settings.select, 0.0), self.device)
        return result

    def validation_metrics(self) -> dict[str, float]:
        """The recipe's metrics on the validation split, as val_<task>_<modality>_<metric> means over sessions."""
        from neds_framework.engine.eval_tables import summarise
        from neds_framework.engine.evaluate import evaluate_session, model_predictor, recipe_metrics

        recipe = self.context.recipe
        metrics = recipe_metrics(recipe, self.context.plugins.registries)
        predict = model_predictor(self.model, self._autocast)
        rows = []
        for eid in self.store.eids:
            if len(self.store.split(eid, "val")):
                result = evaluate_session(predict, self.store, eid, self.specs, metrics, "val",
                                          device=self.device, batch_size=max(self.settings.batch_size, 64), oracle=False)
                rows.extend(result.rows())
        return {f"val_{task}_{modality}_{metric}": mean for task, modality, metric, mean, _, _ in summarise(rows)}

    def improved(self, value: float) -> bool:
        if np.isnan(value):
            return False
        return value < self.best if self.settings.minimise else value > self.best

    def run(self) -> None:
        s = self.settings
        # Wall time of training (validation included), summed over resumes: the model card's compute.
        started, before = time.perf_counter(), float(self.record.meta_value("train_seconds", 0.0))
        while self.epoch < s.epochs and not (s.max_steps and self.step >= s.max_steps):
            row = {"epoch": self.epoch, **self.train_epoch()}
            row["step"] = self.step
            self.epoch += 1
            if self.epoch % s.validate_every == 0 or self.epoch == s.epochs:
                with self.average.swapped_in() if self.average else contextlib.nullcontext():
                    row.update(self.validate())
                if self.improved(row[s.select]):
                    self.best, self.stale = row[s.select], 0
                    self.record.put_checkpoint("best", self.state())  # every rank: state() gathers
                else:
                    self.stale += 1
            self.record.log("epoch", row)
            for key, value in row.items():
                if key != "epoch":
                    self.writer.add_scalar(f"epoch/{key}", value, self.epoch)
            self.record.put_checkpoint("last", self.state())
            self.record.meta["train_seconds"] = round(before + time.perf_counter() - started, 3)
            if self.world.main:  # only rank 0 writes
                self.record.save()
                self.writer.flush()
                print(
                    f"epoch {self.epoch}/{s.epochs}  loss {row['train_loss']:.4f}"
                    + (f"  val_loss {row['val_loss']:.4f}" if "val_loss" in row else "")
                    + f"  {row['trials_per_s']:.1f} trials/s  data wait {row['data_wait_share']:.1%}",
                    file=sys.stderr,
                )
            if self.on_validate is not None and self.world.main and s.select in row:
                self.on_validate(row)
            if s.patience and self.stale >= s.patience:  # the same on every rank: the scores are shared
                if self.world.main:
                    print(f"early stop: {s.select} has not improved for {s.patience} validations", file=sys.stderr)
                break


class _LossAndOutput(torch.nn.Module):
    """The model as DDP wants it: forward returns a tuple holding the loss tensor, from which
    DDP finds the parameters this step used (it cannot look inside a ModelOutput)."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, batch, masks):
        out = self.model(batch, masks)
        return out.loss, out


@contextlib.contextmanager
def flushed_denormals(enabled: bool):
    """Subnormal floats as zero while training, then IEEE behaviour again (it is process state)."""
    if not enabled:
        yield
        return
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(False)


def _model_sessions(model: torch.nn.Module, store_features: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    """Input widths of every session the model holds: the store's, plus those a finetuned model
    brought from its pretraining run."""
    carried = getattr(model, "carried_sessions", {})
    return {**carried, **store_features}


def train_model(context, settings: TrainSettings | None = None, model: torch.nn.Module | None = None,
                on_validate=None) -> Trainer:
    """Build (or take) the model, resume if asked, train; the stage body of train and finetune.

    ``on_validate(row)``, if given, is called on rank 0 with each epoch's row after validation
    (the search stage reports it to Ray Tune).
    """
    trainer = Trainer.from_context(context, settings, model)
    trainer.on_validate = on_validate
    resume = getattr(context, "resume", None)
    if resume is not None:
        trainer.restore(RunRecord.load(resume))
    elif distributed.world().main:  # a fresh run in a used folder: old logs and figures would mix with this one's
        for old in ("tensorboard", "figures"):
            shutil.rmtree(Path(context.run_dir) / old, ignore_errors=True)
    main = trainer.world.main
    trainer.writer = open_writer(context.run_dir, trainer.settings.tensorboard and main, purge_step=trainer.step + 1 if resume else None)
    try:
        with flushed_denormals(trainer.settings.flush_denormal and trainer.device.type == "cpu"):
            trainer.run()
    finally:
        trainer.writer.close()
    distributed.barrier()  # rank 0's record is on disk before any rank goes on to the next stage
    return trainer


def run_train(context) -> Path:
    return train_model(context).record.path


class NonFiniteLoss(NedsRunError):
    """Training produced a NaN or infinite loss (exit status 1: the run failed, the input was valid)."""


def _optimisation(model, settings: TrainSettings, store, seed: int, world):
    """(optimiser over the trainable parameters, its schedule over the run's steps, the
    effective learning rate after ``lr_scaling`` for the number of processes)."""
    scale = {"none": 1.0, "linear": float(world.size), "sqrt": world.size**0.5}[settings.lr_scaling]
    optimizer_settings = attrs.evolve(settings.optimizer, lr=settings.optimizer.lr * scale)
    optimizer = build_optimizer([p for p in model.parameters() if p.requires_grad], optimizer_settings)
    per_rank = len(shard(plan_epoch(store, "train", settings.batch_size, seed, 0), world.rank, world.size))
    steps = settings.epochs * -(-per_rank // settings.accumulate)
    if settings.max_steps:
        steps = min(steps, settings.max_steps)
    return optimizer, build_schedule(optimizer, settings.schedule, steps), optimizer_settings.lr


def _new_record(context, store, model, features, n_bins: int, world, lr: float) -> RunRecord:
    """The run record, with what reproduces and rebuilds the run in its meta."""
    recipe = context.recipe
    record = RunRecord(context.run_dir)
    record.meta.update(
        recipe=dump_recipe(recipe),
        framework_version=__version__,
        plugins={p.name: f"{p.distribution} {p.version}" for p in context.plugins.plugins},
        seed=recipe.run.seed,
        store_hash=store.settings_hash,
        torch_version=torch.__version__,
        # What `engine.trained` needs to rebuild this model: its sessions and their widths.
        model_sessions=_model_sessions(model, features),
        n_bins=n_bins,
        world_size=world.size,
        lr_effective=lr,
    )
    return record


def _distributed(model, device):
    """The model under DistributedDataParallel (as a loss-and-output module)."""
    from torch.nn.parallel import DistributedDataParallel

    # Batches of different sessions leave other sessions' layers unused on a rank.
    return DistributedDataParallel(_LossAndOutput(model), device_ids=[device.index] if device.type == "cuda" else None,
                                   find_unused_parameters=True)
