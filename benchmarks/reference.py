"""Run the reference NEDS code (github yzhang511/NEDS, MIT) on a session of our prepared store.

    python -m benchmarks.reference --reference /path/to/NEDS --store STORE.h5 --eid EID \\
        --steps N --seed S [--batch-size 16] [--layers L --hidden H --heads A --ffn F] [--lr LR] \\
        [--eval-every K] [--threads 1] [--reference-commit SHA] --out result.json

The point is a side-by-side check on identical data: the same trials, splits and scaled values
this project trains and scores on, fed to the reference's own model, masking, losses, optimiser
and schedule, and its predictions scored by this project's metric plugins through the function
our eval stage uses (`neds_framework.engine.evaluate.score`). No reference code lives in this
project: it is imported, in this process only, from the checkout given on the command line
(its ``src`` folder goes at the front of ``sys.path``; its top-level packages are ``utils``,
``models``, ``multi_modal``, ``trainer``, ``loader``).

What is the reference's code (called, unchanged):
- config: its ``src/configs/multi_modal/mm_single_session.yaml`` included as ``model`` into
  ``trainer_mm.yaml`` with its own ``utils.config_utils`` (``config_from_kwargs`` +
  ``update_config``), exactly as its ``train.py`` does for one session; then only the
  transformer size (``n_layers``, ``hidden_size``, ``n_heads``, ``inter_size``) from the CLI, and
  ``max_time_length``/``max_F`` set to the store's bins (100, as in its YAML). Dropouts (0.2
  embedder, 0.4 transformer), masker (temporal, ratio 0.3), fixup init, RoPE: its YAML.
- model: ``multi_modal.encoder_embeddings.EncoderEmbedding`` per modality (stitching on) and
  ``multi_modal.mm.MultiModal(model_mode="mm")``, built in the order and with the arguments of
  its ``train.py`` (spike, choice, block, wheel, whisker; ``eid_list = {eid: N}`` so N_max = this
  session's neuron count), after its ``utils.utils.set_seed(seed)``.
- training step: its ``trainer.base.MultiModalTrainer`` with ``mixed_training=True`` (as under
  ``--mixed_training``): each step is the body of its ``train_epoch`` loop:
  ``optimizer.zero_grad(); outputs = trainer._forward_model_inputs(batch, "mixed", None);
  accelerator.backward(outputs.loss); optimizer.step(); lr_scheduler.step()``, and every epoch
  starts with its ``trainer.base.set_seed(epoch, base_seed=seed)`` and ``model.train()``. So the
  per-sample multi-task masks (``MultiModal._prepare_mixed_masking``), the forward and the loss
  are its own.
- evaluation: the same trainer's ``_forward_model_inputs(batch, "encoding", "all")`` (all spike
  tokens masked, behaviour shown) and ``_forward_model_inputs(batch, "decoding")`` (all behaviour
  masked, spikes shown), i.e. its ``_prepare_multimodal_mask``, in eval mode under no_grad, as
  its ``_collect_eval_results``/``co_smoothing_eval`` do. Spikes: ``exp`` of its log-rates;
  wheel/whisker: its values; choice/block: its argmax (``mod_preds``).

What is our glue (this file):
- Batches: the store's split trials (our train/val/test indices, in our order) as the per-trial
  dicts its ``loader.base.BaseDataset._preprocess_ibl_data`` returns: ``spikes_data`` (T, N_max)
  float32 padded with -1 on the neuron axis (``pad_value=-1.`` in its ``train.py``),
  ``time_attn_mask`` ones (T,), ``space_attn_mask`` (N_max,), ``spikes_timestamps`` /
  ``spikes_spacestamps`` aranges, ``eid``, ``choice``/``block`` as float32 class indices of
  shape (1,) (its lookups map IBL choice -1/+1 and block 0.2/0.5/0.8 to 0/1 and 0/1/2, as our
  store does), ``wheel``/``whisker`` (T,), ``target`` (T, dynamic + 2). Its loader is a plain
  ``torch.utils.data.DataLoader(shuffle=True, generator=torch.Generator().manual_seed(seed))``
  (``loader/make_loader.py``); ours is the same call over these dicts, so the trial order per
  epoch is what its loader would draw with that seed. (``pin_memory`` and ``worker_init_fn``
  are left out: no workers, CPU.) ``tests/test_reference_runner.py`` checks item by item
  against its own ``BaseDataset`` when a checkout is available.
- Session embedding: its ``EncoderEmbeddingLayer`` indexes a table built from
  ``data/train_eids.txt`` + ``data/test_eids.txt`` (module global ``INCLUDE_EIDS`` of
  ``multi_modal.encoder_embeddings``, read when an embedding layer is built). Our generated eid is
  appended to that list in memory before the model is built, which is what adding it as the
  85th line of its eid files would do; its files are not touched. The index is recorded.
- accelerate: its trainer reads ``accelerator.device``, ``.backward`` and ``.is_main_process``.
  On one process ``Accelerator().prepare`` wraps model, optimiser, scheduler and loader in
  pass-throughs (one scheduler step per optimiser step, same sampler order), so a small
  stand-in object with those three attributes replaces it; accelerate is not needed.
- wandb: its ``trainer/base.py`` imports wandb; where wandb is not installed a stand-in module
  (``init``/``log``/``Image`` doing nothing) is put into ``sys.modules`` before the import. It
  is only called when its config logs to wandb, which the step above never does.
- Installed for real (``pip install -e '.[reference]'``): transformers (its ``ACT2FN``), einops
  (imported by ``mm.py``/``mm_utils.py``), torcheval (imported by ``utils/utils.py``).
  PyYAML, scikit-learn, scipy, matplotlib, tqdm are already dependencies here. ``datasets`` is
  not needed (its data loading is replaced by the store reader above).

Deviations from its ``train.py``/trainer, and why:
- ``total_steps`` of OneCycleLR is ``--steps`` (its formula: epochs x floor(train/batch)); the
  run stops after exactly ``--steps`` optimiser steps, which may end inside an epoch.
- the seed: its ``train.py`` seeds 42 (``config.seed``) for init and loader, and its trainer
  ``42 + epoch`` per epoch; here ``--seed`` takes the place of 42 (``--seed 42`` is its own).
  Model init follows ``set_seed(seed)`` directly (its ``train.py`` loads data in between).
- learning-curve evaluations run every ``--eval-every`` steps (its trainer: every epoch, on val
  with balanced accuracy); the RNG states are saved and restored around each one, so the
  training trajectory does not depend on ``--eval-every``.
- per-modality loss tensors are not summed over the epoch (its trainer keeps them, with their
  graphs, for logging only: memory, not numerics); no checkpoints, plots or wandb.
- ``--lr`` overrides the YAML's 2e-4 (both AdamW's lr and OneCycleLR's max_lr, as in its code).

Output JSON (written atomically): ``reference_commit``, ``eid``, ``steps``, ``seed``,
``settings``, ``test`` (``encoding/spikes/bps``, ``decoding/<var>/<metric>`` for every metric
of our registry, ``oracle/spikes/bps`` where the store has true rates), ``curve`` (val split:
step, epoch, lr, train_loss, bps, wheel_r2, whisker_r2, choice/block accuracies), ``wall_s``,
``train_s``, ``trials_per_s`` (training trials per second of training steps), ``machine``.

`run_reference(...)` runs this CLI in a subprocess and returns the JSON, for the benchmark suite.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

import numpy as np
import torch

from neds_framework.atomic import atomic_write_text
from neds_framework.errors import NedsError

from ._results import machine

ROOT = Path(__file__).resolve().parents[1]

#: Files a NEDS checkout must have for this runner (checked in this order).
REFERENCE_FILES = (
    "src/multi_modal/mm.py",
    "src/multi_modal/encoder_embeddings.py",
    "src/multi_modal/mm_utils.py",
    "src/models/masker.py",
    "src/models/stitcher.py",
    "src/trainer/base.py",
    "src/utils/config_utils.py",
    "src/utils/utils.py",
    "src/configs/multi_modal/mm_single_session.yaml",
    "src/configs/multi_modal/trainer_mm.yaml",
    "data/train_eids.txt",
    "data/test_eids.txt",
)
#: (reference name, our name), in the order of its train.py: neural, static, dynamic.
MODALITIES = (("spike", "spikes"), ("choice", "choice"), ("block", "block"), ("wheel", "wheel"), ("whisker", "whisker"))
STATIC = ("choice", "block")
DYNAMIC = ("wheel", "whisker")
#: Its top-level packages; an import error naming one of these is a checkout problem, not a pip one.
REFERENCE_PACKAGES = ("utils", "models", "multi_modal", "trainer", "loader")
#: Import name -> pip package, where they differ.
PIP_NAMES = {"sklearn": "scikit-learn", "yaml": "PyYAML", "PIL": "pillow"}
PAD_VALUE = -1.0  # its train.py: make_loader(..., pad_value=-1.)
ROPE_POSITIONS = 200  # its Attention's RoPE table: max_F (100) x n_mod (2) positions by default


# --------------------------------------------------------------------------- store -> its batches


def session_modalities(store, eid: str) -> list[tuple[str, str]]:
    """(reference name, our name) of the modalities of the session its mm model takes, in its order."""
    have = store.info(eid).modalities
    if "spikes" not in have:
        raise NedsError(f"{store.path}: session {eid} has no spikes; the reference's model needs them")
    return [(ref, ours) for ref, ours in MODALITIES if ours in have]


def read_split(store, eid: str, split: str, modalities: list[tuple[str, str]]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(trial indices of our split, in our order; {our modality name: store values of those trials})."""
    trials = np.asarray(store.split(eid, split), dtype=np.int64)
    values = {}
    for _, ours in modalities:
        array = store.read(eid, ours, trials)
        values[ours] = array.astype(np.int64 if ours in STATIC else np.float32)
    return trials, values


