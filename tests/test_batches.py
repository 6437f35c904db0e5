import numpy as np
import pytest
import torch

from neds_framework.data.batches import BatchKey, StoreBatches, batch_loader, plan_epoch, shard
from neds_framework.data.session import SessionData
from neds_framework.data.store import SessionStore, StoreWriter


def specs(*names):
    from neds_modalities.plugin import MODALITIES

    return {name: MODALITIES[name] for name in names}


def session(eid: str, k: int, n: int, whisker: bool = True) -> SessionData:
    rng = np.random.default_rng(len(eid) + k)
    idx = rng.permutation(k)
    modalities = {
        "spikes": rng.poisson(1.0, (k, 10, n)).astype(np.uint8),
        "wheel": rng.random((k, 10)).astype(np.float32),
        "choice": rng.integers(0, 2, k),
    }
    if whisker:
        modalities["whisker"] = rng.random((k, 10)).astype(np.float32)
    return SessionData(
        eid=eid,
        neurons={"uuid": np.array([f"u{i}" for i in range(n)]), "region": np.full(n, "CA1"), "depth": np.zeros(n, np.float32), "probe": np.full(n, "probe00"), "cluster_id": np.arange(n)},
        trials={"trial_index": np.arange(k)},
        modalities=modalities,
        splits={"train": np.sort(idx[: k * 7 // 10]), "val": np.sort(idx[k * 7 // 10 : k * 8 // 10]), "test": np.sort(idx[k * 8 // 10 :])},
        truth={"rates": np.ones((k, 10, n), np.float32)},
    )


@pytest.fixture
def store(tmp_path):
    path = tmp_path / "s.h5"
    with StoreWriter(path, {"x": 1}) as w:
        w.add(session("aaaa", 50, 4))
        w.add(session("bbbbbb", 33, 7, whisker=False))
    with SessionStore(path) as s:
        yield s


def test_plan_covers_each_split_trial_once_per_epoch(store):
    keys = plan_epoch(store, "train", batch_size=8, seed=0, epoch=0)
    for eid in store.eids:
        got = sorted(t for k in keys if k.session == eid for t in k.trials)
        assert got == store.split(eid, "train").tolist()
    assert all(len(k.trials) <= 8 for k in keys)
    assert len({k.session for k in keys}) == 2


def test_plan_is_a_function_of_seed_and_epoch(store):
    a = plan_epoch(store, "train", 8, seed=1, epoch=3)
    assert a == plan_epoch(store, "train", 8, seed=1, epoch=3)
    assert a != plan_epoch(store, "train", 8, seed=1, epoch=4)
    ordered = plan_epoch(store, "test", 8, seed=1, epoch=0, shuffle=False)
    assert [t for k in ordered if k.session == "aaaa" for t in k.trials] == store.split("aaaa", "test").tolist()


def test_drop_last_and_sharding(store):
    keys = plan_epoch(store, "train", 8, seed=0, epoch=0, drop_last=True)
    assert all(len(k.trials) == 8 for k in keys)
    shards = [shard(keys, r, 3) for r in range(3)]
    assert len({len(s) for s in shards}) == 1
    assert set().union(*[set(s) for s in shards]) == set(keys)
    assert shard(keys, 0, 1) == keys


@pytest.mark.parametrize("workers", [0, 2])
def test_loader_reads_only_the_batch(store, workers):
    dataset = StoreBatches(store, specs("spikes", "wheel", "whisker", "choice"), with_truth=True)
    keys = [BatchKey("bbbbbb", (5, 1, 5)), BatchKey("aaaa", (0, 2))]
    got = list(batch_loader(dataset, keys, workers=workers))
    eid, values = got[0]
    assert eid == "bbbbbb" and "whisker" not in values
    expected = store.load("bbbbbb").modalities["spikes"][[5, 1, 5]]
    np.testing.assert_array_equal(values["spikes"].numpy(), expected)
    assert values["spikes"].dtype == torch.float32 and values["choice"].dtype == torch.int64
    assert values["truth_rates"].shape == (3, 10, 7)
    assert got[1][1]["whisker"].shape == (2, 10)


@pytest.mark.parametrize("workers", [0, 2])
def test_cached_batches_equal_streamed_ones(store, workers):
    modalities = specs("spikes", "wheel", "whisker", "choice")
    keys = plan_epoch(store, "train", 4, seed=0, epoch=0)
    plain = list(batch_loader(StoreBatches(store, modalities, with_truth=True), keys, workers=workers))
    cached_set = StoreBatches(store, modalities, with_truth=True, cache_bytes=10 * 2**20)
    for _ in range(2):  # second pass served from memory
        cached = list(batch_loader(cached_set, keys, workers=workers))
        assert [eid for eid, _ in cached] == [eid for eid, _ in plain]
        for (_, a), (_, b) in zip(plain, cached):
            assert a.keys() == b.keys()
            for name in a:
                assert a[name].dtype == b[name].dtype and torch.equal(a[name], b[name]), name
    if workers == 0:
        assert cached_set.cache.used > 0  # stored dtype: uint8 spikes, float32 behaviour


def test_session_cache_stays_within_its_budget():
    from neds_framework.data.batches import SessionCache

    cache = SessionCache(budget_bytes=250)
    loads = []

    def loader(n):
        return lambda: loads.append(n) or np.zeros(n, np.uint8)

    assert cache.get(("m", "a", "x"), loader(100)) is not None
    assert cache.get(("m", "b", "x"), loader(100)) is not None
    assert cache.get(("m", "a", "x"), loader(100)) is not None and loads == [100, 100]  # hit, and now most recent
    cache.get(("m", "c", "x"), loader(100))  # evicts b, the least recently used
    assert cache.used == 200 and set(cache._arrays) == {("m", "a", "x"), ("m", "c", "x")}
    assert cache.get(("m", "d", "x"), loader(300)) is None  # larger than the whole budget: not cached
    assert cache.used == 200
    assert SessionCache(0).get(("m", "a", "x"), loader(1)) is None
