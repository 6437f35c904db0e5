"""benchmarks/reference.py: our store as the reference NEDS code's batches, and the runner end to end.

The conversion tests need no reference checkout. The tests marked `needs_reference` run the
reference's own code and are skipped unless NEDS_REFERENCE points to a checkout of
yzhang511/NEDS (with transformers, einops and torcheval installed: pip install -e '.[reference]').
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks import reference as R
from neds_framework import cli
from neds_framework.data.store import SessionStore
from neds_framework.errors import NedsError
from neds_framework.plugins import reset_plugins

ROOT = Path(__file__).resolve().parents[1]
COMMON = ROOT / "recipes" / "common" / "neds_mm.yaml"
CHECKOUT = os.environ.get("NEDS_REFERENCE")
needs_reference = pytest.mark.skipif(
    not CHECKOUT, reason="set NEDS_REFERENCE to a checkout of the reference NEDS code (yzhang511/NEDS) to run this"
)

pytestmark = pytest.mark.usefixtures("fresh_plugins")


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """(store path, eid): one small generated session prepared through the real ONE-api path."""
    reset_plugins()
    folder = tmp_path_factory.mktemp("refstore")
    recipe = folder / "prep.yaml"
    recipe.write_text(f"extends: {COMMON}\n" + textwrap.dedent(f"""
        stages: [prepare]
        run: {{dir: {folder / 'runs'}, seed: 3}}
        data:
          store: {folder / 'store.h5'}
          source:
            name: ibl
            one: {{mode: local, cache_dir: {folder / 'cache'}}}
            synthesize: {{sessions: 1, seed: 1, trials: 60, units: 24}}
        """))
    assert cli.main([str(recipe)]) == 0
    reset_plugins()
    path = folder / "store.h5"
    with SessionStore(path) as store:
        return path, store.eids[0]


@pytest.fixture
def store(prepared):
    with SessionStore(prepared[0]) as opened:
        yield opened


def _split(store, eid, split="train"):
    return R.read_split(store, eid, split, R.session_modalities(store, eid))


# --------------------------------------------------------------------------- conversion (no checkout)


def test_split_trials_are_exactly_ours(store, prepared):
    eid = prepared[1]
    seen = []
    for split in ("train", "val", "test"):
        trials, values = _split(store, eid, split)
        assert np.array_equal(trials, store.split(eid, split))  # same trials, same order
        assert all(len(v) == len(trials) for v in values.values())
        seen.extend(trials.tolist())
    assert len(seen) == len(set(seen))


def test_items_are_its_dataset_items_with_the_store_values(store, prepared):
    eid = prepared[1]
    info = store.info(eid)
    trials, values = _split(store, eid)
    n, t = info.n_neurons, info.n_bins
    items = R.reference_items(eid, values, n_max=n + 3)
    assert len(items) == len(trials)
    for i in (0, len(items) - 1):
        item, trial = items[i], trials[i : i + 1]
        assert item["spikes_data"].shape == (t, n + 3) and item["spikes_data"].dtype == np.float32
        assert np.array_equal(item["spikes_data"][:, :n], store.read(eid, "spikes", trial)[0])
        assert np.all(item["spikes_data"][:, n:] == -1.0)  # its pad value, neuron axis only
        assert np.array_equal(item["space_attn_mask"], np.r_[np.ones(n), np.zeros(3)])
        assert np.array_equal(item["time_attn_mask"], np.ones(t)) and item["time_attn_mask"].dtype == np.int64
        assert np.array_equal(item["spikes_timestamps"], np.arange(t))
        assert item["eid"] == eid
        for name in ("wheel", "whisker"):
            assert np.array_equal(item[name], store.read(eid, name, trial)[0])
        for name in ("choice", "block"):
            assert item[name].shape == (1,) and item[name][0] == store.read(eid, name, trial)[0]
        assert item["target"].shape == (t, 4)
        assert np.array_equal(item["target"][:, 0], item["wheel"]) and np.all(item["target"][:, 3] == item["block"][0])
    # No padding when N_max is the session's own count (one session).
    assert R.reference_items(eid, values)[0]["spikes_data"].shape == (t, n)


def test_batches_hold_what_its_trainer_reads(store, prepared):
    eid = prepared[1]
    _, values = _split(store, eid)
    batch = next(iter(R.reference_loader(R.reference_items(eid, values), 16, seed=0, shuffle=True)))
    t, n = store.info(eid).n_bins, store.info(eid).n_neurons
    assert batch["spikes_data"].shape == (16, t, n) and batch["spikes_data"].dtype == torch.float32
    assert batch["time_attn_mask"].shape == (16, t) and batch["time_attn_mask"].dtype == torch.int64
    assert batch["spikes_timestamps"].dtype == torch.int64
    assert batch["choice"].shape == (16, 1) and batch["wheel"].shape == (16, t)
    assert batch["eid"] == [eid] * 16


def _order(loader, items):
    """Each batch's trials as positions in items (matched by their spike counts)."""
    where = {item["spikes_data"].tobytes(): i for i, item in enumerate(items)}
    return [[where[row.numpy().tobytes()] for row in batch["spikes_data"]] for batch in loader]


