"""Reading the prepared-session store (format: docs/store-format.md).

`SessionStore` is read-only and cheap to open: it reads the root attributes and the session list,
and everything else on demand, so a training loop can fetch one batch of trials at a time
(`read(eid, 'spikes', trials)`) without loading a session. It can be handed to torch DataLoader
workers: each process opens its own HDF5 handle (see `_handle`).
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Iterator

import attrs
import h5py
import numpy as np

from neds_framework.data.session import SessionData
from neds_framework.data.store_write import SCHEMA_VERSION, settings_hash
from neds_framework.errors import NedsError, NedsRunError

_REBUILD = "delete it and re-run the prepare stage"
_ROOT_ATTRS = ("schema_version", "settings_hash", "settings")
#: What one member of each per-session group is called in messages.
_MEMBER_NOUN = {"modalities": "modality", "splits": "split", "truth": "truth array"}


@attrs.frozen
class SessionInfo:
    """What a session holds, from attributes and dataset shapes only (no array is read)."""

    eid: str
    n_trials: int
    n_neurons: int
    n_bins: int  # time bins per trial; 0 when the session has no (trials, bins, ...) modality
    modalities: tuple[str, ...]
    truth: tuple[str, ...]  # names of the ground-truth arrays (simulated sessions only)
    meta: dict
    scaling: dict
    report: dict


class SessionStore:
    """A prepared store, opened read-only.

    Raises NedsError (one line: the path, what is wrong, how to fix it) when the file is missing,
    is not a readable HDF5 file, or is not a store of this schema version.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._file: h5py.File | None = None
        self._pid: int | None = None
        try:
            self._read_root(self._handle())
        except NedsError:
            self.close()  # the caller will usually delete or rebuild a rejected file: don't hold it
            raise

    def _read_root(self, root: h5py.File) -> None:
        missing = [name for name in _ROOT_ATTRS if name not in root.attrs]
        if missing or "sessions" not in root:
            what = f"root attribute '{missing[0]}'" if missing else "group /sessions"
            raise NedsError(f"{self.path}: not a neds-framework store (no {what}); {_REBUILD}")
        self.schema_version = int(root.attrs["schema_version"])
        if self.schema_version != SCHEMA_VERSION:
            raise NedsError(
                f"{self.path}: store schema version {self.schema_version}, this neds-framework reads "
                f"version {SCHEMA_VERSION}; {_REBUILD}"
            )
        self.settings_hash: str = str(root.attrs["settings_hash"])
        self.settings: dict = json.loads(root.attrs["settings"])
        self.eids: list[str] = list(root["sessions"])

    # ------------------------------------------------------------------ handle, per process

    def _handle(self) -> h5py.File:
        """This process's HDF5 handle, opened again when it is missing or was opened by another process.

        HDF5 handles must not be shared across fork: a DataLoader worker that inherits the
        parent's handle gets its own instead (the pid tells them apart), and a pickled store
        (spawn) arrives without one.
        """
        if self._file is None or self._pid != os.getpid():
            self._file = _open(self.path)
            self._pid = os.getpid()
        return self._file

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_file": None, "_pid": None}

    def close(self) -> None:
        """Release this process's handle (a later read reopens it)."""
        if self._file is not None and self._pid == os.getpid():
            self._file.close()
        self._file = None

    def __enter__(self) -> "SessionStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ small things

    def info(self, eid: str) -> SessionInfo:
        group = self._session(eid)
        trial_columns = list(group["trials"].values())
        neurons = group["neurons"]
        return SessionInfo(
            eid=eid,
            n_trials=len(trial_columns[0]) if trial_columns else 0,
            n_neurons=len(neurons["uuid"]) if "uuid" in neurons else 0,
            n_bins=next((ds.shape[1] for ds in group["modalities"].values() if ds.ndim >= 2), 0),
            modalities=tuple(json.loads(group.attrs["modalities"])),
            truth=tuple(group["truth"]),
            meta=json.loads(group.attrs["meta"]),
            scaling=json.loads(group.attrs["scaling"]),
            report=json.loads(group.attrs["report"]),
        )

    def neurons(self, eid: str) -> dict[str, np.ndarray]:
        return {name: self._read_whole(ds) for name, ds in self._session(eid)["neurons"].items()}

    def trials(self, eid: str) -> dict[str, np.ndarray]:
        return {name: self._read_whole(ds) for name, ds in self._session(eid)["trials"].items()}

    def split(self, eid: str, name: str) -> np.ndarray:
        return self._read_whole(self._member(eid, "splits", name))

    # ------------------------------------------------------------------ trial-major arrays

    def read(self, eid: str, modality: str, trials: np.ndarray) -> np.ndarray:
        """The rows `trials` (any order, repeats allowed) of one modality, reading only those."""
        return self._read_rows(self._member(eid, "modalities", modality), trials)

    def read_truth(self, eid: str, name: str, trials: np.ndarray) -> np.ndarray:
        return self._read_rows(self._member(eid, "truth", name), trials)

    def load(self, eid: str) -> SessionData:
        """The whole session; equal to what was written (spike counts may be in a narrower dtype)."""
        info = self.info(eid)
        group = self._session(eid)
        return SessionData(
            eid=eid,
            meta=info.meta,
            neurons=self.neurons(eid),
            trials=self.trials(eid),
            modalities={name: self._read_whole(group["modalities"][name]) for name in info.modalities},
            splits={name: self._read_whole(ds) for name, ds in group["splits"].items()},
            scaling=info.scaling,
            truth={name: self._read_whole(ds) for name, ds in group["truth"].items()},
            report=info.report,
        )

    # ------------------------------------------------------------------ internals

    def _session(self, eid: str) -> h5py.Group:
        sessions = self._handle()["sessions"]
        if eid not in sessions:
            raise NedsError(f"{self.path}: no session {eid!r}; it holds {_listing(self.eids)}")
        return sessions[eid]

    def _member(self, eid: str, kind: str, name: str) -> h5py.Dataset:
        group = self._session(eid)[kind]
        if name not in group:
            noun = _MEMBER_NOUN[kind]
            raise NedsError(f"{self.path}: session {eid} has no {noun} {name!r}; it has {_listing(list(group))}")
        return group[name]

    def _read_rows(self, ds: h5py.Dataset, trials: np.ndarray) -> np.ndarray:
        rows = _as_rows(trials, len(ds))
        # HDF5 selections must be increasing and unique: read each needed trial once, in order,
        # then lay the rows out as asked.
        unique, inverse = np.unique(rows, return_inverse=True)
        with self._damage_guard(ds):
            read = ds[unique] if unique.size else np.empty((0, *ds.shape[1:]), ds.dtype)
        return read[inverse]

    def _read_whole(self, ds: h5py.Dataset) -> np.ndarray:
        with self._damage_guard(ds):
            if h5py.check_string_dtype(ds.dtype) is not None:
                return np.asarray(ds.asstr()[()], dtype=str)
            return ds[()]

    @contextlib.contextmanager
    def _damage_guard(self, ds: h5py.Dataset) -> Iterator[None]:
        """A damaged chunk surfaces only when read; say which file to rebuild rather than
        HDF5's error stack."""
        try:
            yield
        except OSError as exc:
            raise NedsRunError(f"{self.path}: cannot read {ds.name} ({_first_line(exc)}); {_REBUILD}") from exc


