"""The prepared-session store: round trips, batch reads, atomic writes, damaged files, plain-h5py access."""

from __future__ import annotations

import io
import json
import os
import pickle
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import attrs
import h5py
import numpy as np
import pytest

from neds_framework.data.session import SessionData
from neds_framework.data.store import SCHEMA_VERSION, SessionStore, StoreWriter, settings_hash, store_is_current
from neds_framework.errors import NedsError

REPO = Path(__file__).resolve().parents[1]
SETTINGS = {"source": "ibl", "bin_size": 0.02, "n_bins": 12, "window": [-0.5, 1.5], "eids": ["a", "b"]}


def make_session(eid, n_neurons, n_trials=30, n_bins=12, whisker=True, truth=False, max_count=3, seed=0):
    """A small session with every kind of field a data source produces."""
    rng = np.random.default_rng(seed)
    k, t, n = n_trials, n_bins, n_neurons
    spikes = rng.integers(0, max_count + 1, (k, t, n))
    if spikes.size:
        spikes.flat[0] = max_count  # so the largest count is exactly max_count
    modalities = {
        "spikes": spikes,
        "wheel": rng.normal(size=(k, t)).astype(np.float32),
        "lfp": rng.normal(size=(k, t, 3)).astype(np.float32),
        "choice": rng.integers(0, 2, k).astype(np.int64),
        "block": rng.integers(0, 2, k).astype(np.int64),
    }
    if whisker:
        modalities["whisker"] = rng.random((k, t)).astype(np.float32)
    order = rng.permutation(k)
    train, val = k * 7 // 10, k * 8 // 10
    return SessionData(
        eid=eid,
        meta={"lab": "cortexlab", "subject": f"KS0{seed}", "probes": ["probe00", "probe01"], "bin_size": 0.02},
        neurons={
            "uuid": np.array([f"{eid}-neuron-{i}" for i in range(n)]),
            "region": np.array(["CA1", "VISp", "MOs"])[np.arange(n) % 3],
            "depth": rng.uniform(0, 3800, n).astype(np.float32),
            "probe": np.array(["probe00", "probe01"])[np.arange(n) % 2],
            "cluster_id": np.arange(n, dtype=np.int64) + 10_000,
        },
        trials={
            "trial_index": np.arange(k, dtype=np.int64) * 2,
            "stimOn_times": np.sort(rng.uniform(0, 3000, k)),
            "contrastLeft": rng.choice([np.nan, 0.25, 1.0], k),
            "feedbackType": rng.choice([-1, 1], k).astype(np.int64),
            "outcome": np.array(["correct", "error"])[rng.integers(0, 2, k)],
        },
        modalities=modalities,
        splits={"train": np.sort(order[:train]), "val": np.sort(order[train:val]), "test": np.sort(order[val:])},
        scaling={"wheel": {"min": -2.5, "max": 3.25}, "whisker": {"min": 0.0, "max": 1.0}},
        truth={"rates": rng.random((k, t, n)).astype(np.float32)} if truth else {},
        report={"trials_total": k + 5, "trials_kept": k, "trials_excluded": {"no_choice": 3, "slow": 2}, "absent": {}},
    )


def write_store(path, sessions, settings=SETTINGS):
    with StoreWriter(path, settings, framework_version="test") as writer:
        for session in sessions:
            writer.add(session)
    return path


def assert_same_array(got, expected, name):
    expected = np.asarray(expected)
    assert got.shape == expected.shape, name
    if name.startswith("modalities.") and expected.dtype.kind in "iu":
        assert got.dtype.kind in "iu" and got.itemsize <= expected.itemsize, name  # narrowed: only the values survive
    elif expected.dtype.kind in "UO":
        assert got.dtype.kind == "U", name
    else:
        assert got.dtype == expected.dtype, name
    assert np.array_equal(got, expected, equal_nan=got.dtype.kind == "f"), name