def reference_items(eid: str, values: dict[str, np.ndarray], n_max: int | None = None) -> list[dict]:
    """One dict per trial, as its ``BaseDataset._preprocess_ibl_data`` returns (see the module doc)."""
    spikes = values["spikes"]
    k, t, n = spikes.shape
    n_max = n if n_max is None else n_max
    if n_max < n:
        raise ValueError(f"n_max {n_max} < the session's {n} neurons")
    padded = np.full((k, t, n_max), PAD_VALUE, dtype=np.float32)
    padded[:, :, :n] = spikes
    space_mask = np.zeros(n_max, dtype=np.int64)
    space_mask[:n] = 1
    dynamic = [name for name in DYNAMIC if name in values]
    items = []
    for i in range(k):
        item = {
            "spikes_data": padded[i],
            "time_attn_mask": np.ones(t, dtype=np.int64),
            "space_attn_mask": space_mask.copy(),
            "spikes_timestamps": np.arange(t, dtype=np.int64),
            "spikes_spacestamps": np.arange(n_max, dtype=np.int64),
            "eid": eid,
        }
        columns = [values[name][i].astype(np.float32) for name in dynamic]
        for name in STATIC:
            if name in values:
                item[name] = np.asarray([values[name][i]], dtype=np.float32)
                columns.append(np.full(t, values[name][i], dtype=np.float32))
        for name in dynamic:
            item[name] = values[name][i].astype(np.float32)
        item["target"] = np.stack(columns, axis=1) if columns else np.full((t, 0), np.nan, np.float32)
        items.append(item)
    return items


