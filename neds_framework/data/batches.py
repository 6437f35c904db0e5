"""Session-grouped batches from the store, for training and evaluation.

Every batch holds trials of one session, so each per-session input and output layer runs once
per batch (sessions have different neuron counts). The plan of an epoch — which trials go into
which batch, and in what order the batches come — is a pure function of (seed, epoch), so a
resumed run replays exactly the batches an uninterrupted one would, and distributed ranks can
shard the same plan without talking to each other.

Reading is lazy: a batch reads only its trials' chunks from the HDF5 store, so memory stays flat
however many sessions the store holds.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Iterator, Mapping, Sequence

import attrs
import numpy as np
import torch

from neds_framework.data.store import SessionStore
from neds_framework.modality import ModalitySpec


@attrs.frozen
class BatchKey:
    """Which trials of which session make one batch."""

    session: str
    trials: tuple[int, ...]


def plan_epoch(
    store: SessionStore,
    split: str,
    batch_size: int,
    seed: int,
    epoch: int,
    shuffle: bool = True,
    drop_last: bool = False,
    sessions: Sequence[str] | None = None,
) -> list[BatchKey]:
    """All batches of one epoch over a split, in the order they are to be used."""
    rng = np.random.default_rng([seed, epoch])
    keys: list[BatchKey] = []
    for eid in sessions if sessions is not None else store.eids:
        idx = store.split(eid, split)
        if shuffle:
            idx = rng.permutation(idx)
        stop = len(idx) - (len(idx) % batch_size if drop_last else 0)
        keys.extend(BatchKey(eid, tuple(int(i) for i in idx[i : i + batch_size])) for i in range(0, stop, batch_size))
    if shuffle:
        keys = [keys[i] for i in rng.permutation(len(keys))]
    return keys


def shard(keys: list[BatchKey], rank: int, world_size: int) -> list[BatchKey]:
    """This rank's share of an epoch: every rank gets the same number of batches (wrapping round)."""
    if world_size <= 1:
        return keys
    per_rank = -(-len(keys) // world_size)
    padded = [keys[i % len(keys)] for i in range(per_rank * world_size)]
    return padded[rank::world_size]


def region_codes(store: SessionStore, eid: str) -> tuple[np.ndarray, torch.Tensor]:
    """(region names, (N,) long code of each neuron's region) of a session, for `Batch.regions`."""
    neurons = store.neurons(eid)
    if "region" not in neurons:
        return np.array([], dtype=str), torch.zeros(0, dtype=torch.long)
    names, codes = np.unique(np.asarray(neurons["region"]).astype(str), return_inverse=True)
    return names, torch.from_numpy(codes.astype(np.int64).reshape(-1))


class SessionCache:
    """Whole (session, array) reads kept in memory up to a byte budget, least recently used out.

    Arrays stay in their stored dtype (spike counts are usually uint8), so a session costs about
    its uncompressed size on disk. An array larger than the whole budget is never cached.
    Each DataLoader worker process holds its own cache.
    """

    def __init__(self, budget_bytes: int):
        self.budget = int(budget_bytes)
        self.used = 0
        self._arrays: OrderedDict[tuple[str, str, str], np.ndarray] = OrderedDict()

    def get(self, key: tuple[str, str, str], load) -> np.ndarray | None:
        """The cached array, else ``load()`` cached if it fits (None when it cannot fit)."""
        if key in self._arrays:
            self._arrays.move_to_end(key)
            return self._arrays[key]
        if self.budget <= 0:
            return None
        array = load()
        if array.nbytes > self.budget:
            return None
        while self.used + array.nbytes > self.budget:
            _, old = self._arrays.popitem(last=False)
            self.used -= old.nbytes
        self._arrays[key] = array
        self.used += array.nbytes
        return array


class StoreBatches(torch.utils.data.Dataset):
    """Maps a `BatchKey` to (session, {modality: tensor}); use with a DataLoader and batch_size=None.

    ``specs`` names the modalities to read and gives each its dtype (`ModalitySpec.dtype`: int64
    class labels, float32 otherwise); a session lacking one simply has no entry for it.

    With ``cache_bytes`` > 0, each session's arrays are read whole on first use and batches are
    sliced from memory (`SessionCache`); a session whose array does not fit the budget is read
    batch by batch from the store, as without a cache.
    """

    def __init__(self, store: SessionStore, specs: Mapping[str, ModalitySpec], with_truth: bool = False,
                 cache_bytes: int = 0):
        self.store = store
        self.specs = dict(specs)
        self.with_truth = with_truth
        self.cache = SessionCache(cache_bytes)
        self._info: dict = {}

    def _rows(self, kind: str, eid: str, name: str, trials: np.ndarray) -> np.ndarray:
        read_rows = self.store.read if kind == "modalities" else self.store.read_truth
        n_trials = self._session_info(eid).n_trials
        whole = self.cache.get((kind, eid, name), lambda: read_rows(eid, name, np.arange(n_trials)))
        return whole[trials] if whole is not None else read_rows(eid, name, trials)

    def _session_info(self, eid: str):
        if eid not in self._info:
            self._info[eid] = self.store.info(eid)
        return self._info[eid]

    def __getitem__(self, key: BatchKey) -> tuple[str, dict[str, torch.Tensor]]:
        trials = np.asarray(key.trials, dtype=np.int64)
        info = self._session_info(key.session)
        values = {}
        for name, spec in self.specs.items():
            if name not in info.modalities:
                continue
            array = self._rows("modalities", key.session, name, trials)
            values[name] = torch.from_numpy(np.ascontiguousarray(array, dtype=spec.dtype))
        if self.with_truth and "rates" in info.truth:
            values["truth_rates"] = torch.from_numpy(self._rows("truth", key.session, "rates", trials).astype(np.float32))
        return key.session, values

    def __len__(self) -> int:  # the DataLoader's sampler defines the epoch, not this dataset
        raise TypeError("StoreBatches is indexed by BatchKey; iterate a plan from plan_epoch instead")


def batch_loader(
    dataset: StoreBatches, keys: list[BatchKey], workers: int = 0, prefetch: int = 4
) -> Iterator[tuple[str, dict[str, torch.Tensor]]]:
    """Batches in plan order; with workers > 0, reading and decompressing overlaps the step."""
    kwargs = {"num_workers": workers, "batch_size": None, "sampler": keys, "collate_fn": lambda item: item}
    if workers > 0:
        kwargs.update(prefetch_factor=prefetch, persistent_workers=False)
    return iter(torch.utils.data.DataLoader(dataset, **kwargs))