def assert_same_session(got: SessionData, expected: SessionData):
    assert got.eid == expected.eid
    for field in ("meta", "scaling", "report"):
        assert getattr(got, field) == getattr(expected, field), field
    for field in ("neurons", "trials", "modalities", "splits", "truth"):
        got_arrays, expected_arrays = getattr(got, field), getattr(expected, field)
        assert list(got_arrays) == list(expected_arrays), field
        for name in expected_arrays:
            assert_same_array(got_arrays[name], expected_arrays[name], f"{field}.{name}")


@pytest.fixture
def sessions():
    return [
        make_session("eid-a", n_neurons=7, truth=True, seed=1),
        make_session("eid-b", n_neurons=4, n_trials=21, whisker=False, seed=2),
    ]


@pytest.fixture
def store_path(tmp_path, sessions):
    return write_store(tmp_path / "store.h5", sessions)


# ----------------------------------------------------------------------------- round trip


def test_every_field_round_trips(store_path, sessions):
    with SessionStore(store_path) as store:
        assert store.eids == ["eid-a", "eid-b"]  # the order they were added
        assert store.schema_version == SCHEMA_VERSION
        assert store.settings == SETTINGS
        assert store.settings_hash == settings_hash(SETTINGS)
        for session in sessions:
            assert_same_session(store.load(session.eid), session)
            for name, expected in session.splits.items():
                assert_same_array(store.split(session.eid, name), expected, f"splits.{name}")


def test_info_reads_shapes_and_attributes(store_path, sessions):
    with SessionStore(store_path) as store:
        a, b = store.info("eid-a"), store.info("eid-b")
    assert (a.n_trials, a.n_neurons, a.n_bins) == (30, 7, 12)
    assert (b.n_trials, b.n_neurons, b.n_bins) == (21, 4, 12)
    assert a.modalities == ("spikes", "wheel", "lfp", "choice", "block", "whisker")
    assert "whisker" not in b.modalities
    assert (a.truth, b.truth) == (("rates",), ())
    assert a.meta == sessions[0].meta and a.report == sessions[0].report and a.scaling == sessions[0].scaling


def test_session_without_trials_round_trips(tmp_path):
    empty = make_session("eid-empty", n_neurons=3, n_trials=0, truth=True)
    with SessionStore(write_store(tmp_path / "store.h5", [empty])) as store:
        assert_same_session(store.load("eid-empty"), empty)
        assert store.read("eid-empty", "spikes", np.array([], dtype=np.int64)).shape == (0, 12, 3)


def test_numpy_values_in_meta_come_back_as_plain_json(tmp_path):
    session = make_session("eid-np", n_neurons=2)
    meta = {"n_bins": np.int64(12), "bin_size": np.float32(0.5), "probes": np.array(["probe00"])}
    with SessionStore(write_store(tmp_path / "s.h5", [attrs.evolve(session, meta=meta)])) as store:
        assert store.info("eid-np").meta == {"n_bins": 12, "bin_size": 0.5, "probes": ["probe00"]}


# ----------------------------------------------------------------------------- batch reads


@pytest.mark.parametrize("trials", [[5, 0, 5, 29, 2], [29, 28, 27], [3, 3, 3], list(range(30))])
def test_read_any_order_and_repeats(store_path, sessions, trials):
    trials = np.array(trials)
    session = sessions[0]
    with SessionStore(store_path) as store:
        for name, array in session.modalities.items():
            got = store.read(session.eid, name, trials)
            assert np.array_equal(got, array[trials]), name
        assert np.array_equal(store.read_truth(session.eid, "rates", trials), session.truth["rates"][trials])


def test_read_rejects_bad_trial_indices(store_path):
    with SessionStore(store_path) as store:
        for bad in ([30], [-1], [[1, 2]], [0.5]):
            with pytest.raises(IndexError):
                store.read("eid-a", "spikes", np.array(bad))


class CountingFile(io.FileIO):
    """A file that counts the bytes HDF5 reads through it."""

    bytes_read = 0

    def readinto(self, buffer):
        n = super().readinto(buffer)
        CountingFile.bytes_read += n or 0
        return n