def reference_loader(items: list[dict], batch_size: int, seed: int, shuffle: bool) -> torch.utils.data.DataLoader:
    """The loader its ``loader.make_loader.make_loader`` builds (no workers, no pinning)."""
    generator = torch.Generator()
    generator.manual_seed(seed)
    return torch.utils.data.DataLoader(items, batch_size=batch_size, shuffle=shuffle, generator=generator)


# --------------------------------------------------------------------------- its code


def check_checkout(reference: Path) -> None:
    reference = Path(reference)
    if not reference.is_dir():
        raise NedsError(f"--reference {reference}: no such folder; give the root of a checkout of yzhang511/NEDS")
    for rel in REFERENCE_FILES:
        if not (reference / rel).is_file():
            raise NedsError(f"--reference {reference}: not a NEDS checkout (expected the file {rel})")
    if ":" in str((reference / "src").resolve()):
        raise NedsError(f"--reference {reference}: its config includes cannot take a path with ':' in it; move the checkout")


def pip_name(module: str) -> str:
    top = module.split(".")[0]
    return PIP_NAMES.get(top, top)


def _wandb_stand_in() -> None:
    """A do-nothing wandb for its trainer module's import, unless the real one is installed."""
    if "wandb" in sys.modules or importlib.util.find_spec("wandb") is not None:
        return
    module = types.ModuleType("wandb")
    module.init = module.log = module.finish = lambda *a, **k: None
    module.Image = lambda *a, **k: None
    module.__neds_stand_in__ = True
    sys.modules["wandb"] = module