def store_is_current(path: str | os.PathLike, settings) -> bool:
    """True when `path` is a readable store of this schema, prepared with exactly `settings`."""
    try:
        with SessionStore(path) as store:
            return store.settings_hash == settings_hash(settings)
    except NedsError:
        return False


def _open(path: Path) -> h5py.File:
    if not path.exists():
        raise NedsError(f"{path}: no prepared store here; run the prepare stage to create it")
    if path.is_dir():
        raise NedsError(f"{path}: a folder, not a store file; point data.store at the store's file (a .h5 the prepare stage wrote)")
    try:
        # Stores are never modified in place (a new one replaces the file by rename), so HDF5's
        # file locks protect nothing, and they fail on some network filesystems.
        return h5py.File(path, "r", locking=False)
    except OSError as exc:
        reason = _first_line(exc)
        raise NedsError(f"{path}: not a readable HDF5 file, corrupt or truncated ({reason}); {_REBUILD}") from exc


def _as_rows(trials: np.ndarray, n_trials: int) -> np.ndarray:
    rows = np.asarray(trials)
    if rows.ndim != 1 or (rows.size and rows.dtype.kind not in "iu"):
        raise IndexError(f"trials must be a 1-D array of integer indices, got {rows.dtype} of shape {rows.shape}")
    if rows.size and (rows.min() < 0 or rows.max() >= n_trials):
        raise IndexError(f"trial indices must lie in 0..{n_trials - 1}, got {rows.min()}..{rows.max()}")
    return rows.astype(np.int64)


def _listing(names: list[str], most: int = 10) -> str:
    if not names:
        return "none"
    shown = ", ".join(names[:most])
    return shown if len(names) <= most else f"{shown}, ... ({len(names)} in all)"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
