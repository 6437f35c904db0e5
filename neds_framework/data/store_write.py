"""Writing the prepared-session store: one HDF5 file, one group per session (format: docs/store-format.md).

The writer streams: `add` writes a whole session and keeps nothing, so a prepare run over hundreds
of sessions needs the memory of one. The file is written under a temp name beside the target and
renamed over it only when the `with` block ends cleanly, so the path holds either the previous
complete store or the new complete one, never a half-written file.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any, Mapping

import h5py
import numpy as np

from neds_framework import __version__
from neds_framework.atomic import atomic_path, ensure_room
from neds_framework.data.session import SessionData

#: Version of the on-disk layout; bump it whenever a reader of the old layout would misread the new.
SCHEMA_VERSION = 1

#: Trial-major arrays are chunked a few trials at a time so a batch read decompresses only the
#: trials it asks for. A chunk holds at most this many trials, and fewer when one trial is big.
MAX_TRIALS_PER_CHUNK = 8
#: HDF5's default chunk cache is 1 MiB; chunks above it are re-read on every access.
TARGET_CHUNK_BYTES = 1 << 20

STRING_DTYPE = h5py.string_dtype("utf-8")


# ----------------------------------------------------------------------------- settings hash


def _json_default(value: Any) -> Any:
    """Make numpy values and paths JSON-able; anything else is a bug in the caller's settings."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"cannot store {type(value).__name__} as JSON: {value!r}")


def to_json(value: Any, canonical: bool = False) -> str:
    """JSON text; canonical (sorted keys, fixed separators) where equal values must give equal
    text, in insertion order elsewhere so a report reads in the order its source wrote it."""
    return json.dumps(value, sort_keys=canonical, separators=(",", ":"), default=_json_default)


def settings_hash(settings: Mapping) -> str:
    """sha256 (hex) of the canonical JSON of the preprocessing settings.

    Key order does not matter; tuples hash like lists and numpy scalars like Python numbers,
    because they all mean the same setting.
    """
    return hashlib.sha256(to_json(dict(settings), canonical=True).encode("utf-8")).hexdigest()


# ----------------------------------------------------------------------------- writer