def test_batch_read_touches_only_its_chunks(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    big = make_session("eid-big", n_neurons=60, n_trials=400, n_bins=50)
    # Poisson noise barely compresses, so reading the dataset whole would read ~all its bytes.
    big.modalities["spikes"][...] = rng.poisson(2.0, big.modalities["spikes"].shape)
    path = write_store(tmp_path / "big.h5", [big])

    with h5py.File(path, "r") as f:
        spikes = f["sessions/eid-big/modalities/spikes"]
        assert spikes.chunks[0] <= 8 and spikes.chunks[1:] == spikes.shape[1:]
        assert spikes.compression == "gzip" and spikes.shuffle
        assert spikes.id.get_num_chunks() >= 400 // 8
        stored_bytes = spikes.id.get_storage_size()

    real_file = h5py.File
    monkeypatch.setattr(h5py, "File", lambda name, mode, **kw: real_file(CountingFile(name, "r"), mode, **kw))
    with SessionStore(path) as store:
        store.info("eid-big")
        CountingFile.bytes_read = 0
        batch = store.read("eid-big", "spikes", np.array([399, 7]))
    assert np.array_equal(batch, big.modalities["spikes"][[399, 7]])
    # Two trials live in at most two of the >= 50 chunks.
    assert 0 < CountingFile.bytes_read < stored_bytes * 3 / 50


# ----------------------------------------------------------------------------- spikes dtype


@pytest.mark.parametrize(
    ("max_count", "dtype"), [(3, np.uint8), (255, np.uint8), (256, np.uint16), (70_000, np.uint32)]
)
def test_spikes_stored_in_smallest_unsigned_type(tmp_path, max_count, dtype):
    session = make_session("eid-n", n_neurons=3, max_count=max_count)
    with SessionStore(write_store(tmp_path / "s.h5", [session])) as store:
        got = store.read("eid-n", "spikes", np.arange(30))
    assert got.dtype == dtype
    assert np.array_equal(got, session.modalities["spikes"])


@pytest.mark.parametrize(
    "name, array, message",
    [
        ("spikes", np.full((30, 12, 3), 1.0), "holds counts, so integers"),
        ("spikes", np.full((30, 12, 3), -1), "so values >= 0; found -1"),
        ("spikes", np.zeros((30, 12, 4), np.uint8), r"must be \(trials, bins, 3 neurons\)"),
        ("block", np.full(30, 3), r"has 3 classes \(0..2\); found label 3"),
        ("choice", np.zeros((30, 2), np.int64), r"is per trial, so \(trials,\)"),
        ("wheel", np.zeros(30, np.float32), "is per bin"),
        ("wheel", np.zeros((29, 12), np.float32), "has 29 rows, expected one per trial"),
    ],
)
def test_prepare_checks_each_modality_against_its_spec_before_writing(name, array, message):
    """Shapes and values come from the modality's spec (the writer narrows any integer array)."""
    from neds_framework.engine.stages.prepare import check_session
    from neds_framework.errors import NedsError
    from tests.helpers import fake_registries

    bad = make_session("eid-bad", n_neurons=3)
    bad.modalities[name] = array
    with pytest.raises(NedsError, match=f"session eid-bad: modality '{name}' .*{message}"):
        check_session(bad, fake_registries().modalities, "ibl")
    good = make_session("eid-good", n_neurons=3)
    check_session(good, fake_registries().modalities, "ibl")
    good.modalities["pupil"] = np.zeros((30, 12), np.float32)
    with pytest.raises(NedsError, match="produced modality 'pupil'.*which no plugin declares"):
        check_session(good, fake_registries().modalities, "ibl")


# ----------------------------------------------------------------------------- settings hash


def test_settings_hash_ignores_key_order_and_representation():
    a = {"bin_size": 0.02, "window": [-0.5, 1.5], "nested": {"x": 1, "y": [1, 2]}}
    b = {"nested": {"y": (np.int64(1), 2), "x": np.int32(1)}, "window": (-0.5, np.float64(1.5)), "bin_size": 0.02}
    assert settings_hash(a) == settings_hash(b)
    assert len(settings_hash(a)) == 64


@pytest.mark.parametrize(
    "change", [{"bin_size": 0.01}, {"window": [-0.5, 1.0]}, {"nested": {"x": 2, "y": [1, 2]}}, {"extra": None}]
)
def test_settings_hash_sees_every_value(change):
    a = {"bin_size": 0.02, "window": [-0.5, 1.5], "nested": {"x": 1, "y": [1, 2]}}
    assert settings_hash(a) != settings_hash({**a, **change})


def test_settings_hash_refuses_unknown_types():
    with pytest.raises(TypeError, match="object"):
        settings_hash({"x": object()})


# ----------------------------------------------------------------------------- store_is_current


def test_store_is_current(store_path, tmp_path):
    assert store_is_current(store_path, dict(reversed(list(SETTINGS.items()))))
    assert not store_is_current(store_path, {**SETTINGS, "bin_size": 0.01})
    assert not store_is_current(tmp_path / "missing.h5", SETTINGS)
    (tmp_path / "noise.h5").write_bytes(os.urandom(4096))
    assert not store_is_current(tmp_path / "noise.h5", SETTINGS)
    with h5py.File(store_path, "r+") as f:
        f.attrs["schema_version"] = SCHEMA_VERSION + 1
    assert not store_is_current(store_path, SETTINGS)


# ----------------------------------------------------------------------------- atomic writes


def test_exception_in_writer_leaves_nothing(tmp_path, sessions):
    path = tmp_path / "store.h5"
    with pytest.raises(RuntimeError, match="boom"):
        with StoreWriter(path, SETTINGS) as writer:
            writer.add(sessions[0])
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_exception_in_writer_keeps_older_store(store_path, sessions):
    before = store_path.read_bytes()
    with pytest.raises(RuntimeError, match="boom"):
        with StoreWriter(store_path, {"other": "settings"}) as writer:
            writer.add(sessions[1])
            raise RuntimeError("boom")
    assert store_path.read_bytes() == before
    assert list(store_path.parent.iterdir()) == [store_path]
    assert store_is_current(store_path, SETTINGS)


KILLED_WRITER = textwrap.dedent(
    """
    import sys, time
    from neds_framework.data.store import StoreWriter
    from tests.test_store import make_session

    with StoreWriter(sys.argv[1], {"run": "killed"}) as writer:
        for i in range(1000):
            writer.add(make_session(f"eid-{i}", n_neurons=5, seed=i))
            print(i, flush=True)
            time.sleep(0.05)
    """
)


@pytest.mark.parametrize("older_store", [False, True])
def test_killed_writer_leaves_only_an_ignorable_temp_file(tmp_path, sessions, older_store):
    path = tmp_path / "store.h5"
    if older_store:
        write_store(path, sessions)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "plugins")])}
    command = [sys.executable, "-c", KILLED_WRITER, str(path)]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, env=env, cwd=tmp_path)
    try:
        for _ in range(3):  # a few sessions are in the temp file
            assert proc.stdout.readline(), "the writer script died before writing"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        proc.stdout.close()

    leftovers = sorted(p.name for p in tmp_path.iterdir() if p != path)
    assert len(leftovers) == 1 and leftovers[0].startswith(f".store.h5.tmp-{proc.pid}-")
    assert not store_is_current(path, {"run": "killed"})
    if older_store:
        assert store_is_current(path, SETTINGS)
        assert SessionStore(path).eids == ["eid-a", "eid-b"]
    else:
        assert not path.exists()
    # The next writer of this store clears what the killed one left behind.
    write_store(path, sessions)
    assert sorted(tmp_path.iterdir()) == [path]