def import_reference(reference: Path) -> types.SimpleNamespace:
    """Its modules, imported from ``<reference>/src`` (put at the front of this process's sys.path)."""
    reference = Path(reference).resolve()
    check_checkout(reference)
    src = reference / "src"
    for name in REFERENCE_PACKAGES:
        module = sys.modules.get(name)
        where = getattr(module, "__file__", None) or next(iter(getattr(module, "__path__", [])), None)
        if module is not None and (where is None or not Path(where).resolve().is_relative_to(src)):
            raise NedsError(f"a module named '{name}' is already imported from {where}; the reference's "
                            f"'{name}' cannot be loaded beside it (run in a fresh process)")
    if str(src) not in sys.path:
        sys.path.insert(0, str(src))
    _wandb_stand_in()
    os.environ.setdefault("MPLBACKEND", "Agg")
    try:
        names = {
            "config_utils": "utils.config_utils",
            "utils": "utils.utils",
            "mm": "multi_modal.mm",
            "embeddings": "multi_modal.encoder_embeddings",
            "trainer": "trainer.base",
        }
        modules = {key: importlib.import_module(name) for key, name in names.items()}
    except ModuleNotFoundError as exc:
        missing = exc.name or str(exc)
        if missing.split(".")[0] in REFERENCE_PACKAGES:
            raise NedsError(f"--reference {reference}: not a NEDS checkout (cannot import its module '{missing}')") from None
        pip = pip_name(missing)
        raise NedsError(f"the reference's code needs the Python package '{pip}' (module '{missing}' not found): "
                        f"pip install {pip}, or pip install -e '.[reference]'") from None
    return types.SimpleNamespace(path=reference, **modules)


def reference_config(ref: types.SimpleNamespace, n_bins: int, layers=None, hidden=None, heads=None, ffn=None):
    """Its single-session config, as its train.py builds it, with the size from the CLI."""
    configs = ref.path / "src" / "configs" / "multi_modal"
    config = ref.config_utils.config_from_kwargs({"model": f"include:{configs / 'mm_single_session.yaml'}"})
    config = ref.config_utils.update_config(str(configs / "trainer_mm.yaml"), config)
    transformer = config["model"]["encoder"]["transformer"]
    for key, value in (("n_layers", layers), ("hidden_size", hidden), ("n_heads", heads), ("inter_size", ffn)):
        if value is not None:
            transformer[key] = int(value)
    if transformer["hidden_size"] % transformer["n_heads"]:
        raise NedsError(f"--hidden {transformer['hidden_size']} is not a multiple of --heads {transformer['n_heads']}")
    if n_bins > ROPE_POSITIONS:
        raise NedsError(f"the store's trials have {n_bins} bins; the reference's RoPE table holds {ROPE_POSITIONS}")
    config["data"]["max_time_length"] = n_bins
    config["model"]["encoder"]["embedder"]["max_F"] = n_bins
    return config


def register_session(ref: types.SimpleNamespace, eid: str) -> int:
    """Our eid's row in its session-embedding table: appended to its in-memory eid list if new."""
    lookup = list(ref.embeddings.INCLUDE_EIDS)
    if eid not in lookup:
        lookup.append(eid)
        ref.embeddings.INCLUDE_EIDS = lookup  # read by EncoderEmbeddingLayer.__init__ at build time
    return lookup.index(eid)


class OneProcess:
    """What its trainer reads of accelerate's ``Accelerator`` when it runs on one process."""

    is_main_process = True
    num_processes = 1

    def __init__(self, device: str):
        self.device = torch.device(device)

    def backward(self, loss: torch.Tensor) -> None:
        loss.backward()


def build(ref, config, eid: str, n_neurons: int, modalities: list[tuple[str, str]], seed: int, device: str):
    """(model, meta_data) as its train.py builds them for one session in "mm" mode."""
    mods = [r for r, _ in modalities]
    eid_list = {eid: int(n_neurons)}
    meta = {"num_neurons": [int(n_neurons)], "num_sessions": 1, "eids": {eid}, "eid_list": eid_list}
    ref.utils.set_seed(seed)
    hidden = config.model.encoder.transformer.hidden_size
    embeddings = {
        mod: ref.embeddings.EncoderEmbedding(
            hidden_size=hidden, n_channel=hidden, output_channel=hidden, stitching=True,
            eid_list=eid_list, mod=mod, config=config.model.encoder, max_F=config.data.max_time_length,
        )
        for mod in mods
    }
    model = ref.mm.MultiModal(
        embeddings, avail_mod=mods, avail_beh=[m for m in mods if m != "spike"], model_mode="mm",
        config=config.model, **config.method.model_kwargs, **meta,
    )
    return model.to(device), meta