def test_loader_shuffles_with_the_seed_each_trial_once_per_epoch(store, prepared):
    eid = prepared[1]
    _, values = _split(store, eid)
    items = R.reference_items(eid, values)
    assert len({item["spikes_data"].tobytes() for item in items}) == len(items)
    loader = R.reference_loader(items, 16, seed=5, shuffle=True)
    first, second = _order(loader, items), _order(loader, items)
    for epoch in (first, second):
        assert sorted(sum(epoch, [])) == list(range(len(items)))
        assert [len(b) for b in epoch] == [16] * (len(items) // 16) + ([len(items) % 16] if len(items) % 16 else [])
    assert first != second  # a new permutation each epoch, as its loader draws
    assert _order(R.reference_loader(items, 16, seed=5, shuffle=True), items) == first
    assert _order(R.reference_loader(items, 16, seed=6, shuffle=True), items) != first
    assert sum(_order(R.reference_loader(items, 16, seed=5, shuffle=False), items), []) == list(range(len(items)))


def test_scored_targets_are_the_store_values(store, prepared):
    eid = prepared[1]
    trials, values = _split(store, eid, "test")
    R.check_targets({k: v.copy() for k, v in values.items()}, values)
    wrong = {"wheel": values["wheel"][::-1].copy()}
    with pytest.raises(RuntimeError, match="wheel targets differ"):
        R.check_targets(wrong, values)
    # Scored by our metrics on the store's targets: a perfect prediction scores perfectly, and the
    # true rates score the oracle.
    rates = store.read_truth(eid, "rates", trials).astype(np.float32)
    preds = {"spikes": rates, **{k: values[k] for k in ("wheel", "whisker", "choice", "block")}}
    scores = R.score_all(R.our_metrics(), store, eid, trials, preds, values, truth=True)
    assert scores["decoding/wheel/r2"] == pytest.approx(1.0) and scores["decoding/whisker/r2"] == pytest.approx(1.0)
    assert scores["decoding/choice/accuracy"] == 1.0 and scores["decoding/block/balanced_accuracy"] == 1.0
    assert scores["encoding/spikes/bps"] == pytest.approx(scores["oracle/spikes/bps"])


def test_pip_names():
    assert R.pip_name("sklearn.metrics") == "scikit-learn"
    assert R.pip_name("einops") == "einops" and R.pip_name("yaml") == "PyYAML"


# --------------------------------------------------------------------------- errors (no checkout)


def _cli(*args, cwd=ROOT):
    done = subprocess.run([sys.executable, "-m", "benchmarks.reference", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300)
    return done.returncode, done.stderr.strip()


def _fake_checkout(folder: Path, config_utils: str = "") -> Path:
    for rel in R.REFERENCE_FILES:
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_text("")
    for pkg in R.REFERENCE_PACKAGES:
        (folder / "src" / pkg).mkdir(parents=True, exist_ok=True)
        (folder / "src" / pkg / "__init__.py").write_text("")
    (folder / "src" / "utils" / "config_utils.py").write_text(config_utils)
    return folder


def test_errors_are_one_line(prepared, tmp_path):
    store, eid = prepared
    common = ["--store", str(store), "--eid", eid, "--steps", "1", "--out", str(tmp_path / "r.json")]
    rc, err = _cli("--reference", str(tmp_path / "nowhere"), *common)
    assert rc == 2 and err.count("\n") == 0 and "no such folder" in err, err
    (tmp_path / "empty").mkdir()
    rc, err = _cli("--reference", str(tmp_path / "empty"), *common)
    assert rc == 2 and err.count("\n") == 0 and "expected the file src/multi_modal/mm.py" in err, err
    fake = _fake_checkout(tmp_path / "fake", "import not_a_real_package_neds\n")
    rc, err = _cli("--reference", str(fake), *common)
    assert rc == 2 and err.count("\n") == 0 and "pip install not_a_real_package_neds" in err, err
    rc, err = _cli("--reference", str(fake), *common[:2], "--eid", "no-such-eid", *common[4:])
    assert rc == 2 and err.count("\n") == 0 and "no session 'no-such-eid'" in err, err
    assert not (tmp_path / "r.json").exists()


# --------------------------------------------------------------------------- with the reference's code


@needs_reference
def test_items_match_its_own_dataset(store, prepared, monkeypatch):
    """Our per-trial dicts equal what its BaseDataset makes of the same trial in its HF row layout."""
    eid = prepared[1]
    trials, values = _split(store, eid)
    n = store.info(eid).n_neurons
    src = Path(CHECKOUT).resolve() / "src"
    datasets = types.ModuleType("datasets")  # its dataset_utils imports these names; none is called here
    for name in ("Dataset", "DatasetInfo", "list_datasets", "load_dataset", "concatenate_datasets", "DatasetDict",
                 "load_from_disk"):
        setattr(datasets, name, None)
    monkeypatch.setitem(sys.modules, "datasets", datasets)
    monkeypatch.syspath_prepend(str(src))
    try:
        from loader.base import BaseDataset
        from utils.dataset_utils import get_sparse_from_binned_spikes

        _, data, indices, indptr, shapes = get_sparse_from_binned_spikes(values["spikes"].astype(np.uint8))
        rows = [{
            "spikes_sparse_data": data[i], "spikes_sparse_indices": indices[i], "spikes_sparse_indptr": indptr[i],
            "spikes_sparse_shape": shapes[i], "wheel-speed": values["wheel"][i],
            "whisker-motion-energy": values["whisker"][i], "choice": [(-1.0, 1.0)[values["choice"][i]]],
            "block": [(0.2, 0.5, 0.8)[values["block"][i]]], "reward": [1.0], "eid": eid,
            "cluster_depths": np.zeros(n), "cluster_regions": ["R"] * n,
        } for i in range(5)]
        theirs = BaseDataset(rows, target=["wheel-speed", "whisker-motion-energy"], pad_value=-1.0,
                             max_time_length=100, max_space_length=n + 2, load_meta=True, stitching=True)
        ours = R.reference_items(eid, {k: v[:5] for k, v in values.items()}, n_max=n + 2)
        for mine, item in zip(ours, (theirs[i] for i in range(5))):
            for key, value in mine.items():
                if key == "eid":
                    assert item[key] == value
                else:
                    assert np.asarray(item[key]).dtype == value.dtype, key
                    assert np.array_equal(np.asarray(item[key]), value), key
    finally:
        for name in list(sys.modules):
            if name.split(".")[0] in R.REFERENCE_PACKAGES:
                del sys.modules[name]


@needs_reference
def test_runs_the_reference_end_to_end(prepared, tmp_path):
    store, eid = prepared
    out = tmp_path / "ref.json"
    result = R.run_reference(Path(CHECKOUT), store, eid, steps=3, seed=0, out=out, batch_size=16, layers=1,
                             hidden=16, heads=2, ffn=32, lr=3e-3, eval_every=2, threads=1, reference_commit="abc123",
                             timeout=600)
    assert json.loads(out.read_text()) == result
    assert result["reference_commit"] == "abc123" and result["eid"] == eid
    assert result["steps"] == 3 and result["seed"] == 0
    settings = result["settings"]
    with SessionStore(store) as opened:
        n = opened.info(eid).n_neurons
        assert settings["trials"] == {s: len(opened.split(eid, s)) for s in ("train", "val", "test")}
    assert settings["n_max"] == n and settings["layers"] == 1 and settings["hidden"] == 16
    assert settings["dropout_transformer"] == 0.4 and settings["mask_ratio"] == 0.3 and settings["lr"] == 3e-3
    assert settings["session_embedding_index"] == settings["session_embedding_rows"] - 1  # appended
    for key in ("encoding/spikes/bps", "decoding/choice/accuracy", "decoding/choice/balanced_accuracy",
                "decoding/block/accuracy", "decoding/block/balanced_accuracy", "decoding/wheel/r2",
                "decoding/whisker/r2"):
        assert isinstance(result["test"][key], float) and math.isfinite(result["test"][key]), key
    assert [c["step"] for c in result["curve"]] == [2, 3]
    assert all(math.isfinite(c["bps"]) and math.isfinite(c["wheel_r2"]) for c in result["curve"])
    assert result["input_leak"] == {m: 0.0 for m in ("choice", "block", "wheel", "whisker")}  # its decoding inputs hide them
    assert result["wall_s"] > 0 and result["trials_per_s"] > 0


class _FakeTrainer:
    """Stands in for its trainer: decoding predictions that read the inputs' choice (`leaky`) or not."""

    def __init__(self, leaky: bool):
        self.leaky = leaky

    def _forward_model_inputs(self, batch, training_mode, enc_task_var=None):
        k = len(batch["eid"])
        spikes = batch["spikes_data"]
        choice = batch["choice"] if self.leaky else torch.zeros(k, 1)
        preds = {"spike": torch.log1p(spikes.clamp(min=0)), "choice": choice,
                 "wheel": batch["spikes_data"][..., :1].mean(-1, keepdim=True)}
        targets = {"spike": spikes, "choice": batch["choice"], "wheel": batch["wheel"].unsqueeze(-1)}
        return types.SimpleNamespace(mod_preds=preds, mod_targets=targets)


@pytest.mark.parametrize("leaky", [False, True])
def test_the_input_leak_check_finds_a_prediction_that_reads_its_hidden_input(leaky):
    rng = np.random.default_rng(0)
    values = {"spikes": rng.poisson(1.0, (6, 4, 3)).astype(np.float32),
              "choice": np.array([0, 1, 1, 0, 1, 0]), "wheel": rng.random((6, 4)).astype(np.float32)}
    modalities = [("spike", "spikes"), ("choice", "choice"), ("wheel", "wheel")]
    trainer, model = _FakeTrainer(leaky), torch.nn.Linear(1, 1)
    preds, _ = R.predict(trainer, model, R.reference_items("e", values), 4, 3, modalities)
    leak = R.input_leak(trainer, model, "e", values, preds, 4, 3, modalities)
    assert set(leak) == {"choice", "wheel"} and leak["wheel"] == 0.0
    assert (leak["choice"] > 0) == leaky


def test_the_preflight_names_a_missing_package_in_one_line_before_any_run(tmp_path):
    """`--check`, `preflight` and the suite all stop at once, with the pip name, when the
    reference's code imports a package that is not installed (the suite used to find out hours in)."""
    fake = _fake_checkout(tmp_path / "fake", "import not_a_real_package_neds\n")
    rc, err = _cli("--reference", str(fake), "--check")
    assert rc == 2 and err.count("\n") == 0 and "pip install not_a_real_package_neds" in err, err
    with pytest.raises(NedsError, match=r"^the reference's code needs the Python package 'not_a_real_package_neds'"):
        R.preflight(fake)
    rc, err = _cli("--reference", str(tmp_path / "nowhere"), "--check")
    assert rc == 2 and "no such folder" in err
    with pytest.raises(NedsError, match=r"^--reference \S+nowhere: no such folder"):
        R.preflight(tmp_path / "nowhere")
    rc, err = _cli("--reference", str(fake))  # without --check the run's arguments are required
    assert rc == 2 and "--store, --eid, --steps, --out" in err, err
    work = tmp_path / "work"
    done = subprocess.run([sys.executable, "-m", "benchmarks", "--quick", "--skip-speed", "--reference", str(fake),
                           "--workdir", str(work), "--out", str(tmp_path / "out")],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("error: the reference's code needs the Python package "
                                                           "'not_a_real_package_neds'")
    assert not work.exists()  # stopped before the first run