def test_writer_misuse(tmp_path, sessions):
    writer = StoreWriter(tmp_path / "s.h5", SETTINGS)
    with pytest.raises(RuntimeError, match="with"):
        writer.add(sessions[0])
    with pytest.raises(ValueError, match="already added"):
        write_store(tmp_path / "s.h5", [sessions[0], sessions[0]])
    with pytest.raises(ValueError, match="cannot name"):
        write_store(tmp_path / "s.h5", [attrs.evolve(sessions[0], eid="a/b")])


# ----------------------------------------------------------------------------- damaged or foreign files


def _truncated(path):
    data = write_store(path, [make_session("eid-a", n_neurons=7)]).read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _random_bytes(path):
    path.write_bytes(np.random.default_rng(0).bytes(10_000))


def _foreign_hdf5(path):
    with h5py.File(path, "w") as f:
        f["x"] = np.arange(3)


def _other_schema(path):
    write_store(path, [])
    with h5py.File(path, "r+") as f:
        f.attrs["schema_version"] = 99


@pytest.mark.parametrize(
    ("damage", "says"),
    [
        (lambda path: None, "run the prepare stage"),
        (_random_bytes, "not a readable HDF5 file"),
        (lambda path: path.write_bytes(b""), "not a readable HDF5 file"),
        (_truncated, "not a readable HDF5 file"),
        (_foreign_hdf5, "not a neds-framework store"),
        (_other_schema, "schema version 99"),
    ],
)
def test_bad_files_give_one_line_errors(tmp_path, damage, says):
    path = tmp_path / "store.h5"
    damage(path)
    with pytest.raises(NedsError) as caught:
        SessionStore(path)
    message = str(caught.value)
    assert "\n" not in message and str(path) in message and says in message and "prepare stage" in message