def optimiser_and_schedule(ref_config, model, steps: int, lr: float | None):
    """AdamW + its scheduler (OneCycleLR for ``scheduler: cosine``), with total_steps = steps."""
    opt = ref_config.optimizer
    max_lr = float(opt.lr if lr is None else lr)
    optimizer = torch.optim.AdamW(model.parameters(), lr=max_lr, weight_decay=opt.wd, eps=opt.eps)
    if opt.scheduler == "cosine":
        schedule = torch.optim.lr_scheduler.OneCycleLR(
            optimizer=optimizer, total_steps=steps, max_lr=max_lr, pct_start=opt.warmup_pct,
            div_factor=opt.div_factor, anneal_strategy="cos",
        )
    elif opt.scheduler == "linear":
        schedule = torch.optim.lr_scheduler.LinearLR(optimizer, total_iters=steps)
    else:
        raise NedsError(f"the reference's trainer config names scheduler {opt.scheduler!r}, which its train.py does not build")
    return optimizer, schedule, max_lr


@contextlib.contextmanager
def kept_rng():
    """Run a block without moving torch's, numpy's or Python's global random streams."""
    states = torch.get_rng_state(), np.random.get_state(), random.getstate()
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    try:
        yield
    finally:
        torch.set_rng_state(states[0])
        np.random.set_state(states[1])
        random.setstate(states[2])
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)


# --------------------------------------------------------------------------- predicting and scoring