class StoreWriter:
    """Writes sessions into a new store at `path`, atomically.

    with StoreWriter(path, settings) as writer:
        for eid in eids:
            writer.add(source.prepare(eid))

    On a clean exit the file replaces `path`; on an exception the temp file is removed and
    `path` (and any older store there) is left untouched.
    """

    def __init__(self, path: str | os.PathLike, settings: Mapping, framework_version: str = __version__):
        self.path = Path(path)
        self._settings_json = to_json(dict(settings), canonical=True)
        self._settings_hash = settings_hash(settings)
        self._framework_version = framework_version
        self._stack: contextlib.ExitStack | None = None
        self._file: h5py.File | None = None

    def __enter__(self) -> "StoreWriter":
        _remove_stale_temps(self.path)
        with contextlib.ExitStack() as stack:
            # Unwound in reverse: the HDF5 file is closed before atomic_path fsyncs and renames it
            # (clean exit) or deletes it (exception).
            tmp = stack.enter_context(atomic_path(self.path))
            self._file = stack.enter_context(h5py.File(tmp, "w", track_order=True))
            self._write_root_attrs()
            self._file.create_group("sessions", track_order=True)
            self._stack = stack.pop_all()
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        stack, self._stack, self._file = self._stack, None, None
        return stack.__exit__(exc_type, exc, tb)

    def _write_root_attrs(self) -> None:
        attrs = self._file.attrs
        attrs["schema_version"] = SCHEMA_VERSION
        attrs["settings_hash"] = self._settings_hash
        attrs["settings"] = self._settings_json
        attrs["framework_version"] = self._framework_version
        attrs["created"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")

    def add(self, session: SessionData) -> None:
        """Write one session now."""
        if self._file is None:
            raise RuntimeError("StoreWriter.add is only valid inside its `with` statement")
        sessions = self._file["sessions"]
        _check_eid(session.eid, sessions)
        ensure_room(self.path, session_bytes(session), f"session {session.eid}", "data.store")
        try:
            _write_session(sessions.create_group(session.eid, track_order=True), session)
        except BaseException:
            # A caller that catches the error and goes on must not leave a half session in the store.
            del sessions[session.eid]
            raise


def session_bytes(session: SessionData) -> int:
    """An upper bound on a session's bytes in the store (arrays before compression; strings at 64 B)."""
    arrays = [*session.modalities.values(), *session.truth.values(), *session.splits.values(),
              *session.neurons.values(), *session.trials.values()]
    total = 0
    for array in arrays:
        array = np.asarray(array)
        total += array.size * 64 if array.dtype.kind in "UO" else array.nbytes
    return total + len(to_json(session.meta)) + len(to_json(session.report)) + len(to_json(session.scaling))


def _check_eid(eid: str, sessions: h5py.Group) -> None:
    # A '/' would silently create nested groups, and '.' names the group itself.
    if not eid or "/" in eid or eid in (".", ".."):
        raise ValueError(f"session id {eid!r} cannot name an HDF5 group")
    if eid in sessions:
        raise ValueError(f"session {eid} was already added to this store")


def _write_session(group: h5py.Group, session: SessionData) -> None:
    group.attrs["meta"] = to_json(session.meta)
    group.attrs["scaling"] = to_json(session.scaling)
    group.attrs["report"] = to_json(session.report)
    group.attrs["modalities"] = to_json(list(session.modalities))
    _write_columns(group.create_group("neurons", track_order=True), session.neurons)
    _write_columns(group.create_group("trials", track_order=True), session.trials)
    modalities = group.create_group("modalities", track_order=True)
    for name, array in session.modalities.items():
        array = np.asarray(array)
        _write_trial_major(modalities, name, _narrow_integers(array))
    splits = group.create_group("splits", track_order=True)
    for name, indices in session.splits.items():
        splits.create_dataset(name, data=np.asarray(indices, dtype=np.int64))
    truth = group.create_group("truth", track_order=True)
    for name, array in session.truth.items():
        _write_trial_major(truth, name, np.asarray(array))


def _write_columns(group: h5py.Group, columns: Mapping[str, Any]) -> None:
    """1-D per-neuron or per-trial arrays; small, so stored contiguous and uncompressed."""
    for name, values in columns.items():
        values = np.asarray(values)
        if values.dtype.kind in "UO":
            # h5py has no conversion for numpy's fixed-width unicode; variable-length UTF-8 is
            # also what other HDF5 tools read as plain strings.
            group.create_dataset(name, data=values.astype(object), dtype=STRING_DTYPE)
        else:
            group.create_dataset(name, data=values)


def _narrow_integers(array: np.ndarray) -> np.ndarray:
    """Integer arrays (spike counts, class labels) in the smallest type that holds their range:
    most bins hold 0-3 spikes, so counts are usually uint8, a quarter of int32's size. Batches
    read them back in their modality's dtype (`ModalitySpec.dtype`); floats are kept as they are."""
    if array.dtype.kind not in "iu" or array.size == 0:
        return array
    low, high = int(array.min()), int(array.max())
    return array.astype(np.result_type(np.min_scalar_type(low), np.min_scalar_type(high)), copy=False)


def _write_trial_major(group: h5py.Group, name: str, array: np.ndarray) -> None:
    """A (K, ...) array chunked along trials, gzip + shuffle (gzip so any HDF5 tool can read it)."""
    if array.size == 0:
        # HDF5 cannot chunk an empty dataset; there is nothing to compress either.
        group.create_dataset(name, data=array)
        return
    trial_bytes = array.nbytes // len(array)
    per_chunk = max(1, min(MAX_TRIALS_PER_CHUNK, len(array), TARGET_CHUNK_BYTES // max(trial_bytes, 1)))
    group.create_dataset(
        name, data=array, chunks=(per_chunk, *array.shape[1:]), compression="gzip", compression_opts=4, shuffle=True
    )


# ----------------------------------------------------------------------------- stale temp files

_TEMP_PID = re.compile(r"\.tmp-(\d+)-[0-9a-f]+$")


def _remove_stale_temps(path: Path) -> None:
    """Delete temp files left by writers of `path` that were killed (their process is gone).

    A killed prepare run leaves a temp file as big as the store; nothing else would ever remove
    it. A temp file whose writer is still running (another prepare of the same store) is kept.
    """
    for tmp in path.parent.glob(f".{path.name}.tmp-*"):
        match = _TEMP_PID.search(tmp.name)
        if match and not _process_alive(int(match.group(1))):
            tmp.unlink(missing_ok=True)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True