def test_unknown_names_list_the_known_ones(store_path):
    with SessionStore(store_path) as store:
        with pytest.raises(NedsError, match="no session 'eid-z'; it holds eid-a, eid-b"):
            store.read("eid-z", "spikes", np.array([0]))
        with pytest.raises(NedsError, match="no modality 'whisker'; it has spikes, wheel, lfp, choice, block$"):
            store.read("eid-b", "whisker", np.array([0]))
        with pytest.raises(NedsError, match="no truth array 'rates'; it has none"):
            store.read_truth("eid-b", "rates", np.array([0]))
        with pytest.raises(NedsError, match="no split 'dev'"):
            store.split("eid-a", "dev")


# ----------------------------------------------------------------------------- worker processes


def test_store_survives_fork_into_dataloader_workers(store_path, sessions):
    torch = pytest.importorskip("torch")

    class Trials(torch.utils.data.Dataset):
        def __init__(self, store):
            self.store = store

        def __len__(self):
            return 30

        def __getitem__(self, i):
            return os.getpid(), self.store.read("eid-a", "spikes", np.array([i]))[0]

    store = SessionStore(store_path)
    store.read("eid-a", "spikes", np.array([0]))  # the parent's handle is open when workers fork
    loader = torch.utils.data.DataLoader(Trials(store), batch_size=None, num_workers=2, multiprocessing_context="fork")
    items = list(loader)
    assert {int(pid) for pid, _ in items}.isdisjoint({os.getpid()})
    assert np.array_equal(np.stack([x.numpy() for _, x in items]), sessions[0].modalities["spikes"])
    assert np.array_equal(store.read("eid-a", "spikes", np.array([1])), sessions[0].modalities["spikes"][[1]])
    store.close()


def test_store_pickles_without_its_handle(store_path, sessions):
    with SessionStore(store_path) as store:
        store.read("eid-a", "spikes", np.array([0]))
        copy = pickle.loads(pickle.dumps(store))
    assert copy.eids == ["eid-a", "eid-b"]
    assert np.array_equal(copy.read("eid-a", "wheel", np.array([4, 2])), sessions[0].modalities["wheel"][[4, 2]])
    copy.close()


# ----------------------------------------------------------------------------- plain h5py


def test_readable_with_plain_h5py(store_path, sessions):
    """What docs/store-format.md promises a user with h5py alone."""
    with h5py.File(store_path, "r") as f:
        assert f.attrs["schema_version"] == SCHEMA_VERSION
        assert json.loads(f.attrs["settings"]) == SETTINGS
        assert list(f["sessions"]) == ["eid-a", "eid-b"]
        session = f["sessions/eid-a"]
        assert np.array_equal(session["modalities/spikes"][:2], sessions[0].modalities["spikes"][:2])
        assert list(session["neurons/uuid"].asstr()[:2]) == ["eid-a-neuron-0", "eid-a-neuron-1"]
        assert json.loads(session.attrs["modalities"])[0] == "spikes"
        assert json.loads(session.attrs["meta"])["lab"] == "cortexlab"
        assert np.array_equal(session["splits/test"][()], sessions[0].splits["test"])