def predict(trainer, model, items: list[dict], batch_size: int, n_neurons: int,
            modalities: list[tuple[str, str]]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """({our name: prediction}, {our name: its target}) over items, under its inference masks."""
    behaviour = [(r, o) for r, o in modalities if r != "spike"]
    preds: dict[str, list] = {o: [] for _, o in modalities}
    targets: dict[str, list] = {o: [] for _, o in modalities}
    was_training = model.training
    model.eval()
    with torch.no_grad(), kept_rng():
        for batch in reference_loader(items, batch_size, seed=0, shuffle=False):
            enc = trainer._forward_model_inputs(batch, training_mode="encoding", enc_task_var="all")
            preds["spikes"].append(torch.exp(enc.mod_preds["spike"][..., :n_neurons]).float().cpu().numpy())
            targets["spikes"].append(enc.mod_targets["spike"][..., :n_neurons].float().cpu().numpy())
            if not behaviour:
                continue
            dec = trainer._forward_model_inputs(batch, training_mode="decoding")
            for ref_name, ours in behaviour:
                pred, target = dec.mod_preds[ref_name], dec.mod_targets[ref_name]
                if ref_name in STATIC:  # its argmax of the logits, and the class of its one-hot target
                    pred, target = pred.long().reshape(-1), target.long().reshape(-1)
                else:
                    pred, target = pred.float().reshape(pred.shape[0], -1), target.float().reshape(target.shape[0], -1)
                preds[ours].append(pred.cpu().numpy())
                targets[ours].append(target.cpu().numpy())
    model.train(was_training)
    return ({k: np.concatenate(v) for k, v in preds.items() if v},
            {k: np.concatenate(v) for k, v in targets.items() if v})


def input_leak(trainer, model, eid: str, values: dict[str, np.ndarray], preds: dict[str, np.ndarray],
               batch_size: int, n_neurons: int, modalities: list[tuple[str, str]]) -> dict[str, float]:
    """Per behaviour: the largest change of its decoding prediction when every behaviour value of
    the input is moved to the next trial (a roll over trials). Under the decoding masks the model
    must not see them, so every entry should be exactly 0; anything else means its inputs expose
    the targets and its decoding scores cannot be compared."""
    behaviour = [o for r, o in modalities if r != "spike"]
    if not behaviour or len(values["spikes"]) < 2:
        return {}
    rolled = {k: (np.roll(v, 1, axis=0) if k in behaviour else v) for k, v in values.items()}
    moved, _ = predict(trainer, model, reference_items(eid, rolled), batch_size, n_neurons, modalities)
    return {name: float(np.nanmax(np.abs(moved[name].astype(np.float64) - preds[name].astype(np.float64))))
            for name in behaviour}


def check_targets(ref_targets: dict[str, np.ndarray], values: dict[str, np.ndarray]) -> None:
    """Its targets must be the store's values, trial for trial: anything else is a wiring bug here."""
    for name, target in ref_targets.items():
        if target.shape != values[name].shape or not np.allclose(target, values[name]):
            raise RuntimeError(f"the reference's {name} targets differ from the store's values "
                               f"(shapes {target.shape} vs {values[name].shape}): the batch conversion is wrong")


def our_metrics() -> dict[str, object]:
    """Every registered metric, constructed as our eval stage does for a recipe that names none."""
    from neds_framework.engine.evaluate import recipe_metrics
    from neds_framework.plugins import get_plugins

    return recipe_metrics(types.SimpleNamespace(metrics=()), get_plugins().registries)


def score_all(metrics, store, eid: str, trials: np.ndarray, preds: dict, values: dict, truth: bool = False) -> dict[str, float]:
    """'<task>/<modality>/<metric>' -> value, scored by our `score` on the store's targets."""
    from neds_framework.engine.evaluate import score, trial_conditions
    from neds_framework.engine.settings import EvalSettings
    from neds_framework.plugins import get_plugins

    specs = get_plugins().registries.modalities
    labels = trial_conditions(store, eid, trials, EvalSettings().conditions)  # () : the store's own
    out: dict[str, float] = {}
    for name, prediction in preds.items():
        spec = specs.get(name).factory
        task = "encoding" if spec.neural else "decoding"
        scored, _ = score(metrics, name, spec, prediction, values[name], labels)
        out.update({f"{task}/{name}/{key}": value for key, value in scored.scalars.items()})
    if truth and "rates" in store.info(eid).truth:
        rates = store.read_truth(eid, "rates", trials).astype(np.float32)
        scored, _ = score(metrics, "spikes", specs.get("spikes").factory, rates, values["spikes"], labels)
        out.update({f"oracle/spikes/{key}": value for key, value in scored.scalars.items()})
    return out


CURVE_KEYS = {
    "bps": "encoding/spikes/bps",
    "wheel_r2": "decoding/wheel/r2",
    "whisker_r2": "decoding/whisker/r2",
    "choice_accuracy": "decoding/choice/accuracy",
    "choice_balanced_accuracy": "decoding/choice/balanced_accuracy",
    "block_accuracy": "decoding/block/accuracy",
    "block_balanced_accuracy": "decoding/block/balanced_accuracy",
}


def _clean(value):
    """JSON-safe: NaN/inf as None."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


# --------------------------------------------------------------------------- the run


def reference_commit(reference: Path, given: str | None) -> str:
    if given:
        return given
    if (Path(reference) / ".git").exists():
        done = subprocess.run(["git", "-C", str(reference), "rev-parse", "HEAD"], capture_output=True, text=True)
        if done.returncode == 0:
            return done.stdout.strip()
    return "unknown (not a git work tree; pass --reference-commit)"


def run(args: argparse.Namespace) -> dict:
    from neds_framework.data.store import SessionStore

    start = time.perf_counter()
    torch.set_num_threads(args.threads)
    if args.steps < 1 or args.batch_size < 1 or args.eval_every < 0 or args.eval_batch_size < 1:
        raise NedsError("--steps, --batch-size and --eval-batch-size must be >= 1 and --eval-every >= 0")
    store = SessionStore(args.store)
    if args.eid not in store.eids:
        shown = ", ".join(store.eids[:10]) or "none"
        raise NedsError(f"{store.path}: no session {args.eid!r}; it holds {shown}")
    ref = import_reference(Path(args.reference))
    info = store.info(args.eid)
    modalities = session_modalities(store, args.eid)
    splits = {name: read_split(store, args.eid, name, modalities) for name in ("train", "val", "test")}
    if not len(splits["train"][0]):
        raise NedsError(f"{store.path}: session {args.eid} has no train trials")
    items = {name: reference_items(args.eid, values) for name, (_, values) in splits.items()}

    config = reference_config(ref, info.n_bins, args.layers, args.hidden, args.heads, args.ffn)
    session_index = register_session(ref, args.eid)
    model, meta = build(ref, config, args.eid, info.n_neurons, modalities, args.seed, args.device)
    optimizer, schedule, max_lr = optimiser_and_schedule(config, model, args.steps, args.lr)
    loader = reference_loader(items["train"], args.batch_size, args.seed, shuffle=True)
    mods = [r for r, _ in modalities]
    trainer = ref.trainer.MultiModalTrainer(
        model=model, train_dataloader=loader, eval_dataloader=None, optimizer=optimizer,
        log_dir=None, accelerator=OneProcess(args.device), lr_scheduler=schedule,
        avail_mod=mods, avail_beh=[m for m in mods if m != "spike"],
        modal_filter={"input": mods, "output": mods}, mixed_training=True, enc_task_var="all",
        config=config, multi_gpu=False, start_epoch=0, **meta,
    )
    metrics = our_metrics()
    n = info.n_neurons
    say = (lambda *a: None) if args.quiet else (lambda *a: print(*a, file=sys.stderr, flush=True))
    say(f"reference NEDS on {args.eid}: {n} neurons, {len(splits['train'][0])} train trials, "
        f"{sum(p.numel() for p in model.parameters())} parameters, {args.steps} steps")

    curve, losses = [], []
    step, epoch, trained, train_s = 0, 0, 0, 0.0
    steps_per_epoch = len(loader)
    while step < args.steps:
        ref.trainer.set_seed(epoch, base_seed=args.seed)  # its train_epoch: set_seed(epoch) (base 42)
        model.train()
        for batch in loader:
            tick = time.perf_counter()
            optimizer.zero_grad()
            outputs = trainer._forward_model_inputs(batch, trainer.training_mode, None)
            loss = outputs.loss
            trainer.accelerator.backward(loss)
            optimizer.step()
            schedule.step()
            train_s += time.perf_counter() - tick
            losses.append(float(loss.item()))
            trained += len(batch["eid"])
            step += 1
            if step == args.steps or (args.eval_every and step % args.eval_every == 0):
                trials, values = splits["val"]
                entry = {"step": step, "epoch": step / steps_per_epoch, "lr": float(schedule.get_last_lr()[0]),
                         "train_loss": float(np.mean(losses)), "elapsed_s": time.perf_counter() - start}
                losses = []
                if len(trials):
                    preds, _ = predict(trainer, model, items["val"], args.eval_batch_size, n, modalities)
                    scores = score_all(metrics, store, args.eid, trials, preds, values)
                    entry.update({short: scores.get(key, float("nan")) for short, key in CURVE_KEYS.items()})
                curve.append(entry)
                say(f"step {step}/{args.steps}  loss {entry['train_loss']:.4f}  val bps {entry.get('bps', float('nan')):.4f}"
                    f"  wheel r2 {entry.get('wheel_r2', float('nan')):.4f}  ({entry['elapsed_s']:.0f} s)")
            if step == args.steps:
                break
        epoch += 1

    trials, values = splits["test"]
    test: dict[str, float] = {}
    leak: dict[str, float] = {}
    if len(trials):
        preds, ref_targets = predict(trainer, model, items["test"], args.eval_batch_size, n, modalities)
        check_targets(ref_targets, values)
        test = score_all(metrics, store, args.eid, trials, preds, values, truth=True)
        leak = input_leak(trainer, model, args.eid, values, preds, args.eval_batch_size, n, modalities)
    tr = config.model.encoder.transformer
    settings = {
        "layers": tr.n_layers, "hidden": tr.hidden_size, "heads": tr.n_heads, "ffn": tr.inter_size,
        "dropout_transformer": tr.dropout, "dropout_embedder": config.model.encoder.embedder.dropout,
        "mask_mode": config.model.masker.mode, "mask_ratio": config.model.masker.ratio,
        "mixed_training": True, "lr": max_lr, "wd": config.optimizer.wd, "eps": config.optimizer.eps,
        "scheduler": config.optimizer.scheduler, "pct_start": config.optimizer.warmup_pct,
        "div_factor": config.optimizer.div_factor, "total_steps": args.steps, "batch_size": args.batch_size,
        "eval_batch_size": args.eval_batch_size, "eval_every": args.eval_every, "steps_per_epoch": steps_per_epoch,
        "epochs": args.steps / steps_per_epoch, "n_max": n, "n_bins": info.n_bins,
        "modalities": [o for _, o in modalities], "session_embedding_index": session_index,
        "session_embedding_rows": len(ref.embeddings.INCLUDE_EIDS),
        "trials": {name: int(len(t)) for name, (t, _) in splits.items()},
        "threads": args.threads, "device": args.device, "store": str(Path(args.store).resolve()),
        "reference_path": str(ref.path), "wandb_stand_in": bool(getattr(sys.modules.get("wandb"), "__neds_stand_in__", False)),
    }
    return _clean({
        "reference_commit": reference_commit(ref.path, args.reference_commit),
        "eid": args.eid, "steps": args.steps, "seed": args.seed, "settings": settings, "test": test,
        "curve": curve, "input_leak": leak, "wall_s": time.perf_counter() - start, "train_s": train_s,
        "trials_per_s": trained / train_s if train_s > 0 else float("nan"), "machine": machine(),
    })


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.reference", description=__doc__.split("\n\n")[0])
    p.add_argument("--reference", required=True, help="root of a NEDS checkout (has src/ and data/)")
    p.add_argument("--check", action="store_true",
                   help="only import its code (checkout and Python packages) and exit: 0 when it would run")
    p.add_argument("--store", help="our prepared HDF5 store")
    p.add_argument("--eid")
    p.add_argument("--steps", type=int, help="optimiser steps (= OneCycleLR total_steps)")
    p.add_argument("--seed", type=int, default=42, help="its 42: init, loader order, per-epoch reseeding")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--eval-batch-size", type=int, default=16, help="its trainer_mm.yaml test_batch_size")
    p.add_argument("--layers", type=int)
    p.add_argument("--hidden", type=int)
    p.add_argument("--heads", type=int)
    p.add_argument("--ffn", type=int)
    p.add_argument("--lr", type=float, help="overrides its trainer_mm.yaml lr (2e-4)")
    p.add_argument("--eval-every", type=int, default=0, help="score val every K steps (and at the last step)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--reference-commit", help="the checkout's commit, when it is not a git work tree")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--out")
    return p


def main(argv: list[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    if not args.check:
        missing = [f"--{name.replace('_', '-')}" for name in ("store", "eid", "steps", "out") if getattr(args, name) is None]
        if missing:
            p.error(f"the following arguments are required: {', '.join(missing)}")
    try:
        if args.check:
            import_reference(Path(args.reference))
            return 0
        result = run(args)
    except NedsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")
    if not args.quiet:
        print(f"wrote {args.out}", file=sys.stderr)
    return 0


def preflight(reference: Path, timeout: float = 300) -> None:
    """Raise `NedsError` (one line) unless the reference's code imports from ``reference`` here: the
    checkout's files and the Python packages it needs (torcheval, einops, transformers). Benchmarks
    call it before their first run, so a missing package is found in seconds, not after hours of
    this project's runs. It imports in a subprocess, so this process stays free of its modules."""
    cmd = [sys.executable, "-m", "benchmarks.reference", "--reference", str(reference), "--check"]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
        # Its one line already names the checkout or the missing package and how to fix it.
        raise NedsError(lines[-1].removeprefix("error: ") if lines else f"--reference {reference}: the import check "
                        f"failed with exit status {done.returncode}")


def run_reference(reference: Path, store: Path, eid: str, steps: int, seed: int = 42, *, out: Path | None = None,
                  batch_size: int = 16, layers: int | None = None, hidden: int | None = None,
                  heads: int | None = None, ffn: int | None = None, lr: float | None = None,
                  eval_every: int = 0, threads: int = 1, reference_commit: str | None = None,
                  timeout: float | None = None) -> dict:
    """Run the CLI in a subprocess (its imports stay out of this process) and return its JSON."""
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(out) if out is not None else Path(tmp) / "reference.json"
        cmd = [sys.executable, "-m", "benchmarks.reference", "--reference", str(reference), "--store", str(store),
               "--eid", eid, "--steps", str(steps), "--seed", str(seed), "--batch-size", str(batch_size),
               "--eval-every", str(eval_every), "--threads", str(threads), "--out", str(target), "--quiet"]
        for flag, value in (("--layers", layers), ("--hidden", hidden), ("--heads", heads), ("--ffn", ffn),
                            ("--lr", lr), ("--reference-commit", reference_commit)):
            if value is not None:
                cmd += [flag, str(value)]
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
        done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
            raise NedsError(f"reference run failed: {lines[-1] if lines else f'exit status {done.returncode}'}")
        return json.loads(target.read_text())


if __name__ == "__main__":
    sys.exit(main())
